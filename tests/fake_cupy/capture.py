"""Stream capture in the stand-in: ``Stream.begin_capture``/``end_capture``/``is_capturing``
and ``cupy.cuda.Graph``, as CuPy 14.2 has them (cupy/cuda/stream.pyx, graph.pyx), and what
CuPy and CUDA refuse while a stream captures.

While the current stream captures, every kernel launch (ElementwiseKernel, ReductionKernel, a
RawModule kernel, each NumPy-backed function, ufunc and operator that is a kernel in CuPy, a
Generator draw, a device-to-device copy) is recorded instead of run: a new result is allocated
(from the capture's pool: see tests/fake_cupy/pool.py) and filled with nan (0 for integers),
as a captured kernel leaves it unwritten. ``Graph.launch()`` runs the recorded launches in
order on the arrays' memory as it is then, so a replay sees new values copied into the
captured inputs and overwrites the captured outputs.

Refused while the current stream captures, as CuPy refuses (the check each makes is named):
- a device-to-host read (``get``, ``item``, ``tolist``, ``float``/``int``/``bool``, printing,
  ``cupy.asnumpy``, an op that reads a count on the host: boolean-mask indexing, ``nonzero``,
  one-argument ``where``): RuntimeError "the current stream is capturing, so D2H transfers are
  disallowed" (memory.pyx ``copy_to_host_async``);
- a host-to-device copy (``cupy.asarray``/``array`` of host data, ``set``, a host index):
  RuntimeError "... so H2D transfers are disallowed" (``copy_from_host_async``);
- cuBLAS (``matmul``, ``@``, ``dot``, ``tensordot``, ``inner``, ``vdot``, ``einsum`` of two
  float operands): NotImplementedError "calling cuBLAS API during stream capture is currently
  unsupported" (cublas.pyx ``setStream``); legacy ``cupy.random`` (cuRAND's host API): the
  same for cuRAND;
- as CUDA does, invalidating the capture (``end_capture`` then raises
  cudaErrorStreamCaptureInvalidated): ``Stream.synchronize`` of the capturing stream and
  ``Device.synchronize`` (cudaErrorStreamCaptureUnsupported), a stream query (``done``,
  silently), a launch on the legacy stream while a blocking stream captures
  (cudaErrorStreamCaptureImplicit);
- stricter than CuPy's default relaxed mode (as CUDA's global mode is): a cudaMalloc, that is,
  an allocation that no cached chunk of the current ``using_allocator`` pool serves, or any
  allocation from the default pool, and a cudaFree (``free_all_blocks``):
  cudaErrorStreamCaptureUnsupported, invalidating the capture. A capture must find its memory
  in a pool that a warm-up on the same stream filled.
"""
import numpy as np

from . import cuda
from .stats import stats

_D2H = "the current stream is capturing, so D2H transfers are disallowed"
_H2D = "the current stream is capturing, so H2D transfers are disallowed"
_INVALIDATED = ("the stream was capturing, but an error has invalidated the capture "
                "sequence")
#: CUDA's stream capture modes (cupy.cuda.runtime.streamCaptureMode*)
MODES = {"streamCaptureModeGlobal": 0, "streamCaptureModeThreadLocal": 1,
         "streamCaptureModeRelaxed": 2}
STATUS = {"streamCaptureStatusNone": 0, "streamCaptureStatusActive": 1,
          "streamCaptureStatusInvalidated": 2}

_active = []  # the captures under way


class _Capture:
    __slots__ = ("stream", "mode", "launches", "invalidated", "segments")

    def __init__(self, stream, mode):
        self.stream, self.mode = stream, mode
        self.launches, self.invalidated, self.segments = [], False, set()


def _of(stream):
    for c in _active:
        if c.stream._ptr == stream._ptr:
            return c
    return None


def _blocking():
    return [c for c in _active if not c.stream._non_blocking]


def _fail(status, captures):
    for c in captures:
        c.invalidated = True
    raise cuda.CUDARuntimeError(status)


# ---- Stream's methods ---------------------------------------------------------------------------
def begin(stream, mode):
    if stream._ptr == 0:
        raise RuntimeError("cannot capture on the default (legacy) stream")
    mode = MODES["streamCaptureModeRelaxed"] if mode is None else mode
    if mode not in MODES.values():
        raise cuda.CUDARuntimeError(1)
    if _of(stream) is not None:
        raise cuda.CUDARuntimeError(401)  # cudaErrorIllegalState
    _active.append(_Capture(stream, mode))


def end(stream):
    c = _of(stream)
    if c is None:
        raise cuda.CUDARuntimeError(401)
    _active.remove(c)
    if c.invalidated:
        raise cuda.CUDARuntimeError(901)
    g = Graph.__new__(Graph)
    g._launches, g._segments = tuple(c.launches), frozenset(c.segments)
    return g


