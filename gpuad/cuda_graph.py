"""``ad.cuda.graph`` and ``ad.cuda.CUDAGraph``: capture CUDA work by hand into one CUDA graph
and replay it, in the manner of PyTorch's ``torch.cuda.graph``.

A replay launches every kernel the captured block launched, in order, with one call and no
Python per op. What it costs is that nothing may change between replays but the values in
device memory:

- **Static inputs.** Make the input tensors before capturing and keep them; before each
  ``replay()`` copy new values into them in place (``x.copy_(batch)``). A tensor made inside
  the block from host data cannot be captured at all.
- **Static outputs.** Tensors made inside the block live in the graph's memory pool: each
  replay writes its results into the same tensors, overwriting the last ones. Keep references
  to them (a dropped one gives its memory back to the pool, where the next capture that shares
  the pool may reuse it) and copy what you want to keep (``y.clone()``).
- **No host work.** A replay repeats the kernels, not the Python around them (Python
  scalars and shapes are baked in). Reading a value on the host
  (``item()``, ``float(t)``, ``if t > 0:``, ``print``), copying host data to the device, a
  synchronize, and ``einsum`` of floats (CuPy's cuBLAS) are refused inside the block.
- **Matrix products** (``matmul``, ``@``, ``dot``, ``tensordot``, ``nn.Linear``, in float32
  and float64) are captured through a cuBLAS handle of gpuad's own (CuPy's refuses to
  capture), which needs the ``capture`` extra: NVIDIA's nvmath-python.
- **Warm up first.** Run the block once or more with ``warmup=True`` before capturing: it runs
  eagerly on the stream and pool the capture will use, so kernels get compiled and the pool
  holds memory the capture can reuse. A capture that would allocate new GPU memory is refused
  (``warmup=True`` on the same graph, pool and stream avoids it). Drop the warm-up's outputs
  before capturing, or warm up twice, so their memory is free for the capture.

Graphs may share a pool (``ad.cuda.graph(g2, pool=g1.pool())``) when replayed in capture
order, never at the same time (a later capture reuses what an earlier one freed). CuPy is
imported only when a block is entered. :class:`graph` has an example.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from types import TracebackType
from typing import Any

from .backends import capture_blas
from .cuda_graph_errors import explain, no_memory
from .devices import Device, DeviceLike, get_default_device, resolve

__all__ = ["CUDAGraph", "graph", "GraphPool", "CUDAGraphError", "capturing"]


class CUDAGraphError(RuntimeError):
    """What ``ad.cuda.graph`` refuses, or what CuPy or CUDA refused inside it, said in
    gpuad's terms: the operation, where it ran, and what to do instead."""


_KEPT: list[Any] = []  # CuPy pools of dropped graphs whose memory tensors still use


class GraphPool:
    """The memory pool of captured graphs (``CUDAGraph.pool()``): a ``cupy.cuda.MemoryPool``
    made at first use on one device, and the stream whose cached memory it holds. Pass it to
    ``ad.cuda.graph(..., pool=...)`` to let another graph share it.

    >>> g = ad.cuda.CUDAGraph()
    >>> pool = g.pool()  # to share: ad.cuda.graph(g2, pool=pool)
    >>> pool.used_bytes(), pool.total_bytes()  # nothing captured yet
    (0, 0)
    >>> g.pool() is pool
    True
    """

    __slots__ = ("_pool", "_index", "stream")

    def __init__(self) -> None:
        self._pool: Any = None
        self._index: int | None = None
        self.stream: Any = None  # the stream its first block ran on (its arena)
        _KEPT[:] = [p for p in _KEPT if p.used_bytes()]

    def __del__(self) -> None:  # (CuPy's memory holds its pool weakly: keep it for them)
        if self._pool is not None and self._pool.used_bytes():
            _KEPT.append(self._pool)

    def _on(self, dev: Device) -> Any:
        """The CuPy pool, made for ``dev`` at the first call; another device is refused."""
        if self._index is None:
            import cupy

            self._pool, self._index = cupy.cuda.MemoryPool(), dev.index
        elif dev.index != self._index:
            raise CUDAGraphError(f"gpuad: ad.cuda.graph: this pool belongs to cuda:{self._index}"
                                 f", not {dev}: graphs share a pool only on one device")
        return self._pool

    def used_bytes(self) -> int:
        """Bytes of the pool in use by tensors (the captured graphs' outputs and temporaries
        included); 0 before its first use."""
        return 0 if self._pool is None else int(self._pool.used_bytes())

    def total_bytes(self) -> int:
        """Bytes the pool holds from the device, in use or cached; 0 before its first use."""
        return 0 if self._pool is None else int(self._pool.total_bytes())


