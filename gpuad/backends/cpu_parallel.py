"""Large elementwise work on the CPU, split into cache-sized chunks spread over threads.

NumPy's ufunc loops release the GIL, so a few threads can run one over disjoint slices of an
array at once, and a composite expression (sigmoid takes seven passes) evaluated chunk by chunk
keeps its temporaries in cache. An elementwise result does not depend on how the work is cut,
so the outputs are bit-identical to one whole-array call. Reductions are never split: their
rounding would change.

The thread count is ``get_num_threads()``: ``GPUAD_NUM_THREADS``, else the CPUs this process
may run on (at most 8), like PyTorch's intra-op pool; ``set_num_threads(n)`` changes it.
"""
import contextvars
import itertools
import os
import queue
import threading

import numpy as np

from . import cpu_pool

#: Elements per chunk: 512 KiB of float32, so a chunk's temporaries stay in L2.
CHUNK = 1 << 17
#: Arrays smaller than this run in one call: handing work to a thread costs some 50-80 us
#: (measured on 2-vCPU machines), which a split of fewer elements does not win back (single
#: ufuncs break even around here; composites, several passes each, gain from here on).
MIN_SIZE = 1 << 20

_local = threading.local()  # .busy: this thread is already inside a split (no nesting)
_tasks = queue.SimpleQueue()
_helpers = []
_lock = threading.Lock()


def _default_threads():
    env = os.environ.get("GPUAD_NUM_THREADS")
    if env:
        n = int(env) if env.strip().isdigit() else 0
        if n < 1:
            raise ValueError(f"gpuad: GPUAD_NUM_THREADS must be a positive integer, not "
                             f"{env!r}")
        return n
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


_threads = _default_threads()

def get_num_threads():
    """The threads gpuad's CPU backend uses for large elementwise work.

    >>> ad.get_num_threads() >= 1
    True
    """
    return _threads


def set_num_threads(n):
    """Use ``n`` threads (1: no helper threads) for large elementwise work on the CPU.

    >>> before = ad.get_num_threads()
    >>> ad.set_num_threads(2)
    >>> ad.get_num_threads()
    2
    >>> ad.set_num_threads(before)
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"gpuad.set_num_threads: expected a positive int, got {n!r}")
    _threads = n


def _forget_helpers():
    """In a forked child the helper threads are gone: start afresh (from a lock and a queue
    that no other thread holds)."""
    global _tasks, _lock
    _helpers.clear()
    _tasks = queue.SimpleQueue()
    _lock = threading.Lock()
    _local.busy = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def _helper_loop(tasks):
    while True:
        tasks.get()()


def _ensure_helpers(n):
    with _lock:
        while len(_helpers) < n:
            t = threading.Thread(target=_helper_loop, args=(_tasks,),
                                 name=f"gpuad-cpu-{len(_helpers)}", daemon=True)
            t.start()
            _helpers.append(t)


def for_chunks(fn, size):
    """Call ``fn(start, stop)`` over [0, size) in CHUNK-sized pieces, on up to
    ``get_num_threads()`` threads (this one included), each helper in a copy of the caller's
    context and with its NumPy error state. The first exception is re-raised here once
    every piece has finished."""
    n_chunks = -(-size // CHUNK)
    helpers = min(_threads, n_chunks) - 1
    if helpers <= 0 or getattr(_local, "busy", False):
        for i in range(n_chunks):
            fn(i * CHUNK, min(size, (i + 1) * CHUNK))
        return
    counter = itertools.count()
    done = queue.SimpleQueue()
    errors = np.geterr()  # (NumPy 2 keeps it in the context; NumPy 1 per thread)

    def work():
        _local.busy = True
        before = np.seterr(**errors)
        try:
            for i in counter:
                if i >= n_chunks:
                    return None
                fn(i * CHUNK, min(size, (i + 1) * CHUNK))
        except BaseException as exc:  # handed to the caller
            return exc
        finally:
            np.seterr(**before)
            _local.busy = False

    _ensure_helpers(helpers)
    for _ in range(helpers):
        ctx = contextvars.copy_context()
        _tasks.put(lambda ctx=ctx: done.put(ctx.run(work)))
    raised = [work()] + [done.get() for _ in range(helpers)]
    for exc in raised:
        if exc is not None:
            raise exc


def splittable(args):
    """The common shape when every array among ``args`` has it and is C-contiguous or one
    value broadcast (scalars and 0-d arrays broadcast too), and it holds at least MIN_SIZE
    elements; else None."""
    shape = None
    for a in args:
        if a.__class__ is np.ndarray and a.ndim:
            if shape is None:
                shape = a.shape
            elif a.shape != shape:
                return None
            if not a.flags.c_contiguous and any(a.strides):
                return None
    if shape is None or np.prod(shape) < MIN_SIZE:
        return None
    return shape


def _flat(a):
    """``a`` as one axis to slice chunks of (a value broadcast: as a 0-d array of it)."""
    if a.__class__ is not np.ndarray or not a.ndim:
        return a
    return a.reshape(-1) if any(a.strides) else a[(slice(0, 1),) * a.ndim].reshape(())


def elementwise(fn):
    """``fn`` (a ufunc or an elementwise function of arrays and scalars), evaluated chunk by
    chunk on several threads when its array arguments are large, same-shaped and
    C-contiguous; a plain call otherwise."""
    is_ufunc = isinstance(fn, np.ufunc)

    def call(*args, **kwargs):
        for a in args:
            if a.__class__ is np.ndarray and a.size >= MIN_SIZE:
                break
        else:
            return fn(*args, **kwargs)
        shape = None if kwargs else splittable(args)
        if shape is None or getattr(_local, "busy", False):
            return fn(*args, **kwargs)
        flat = [_flat(a) for a in args]
        # the result's dtype from one element (every chunk then runs in the threads)
        with np.errstate(all="ignore"):  # (chunk 0 computes it again, warning as it must)
            probe = fn(*[f[:1] if f.__class__ is np.ndarray and f.ndim else f for f in flat])
        if probe.__class__ is not np.ndarray:
            return fn(*args)
        out = cpu_pool.take(shape, probe.dtype)
        out_flat = out.reshape(-1)

        def piece(start, stop):
            parts = [f[start:stop] if f.__class__ is np.ndarray and f.ndim else f
                     for f in flat]
            if is_ufunc:
                fn(*parts, out=out_flat[start:stop])
            else:
                out_flat[start:stop] = fn(*parts)

        for_chunks(piece, out.size)
        return out

    call.__name__ = getattr(fn, "__name__", "elementwise")
    call.__doc__ = fn.__doc__
    return call