def is_capturing(stream):
    """``runtime.streamIsCapturing(stream.ptr)``, as CuPy's checks call it."""
    if not _active:
        return False
    if stream._ptr == 0 and _blocking():
        raise cuda.CUDARuntimeError(906)  # the legacy stream and a capturing blocking stream
    c = _of(stream)
    if c is not None and c.invalidated:
        raise RuntimeError(_INVALIDATED)
    return c is not None


def synchronize(stream):
    """``Stream.synchronize``: refused (and the capture invalidated) on a capturing stream."""
    c = _of(stream) if _active else None
    if c is not None:
        _fail(900, [c])


def query(stream):
    """``Stream.done``: a query of a capturing stream invalidates its capture."""
    c = _of(stream) if _active else None
    if c is not None:
        c.invalidated = True
        return False
    return True


def device_synchronize():
    if _active:
        _fail(900, list(_active))


# ---- what CuPy checks ---------------------------------------------------------------------------
def refuse_transfer(direction, stream=None):
    """memory.pyx's check before a copy between host and device (``"D2H"``/``"H2D"``) on
    ``stream`` (default: the current one)."""
    if _active and is_capturing(cuda.get_current_stream() if stream is None else stream):
        raise RuntimeError(_D2H if direction == "D2H" else _H2D)


def refuse_library(name):
    """``cublas.setStream``/``curand.setStream``'s check (``name``: "cuBLAS", "cuRAND")."""
    if _active and is_capturing(cuda.get_current_stream()):
        raise NotImplementedError(f"calling {name} API during stream capture is currently "
                                  "unsupported")


def refuse_cuda_malloc(default_pool=False):
    """A cudaMalloc (or the default pool, whose memory the stand-in does not track) while the
    current stream captures: see the module's docstring."""
    if _active:
        c = _of(cuda.get_current_stream())
        if c is not None:
            _fail(901 if c.invalidated else 900, [c])


def refuse_cuda_free():
    if _active:
        _fail(900, list(_active))


# ---- launches -----------------------------------------------------------------------------------
def active():
    """Whether any capture is under way (the fast check before the others)."""
    return bool(_active)


def launching(stream=None):
    """The capture that takes a launch made now on ``stream`` (default: the current one), or
    None where it runs at once."""
    if not _active:
        return None
    stream = cuda.get_current_stream() if stream is None else stream
    c = _of(stream)
    if c is None:
        blocking = _blocking()
        if stream._ptr == 0 and blocking:
            _fail(906, blocking)
        return None
    if c.invalidated:
        raise cuda.CUDARuntimeError(901)
    return c


def record(c, run, arrays=()):
    """Record ``run`` (a launch, on NumPy arrays) in capture ``c``; ``arrays`` are the stand-in
    arrays it touches (their pool segments must outlive the graph)."""
    for a in arrays:
        mem = getattr(a, "_mem", None)
        if mem is not None:
            c.segments.add(mem.mem._chunk.segment)
    c.launches.append(run)
    stats.captured += 1


def launch(run, arrays=(), counts=()):
    """``run()`` now (counting each of ``counts`` in stats), or recorded where the current
    stream captures."""
    c = launching()
    if c is None:
        for name in counts:
            setattr(stats, name, getattr(stats, name) + 1)
        run()
    else:
        record(c, run, arrays)


def _allocate(like, device):
    """A new stand-in array shaped as NumPy array ``like``, from the current allocator (the
    capture's pool), unwritten: ``(array, its NumPy memory)``."""
    from . import array, pool

    mem = pool.allocate(like.nbytes)
    buf = like if mem is None else pool.place(like, mem)
    poison(buf)
    return array._new(buf, device, mem), buf


def fresh(c, compute, like, device, arrays=()):
    """A new array shaped as NumPy array ``like``, allocated now and left unwritten; each
    replay writes ``compute()`` (a NumPy array) into it."""
    out, buf = _allocate(like, device)

    def run():
        buf[...] = compute()

    record(c, run, [*arrays, out])
    return out


#: CuPy functions that call cuBLAS for float data (cupy/_core/_routines_linalg.pyx)
CUBLAS = frozenset("matmul dot tensordot inner vdot einsum".split())
#: functions that read a count on the host (a synchronising D2H copy in CuPy)
_HOST_COUNTS = frozenset("nonzero flatnonzero argwhere".split())
#: functions that allocate without a kernel
NO_KERNEL = frozenset("empty empty_like".split())