class CUDAGraph:
    """One captured CUDA graph: filled by ``with ad.cuda.graph(g):``, run by ``g.replay()``.
    It keeps its memory pool (``pool()``) alive, and with it the memory of the tensors the
    capture made. :class:`graph` shows a capture and its replays (they need a GPU).

    >>> g = ad.cuda.CUDAGraph()
    >>> g, g.captured
    (CUDAGraph(not captured), False)
    """

    def __init__(self) -> None:
        self._graph: Any = None
        self._pool: GraphPool | None = None
        self._index: int | None = None

    def pool(self) -> GraphPool:
        """This graph's memory pool, made at the first call; pass it to another graph's
        ``ad.cuda.graph(..., pool=...)`` to share it."""
        if self._pool is None:
            self._pool = GraphPool()
        return self._pool

    @property
    def captured(self) -> bool:
        """Whether a capture filled this graph (and ``reset()`` has not emptied it)."""
        return self._graph is not None

    def replay(self) -> None:
        """Launch the captured kernels, in order, on the current stream of the graph's device
        (asynchronously, as any launch). They read the static inputs' current values and
        overwrite the static outputs."""
        if self._graph is None:
            raise CUDAGraphError("gpuad: CUDAGraph.replay: nothing has been captured into this "
                                 "graph yet; capture it first with `with ad.cuda.graph(g): ...`")
        import cupy

        if cupy.cuda.runtime.getDevice() == self._index:
            self._graph.launch()
        else:
            with cupy.cuda.Device(self._index):
                self._graph.launch()

    def reset(self) -> None:
        """Drop the captured graph and the reference to its pool, so that the graph can be
        captured again (the pool's memory lives on while tensors use it)."""
        self._graph = self._pool = self._index = None

    def __repr__(self) -> str:
        where = f"cuda:{self._index}" if self._index is not None else "not captured"
        return f"CUDAGraph({where})"


class _Under(threading.local):
    block: graph | None = None  # the ad.cuda.graph block under way on this thread


_under = _Under()
#: (CuPy's Stream class, device index) -> the default capture stream (by class: a test may
#: put a CuPy stand-in in place of CuPy, and back)
_side_streams: dict[tuple[type, int], Any] = {}


def capturing() -> bool:
    """Whether this thread is inside an ``ad.cuda.graph`` block that captures."""
    block = _under.block
    return block is not None and not block.warmup


def _side_stream(cupy: Any, index: int) -> Any:
    """The default stream of captures on device ``index`` (non-blocking: work on the legacy
    stream does not join it), made at first use."""
    key = (cupy.cuda.Stream, index)
    if key not in _side_streams:
        with cupy.cuda.Device(index):
            _side_streams[key] = cupy.cuda.Stream(non_blocking=True)
    return _side_streams[key]


