"""Large CPU results on memory used before, not on pages the kernel must fault in and zero.

A fresh NumPy array of tens of MiB is a fresh ``mmap``: its first write page-faults every page,
and the kernel zeroes each one, which on a 10^7-value float32 array costs more than the
arithmetic (an exp into such an array takes ~8 ms; into a reused one ~1.5 ms, on two Xeon
vCPUs). PyTorch's CPU allocator pays this too. The chunked elementwise path
(:mod:`cpu_parallel`) therefore takes its outputs from this pool: a result's memory goes back
to the pool when the last array that sees it is gone, and the next result of the same byte
size takes it over.

Safety rests on how NumPy records a view's owner: every view's ``base`` is the first object
that is not an array, here the :class:`_Lease` an array was made from (``np.asarray`` of its
``__array_interface__``). So the lease lives exactly as long as any array over its memory, and
only its finalizer gives the memory back.

At most :data:`LIMIT` bytes wait idle: ``GPUAD_CPU_POOL_MB`` MiB (0 turns the pool off), by
default an eighth of the machine's memory and at most 1 GiB; :func:`empty` releases them.

Smaller blocks (a chunk's temporaries, a mid-sized result) come from glibc's malloc, which left
to itself hands freed memory back to the kernel once the top of a heap holds more than twice
the largest block freed so far: so every chunk, and every op on 10^5-10^6 values, faults its
memory in again (a 20-op chain on 10^6 float32 values: 25 ms with, 19 ms without). The CPU
backend therefore sets two of glibc's parameters when it is made (:func:`keep_freed_memory`).
"""
import ctypes
import os
import threading

import numpy as np

_MIB = 1 << 20


def _limit_from_env():
    env = os.environ.get("GPUAD_CPU_POOL_MB", "").strip()
    if not env:
        try:
            memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
            memory = 8 << 30
        return min(1024 * _MIB, memory // 8)
    if not env.isdigit():
        raise ValueError(f"gpuad: GPUAD_CPU_POOL_MB must be a whole number of MiB (0: no "
                         f"pool), not {env!r}")
    return int(env) * _MIB


#: bytes of idle memory the pool keeps at most
LIMIT = _limit_from_env()

_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # (a child starts with a lock no thread holds)
    os.register_at_fork(after_in_child=lambda: globals().update(_lock=threading.Lock()))
_idle: dict[int, list[np.ndarray]] = {}  # byte size -> buffers (uint8 arrays) waiting to be reused
_idle_bytes = 0


class _Lease:
    """One buffer lent out, as an object NumPy makes arrays from (``__array_interface__``): the
    base of every array over the buffer, and the one that hands it back when it goes."""

    __slots__ = ("__array_interface__", "_buffer")

    def __init__(self, buffer, shape, dtype):
        self._buffer = buffer
        self.__array_interface__ = {"data": (buffer.ctypes.data, False), "shape": shape,
                                    "typestr": dtype.str, "version": 3}

    def __del__(self):
        try:
            _give_back(self._buffer)
        except (TypeError, AttributeError):  # (at interpreter exit, with the module torn down)
            pass


def take(shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` (as ``np.empty``), on an
    idle buffer of its byte size if the pool has one."""
    global _idle_bytes
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buffer = None
    if _idle.get(nbytes):
        with _lock:
            waiting = _idle.get(nbytes)
            if waiting:
                buffer = waiting.pop()
                _idle_bytes -= nbytes
    if buffer is None:
        if not LIMIT or not nbytes:
            return np.empty(shape, dtype)
        buffer = np.empty(nbytes, np.uint8)
    return np.asarray(_Lease(buffer, tuple(shape), dtype))


def _give_back(buffer):
    """Keep ``buffer`` for reuse, within LIMIT (else let it go). Never waits: a finalizer can
    run in any thread, inside the pool's own code among them (a collection there), and the
    buffer is simply freed when the lock is held."""
    global _idle_bytes
    if not _lock.acquire(blocking=False):
        return
    try:
        if _idle_bytes + buffer.nbytes <= LIMIT:
            _idle.setdefault(buffer.nbytes, []).append(buffer)
            _idle_bytes += buffer.nbytes
    finally:
        _lock.release()


#: glibc's mallopt parameter numbers (malloc.h), and the values :func:`keep_freed_memory` sets:
#: blocks below MMAP_THRESHOLD (glibc's upper limit for it) come from the heap, and up to
#: TRIM_THRESHOLD of free memory at the top of each heap is kept
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_malloc_set = False


def keep_freed_memory():
    """Once per process: glibc's ``mallopt`` serves blocks below MMAP_THRESHOLD from the heap
    and keeps up to TRIM_THRESHOLD of free heap per arena, so freed memory is reused instead
    of faulted in again. Left alone where malloc is not glibc's, where the program tunes malloc
    itself (a ``MALLOC_*`` or ``GLIBC_TUNABLES`` variable), or with ``GPUAD_MALLOC=system``.
    Returns whether the parameters were set (None: left alone)."""
    global _malloc_set
    if _malloc_set is not False:
        return _malloc_set
    _malloc_set = None  # (decided: whatever follows, this runs once)
    env = os.environ
    if (env.get("GPUAD_MALLOC") == "system" or "GLIBC_TUNABLES" in env
            or any(k.startswith("MALLOC_") for k in env)):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - no C library to load
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None  # (not glibc: musl's mallopt, for one, does nothing)
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _malloc_set = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                       and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _malloc_set


def base(a):
    """``a.base``, except that an array the pool made (whose base is its lease) counts as owning
    its memory, as the ``np.empty`` it stands for does: None. (Its views' base is the array.)"""
    b = a.base
    return None if b.__class__ is _Lease else b


def idle_bytes():
    """Bytes waiting in the pool."""
    return _idle_bytes


def empty():
    """Let every idle buffer go (arrays in use keep theirs)."""
    global _idle_bytes
    with _lock:
        _idle.clear()
        _idle_bytes = 0