def refuse_cublas(name, arrays):
    floats = [a for a in arrays if a.dtype.kind in "fc"]
    if floats and (name != "einsum" or len(arrays) > 1):
        refuse_library("cuBLAS")


def _map(value, f):
    from .array import ndarray

    if isinstance(value, ndarray):
        return f(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_map(v, f) for v in value)
    if isinstance(value, dict):
        return {k: _map(v, f) for k, v in value.items()}
    return value


def call(c, fn, name, args, kwargs, device, arrays):
    """``fn`` (NumPy's), CuPy's ``name``, launched into capture ``c``: worked out on copies of
    its arrays (for the shapes of its results, nothing written), then recorded to run on their
    memory; new results allocated unwritten; a view or an input handed back as such."""
    from .array import VIEWS, _host, _root, _wrap

    key = args[1] if name == "getitem" else ()
    if (name in _HOST_COUNTS or (name == "where" and len(args) + len(kwargs) == 1)
            or any(getattr(k, "dtype", None) == np.bool_
                   for k in (key if isinstance(key, tuple) else (key,)))):
        refuse_transfer("D2H")  # the result's size is read on the host
    live_args, live_kwargs = _host(args, name), _host(kwargs, name)  # (its refusals first)
    copies = {}

    def copy(a):
        return copies.setdefault(id(a), (a, _same_layout(a._a)))[1]

    with np.errstate(all="ignore"):
        probe = fn(*_map(args, copy), **_map(kwargs, copy))
    inputs = {id(cp): a for a, cp in copies.values()}
    several = isinstance(probe, (tuple, list))
    parts = list(probe) if several else [probe]
    if any(isinstance(r, np.ndarray) and id(r) not in inputs and id(_root(r)) in inputs
           for r in parts):  # a view of an input: no kernel
        return _wrap(fn(*live_args, **live_kwargs), device, arrays)
    if probe is not None and not any(isinstance(r, (np.ndarray, np.generic)) for r in parts):
        if name not in VIEWS:
            refuse_transfer("D2H")  # a host value computed from device data
        return probe
    results, new = [], []
    for i, r in enumerate(parts):
        if isinstance(r, np.ndarray) and id(r) in inputs:
            results.append(inputs[id(r)])  # an input handed back (out=, a no-op cast)
        elif isinstance(r, (np.ndarray, np.generic)):
            out, buf = _allocate(np.asarray(r), device)
            new.append((i, buf))
            results.append(out)
        else:
            results.append(r)
    if name not in NO_KERNEL:
        def run():
            res = fn(*live_args, **live_kwargs)
            for i, buf in new:
                buf[...] = res[i] if several else res

        record(c, run, [*arrays, *(r for r in results if hasattr(r, "_mem"))])
    return type(probe)(results) if several else results[0]


def _same_layout(a):
    """A copy of ``a`` with its strides (a function given a strided view may hand back a
    contiguous copy, or the view itself: the probe must see which)."""
    if a.flags.c_contiguous or not a.size:
        return a.copy()
    span = [s * (n - 1) for s, n in zip(a.strides, a.shape)]
    low = sum(x for x in span if x < 0)
    raw = np.empty(sum(x for x in span if x > 0) - low + a.itemsize, np.uint8)
    out = np.ndarray(a.shape, a.dtype, raw, -low, a.strides)
    out[...] = a
    return out


def poison(a):
    """What a captured kernel leaves in its output before any replay: nan (0 for integers)."""
    a[...] = np.nan if a.dtype.kind in "fc" else 0


class Graph:
    """``cupy.cuda.Graph``: made only by ``Stream.end_capture``; ``launch`` runs the recorded
    launches in order (recorded in turn into a capture under way on its stream)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("currently this class cannot be initiated by the user and "
                                  "must be created via stream capture")

    def launch(self, stream=None):
        stream = cuda.get_current_stream() if stream is None else stream
        c = launching(stream)
        if c is not None:  # a graph launched into a capture: its launches, in order
            c.segments.update(self._segments)
            c.launches.append(self._replay)
            return
        self._replay()

    def _replay(self):
        if any(s.released for s in self._segments):
            raise cuda.CUDARuntimeError(700)  # its memory went back to the driver
        stats.graph_launches += 1
        with np.errstate(all="ignore"):
            for run in self._launches:
                run()

    def upload(self, stream=None):
        """Nothing to upload; a stream that is capturing refuses as for a launch."""
        launching(cuda.get_current_stream() if stream is None else stream)

    def debug_dot_str(self, flags=0):
        nodes = "\n".join(f'  n{i} [label="kernel {i}"];' for i in range(len(self._launches)))
        return f"digraph G {{\n{nodes}\n}}\n"


def reset():
    _active.clear()