class graph:  # noqa: N801  (a context manager, named as PyTorch's torch.cuda.graph)
    """``with ad.cuda.graph(g, pool=None, stream=None):`` captures the CUDA work of the block
    into ``g`` (a :class:`CUDAGraph`) instead of running it; ``g.replay()`` runs it.

    ``pool``: another graph's ``pool()``, to share its memory (replay the graphs in capture
    order, never at once); by default ``g``'s own. ``stream``: a CuPy stream to capture on; by
    default one side stream per device (the pool's cached memory is per stream: warm up and
    capture on the same one). ``device``: the CUDA device (default: the default device if it
    is a GPU, else cuda:0). ``warmup=True``: run the block eagerly, on that stream with that
    pool, instead of capturing (do this before capturing; see the module's docstring).

    Refused with :class:`CUDAGraphError`: a device that is not a GPU; a block inside another
    block; a graph that already holds a capture (``g.reset()`` first); and, raised where they
    happen inside the block, the operations a capture cannot take.

    Example (it needs a GPU, so it is not run as a doctest; the tests run it on the CuPy
    stand-in)::

        >>> import gpuad as ad
        >>> x = ad.zeros(4, device="cuda")  # doctest: +SKIP
        >>> g = ad.cuda.CUDAGraph()
        >>> with ad.cuda.graph(g, warmup=True):  # doctest: +SKIP
        ...     y = (x * 2.0 + 1.0).exp()  # run eagerly, on g's stream and pool
        >>> del y  # doctest: +SKIP
        >>> with ad.cuda.graph(g):  # doctest: +SKIP
        ...     y = (x * 2.0 + 1.0).exp()  # captured, not run: y is a static output
        >>> _ = x.copy_(ad.tensor([0.0, 0.5, 1.0, 1.5], device="cuda"))  # doctest: +SKIP
        >>> g.replay()  # doctest: +SKIP
        >>> [round(v, 3) for v in y.tolist()]  # doctest: +SKIP
        [2.718, 7.389, 20.086, 54.598]
    """

    def __init__(self, cuda_graph: CUDAGraph, pool: GraphPool | None = None,
                 stream: Any = None, *, device: DeviceLike | None = None,
                 warmup: bool = False) -> None:
        if not isinstance(cuda_graph, CUDAGraph):
            raise TypeError(f"gpuad: ad.cuda.graph takes an ad.cuda.CUDAGraph, got "
                            f"{type(cuda_graph).__name__}")
        if pool is not None and not isinstance(pool, GraphPool):
            raise TypeError(f"gpuad: ad.cuda.graph: pool must be another graph's pool() (a "
                            f"GraphPool), got {type(pool).__name__}")
        self.cuda_graph, self.pool, self.stream = cuda_graph, pool, stream
        self.device, self.warmup = device, warmup
        self._exits = contextlib.ExitStack()
        self._memory: Any = None  # the CuPy pool
        self._caller: Any = None  # the stream current when the block began (warm-up)
        self._index: int | None = None

    def __enter__(self) -> CUDAGraph:
        what = "warm up" if self.warmup else "capture"
        if _under.block is not None:
            raise CUDAGraphError(f"gpuad: ad.cuda.graph: cannot {what} inside another "
                                 "ad.cuda.graph block: captures do not nest; end the outer "
                                 "block first")
        g = self.cuda_graph
        if g._graph is not None:
            raise CUDAGraphError(f"gpuad: ad.cuda.graph: this CUDAGraph already holds a capture"
                                 f" (its pool's memory is the graph's now); to {what} again, "
                                 "call g.reset() first, or use another CUDAGraph")
        dev = self._cuda_device()
        index = dev.index if dev.index is not None else 0
        backend = dev.backend  # (made for a CUDA device: CuPy is imported here)
        import cupy

        pool = self.pool if self.pool is not None else g.pool()
        self._memory = pool._on(dev)
        g._pool = pool
        stream = self.stream
        if stream is None:
            stream = pool.stream if pool.stream is not None else _side_stream(cupy, index)
        if pool.stream is None:
            pool.stream = stream
        self.stream, self._index = stream, index
        exits = self._exits
        try:
            exits.enter_context(cupy.cuda.Device(index))
            if self.warmup:
                self._caller = cupy.cuda.get_current_stream()
                stream.wait_event(self._caller.record())  # after the work queued before it
            else:
                backend.synchronize()  # (a failed queued check surfaces here, not in capture)
            # (matrix products go to gpuad's cuBLAS handle: CuPy's refuses to capture)
            if self.warmup:
                capture_blas.warm_up()
            else:
                capture_blas.begin(cupy, index, stream)
            exits.callback(capture_blas.end)
            exits.enter_context(cupy.cuda.using_allocator(self._malloc))
            exits.enter_context(stream)
            if not self.warmup:
                stream.begin_capture()
        except BaseException:
            exits.close()
            raise
        _under.block = self
        return g

    def _cuda_device(self) -> Device:
        if self.device is not None:
            dev = resolve(self.device)
        else:
            default = get_default_device()
            dev = default if default.type == "cuda" else resolve("cuda")
        if dev.type != "cuda":
            raise CUDAGraphError(
                f"gpuad: ad.cuda.graph captures CUDA work, and {dev} is not a CUDA device: work "
                "on the CPU runs at once and is never replayed. Give it a GPU "
                "(device='cuda'), or, on the CPU, call your function directly")
        return dev

    def _malloc(self, size: int) -> Any:
        """The block's allocator: the pool's memory; while capturing, only memory the pool
        already holds (a new cudaMalloc would mean no warm-up filled it)."""
        memory = self._memory
        if self.warmup:
            return memory.malloc(size)
        before = memory.total_bytes()
        try:
            pointer = memory.malloc(size)
        except Exception as exc:
            if "StreamCapture" in str(exc):
                raise CUDAGraphError(no_memory(size, sys._getframe(1))) from exc
            raise
        if memory.total_bytes() > before:
            raise CUDAGraphError(no_memory(size, sys._getframe(1)))
        return pointer

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _under.block = None
        g, captured, ended = self.cuda_graph, None, None
        try:
            if self.warmup:
                done = self.stream.record()
            else:
                try:
                    captured = self.stream.end_capture()
                except Exception as end_exc:  # (an invalidated capture ends here)
                    ended = end_exc
        finally:
            self._exits.close()
        if self.warmup:
            self._caller.wait_event(done)  # the caller's stream waits for the warm-up
            return
        if exc is not None:
            if isinstance(exc, CUDAGraphError) or not isinstance(exc, Exception):
                return
            message = explain(exc, tb)
            if message is not None:
                raise CUDAGraphError(message) from exc
            return
        if ended is not None:
            raise CUDAGraphError(
                "gpuad: ad.cuda.graph: CUDA invalidated the capture: an operation inside the "
                "block is not allowed while a stream captures (a synchronize, a query of the "
                f"stream, work on the legacy default stream): {ended}") from ended
        g._graph, g._index = captured, self._index
