"""The stand-in's memory pools and allocators: ``cupy.cuda.MemoryPool`` with real bookkeeping
(cupy/cuda/memory.pyx's SingleDeviceMemoryPool: sizes rounded to 512 bytes, one arena of
free chunks per stream, best fit, a larger chunk split, neighbours merged when freed, whole
free segments released by ``free_all_blocks``), and ``using_allocator``/``get_allocator``/
``set_allocator`` (thread-local, as in CuPy).

Memory a pool hands out is real: each "cudaMalloc" is a NumPy byte buffer (a segment), and an
array allocated from the pool lives in its chunk, so an array made on a freed chunk shares the
bytes of the one freed before it, as on a GPU. That is what makes a captured graph's hazards
visible here: a static output dropped and its chunk reused, a pool shared out of order.

Arrays made while no pool allocator is current (the default) are plain NumPy arrays, untracked;
the default pool keeps its fixed numbers (``used_bytes``, ``total_bytes``).
"""
import contextlib
import threading
import weakref

import numpy as np

from . import capture, cuda

UNIT = 512  # CuPy's ALLOCATION_UNIT_SIZE


def _round(size):
    return -(-size // UNIT) * UNIT


class _Segment:
    """One cudaMalloc: a byte buffer, its chunks in address order."""

    __slots__ = ("buffer", "chunks", "released")

    def __init__(self, size):
        self.buffer = np.empty(size, np.uint8)
        self.chunks = []
        self.released = False


class _Chunk:
    __slots__ = ("segment", "offset", "size", "free", "arena")

    def __init__(self, segment, offset, size, arena):
        self.segment, self.offset, self.size, self.arena = segment, offset, size, arena
        self.free = False


class _PooledMemory:
    """``cupy.cuda.memory.PooledMemory``: gives its chunk back to the pool when the last
    reference to it (a MemoryPointer, an array on it) goes."""

    def __init__(self, chunk, pool):
        # (weakly, as CuPy's: a pool nothing else holds is freed under its live arrays)
        self._chunk, self._pool = chunk, weakref.ref(pool)
        self.ptr = chunk.segment.buffer.ctypes.data + chunk.offset
        self.size = chunk.size
        self.device_id = cuda.getDevice()

    def __del__(self):
        pool = self._pool()
        if pool is not None:
            pool._free(self._chunk)


class MemoryPointer:
    """``cupy.cuda.memory.MemoryPointer`` as a pool hands it out: ``mem``, ``ptr``, the device."""

    def __init__(self, mem, offset=0):
        self.mem = mem
        self.ptr = 0 if mem is None else mem.ptr + offset
        self.device_id = cuda.getDevice() if mem is None else mem.device_id

    @property
    def device(self):
        return cuda.Device(self.device_id)

    def _buffer(self, nbytes):
        """The chunk's first ``nbytes`` bytes (a NumPy view of the segment)."""
        chunk = self.mem._chunk
        return chunk.segment.buffer[chunk.offset:chunk.offset + nbytes]


class MemoryPool:
    """``cupy.cuda.MemoryPool``: see the module's docstring."""

    def __init__(self, allocator=None):
        self._arenas = {}  # stream pointer -> free chunks
        self._segments = []
        self._used = 0
        self._limit = 0
        self._freed = 0  # free_all_blocks calls (tests/test_info.py counts the default pool's)

    def malloc(self, size):
        """A pointer to ``size`` bytes: a free chunk of the current stream's arena (best fit,
        split), else a new segment. While the current stream captures, a new segment (a
        cudaMalloc) is refused: see :func:`capture.refuse_cuda_malloc`."""
        if size == 0:
            return MemoryPointer(None)
        size = _round(size)
        arena = cuda.get_current_stream()._ptr
        free = [c for c in self._arenas.get(arena, ()) if c.size >= size]
        if free:
            chunk = min(free, key=lambda c: (c.size, id(c.segment), c.offset))
            self._arenas[arena].remove(chunk)
            if chunk.size > size:
                rest = _Chunk(chunk.segment, chunk.offset + size, chunk.size - size, arena)
                rest.free = True
                chunk.size = size
                chunks = chunk.segment.chunks
                chunks.insert(chunks.index(chunk) + 1, rest)
                self._arenas[arena].append(rest)
        else:
            capture.refuse_cuda_malloc()
            if self._limit and self.total_bytes() + size > self._limit:
                raise cuda.OutOfMemoryError(size, self.total_bytes(), self._limit)
            segment = _Segment(size)
            self._segments.append(segment)
            chunk = _Chunk(segment, 0, size, arena)
            segment.chunks.append(chunk)
        chunk.free = False
        self._used += chunk.size
        return MemoryPointer(_PooledMemory(chunk, self))

    def _free(self, chunk):
        self._used -= chunk.size
        chunk.free = True
        free = self._arenas.setdefault(chunk.arena, [])
        chunks = chunk.segment.chunks
        i = chunks.index(chunk)
        for j in (i + 1, i - 1):  # merge with free neighbours
            if 0 <= j < len(chunks) and chunks[j].free and chunks[j] in free:
                other = chunks[j]
                free.remove(other)
                first, second = (chunk, other) if j > i else (other, chunk)
                first.size += second.size
                chunks.remove(second)
                chunk = first
                i = chunks.index(chunk)
        free.append(chunk)

    def __del__(self):
        """A pool that is freed frees all its memory (cudaFree), arrays on it or not: their
        bytes become garbage (here 0xff: nan for floats)."""
        for segment in self._segments:
            segment.buffer[...] = 0xFF
            segment.released = True

    def free_all_blocks(self, stream=None):
        """Release every segment that is one free chunk (of ``stream``'s arena, or all): a
        cudaFree, which CUDA refuses while a stream captures."""
        self._freed += 1
        capture.refuse_cuda_free()
        arenas = list(self._arenas) if stream is None else [stream._ptr]
        for arena in arenas:
            for chunk in list(self._arenas.get(arena, ())):
                segment = chunk.segment
                if segment.chunks == [chunk]:
                    self._arenas[arena].remove(chunk)
                    self._segments.remove(segment)
                    segment.released = True

    def free_all_free(self):
        self.free_all_blocks()

    def used_bytes(self):
        return self._used

    def total_bytes(self):
        return sum(s.buffer.nbytes for s in self._segments)

    def free_bytes(self):
        return self.total_bytes() - self._used

    def n_free_blocks(self):
        return sum(len(free) for free in self._arenas.values())

    def set_limit(self, size=None, fraction=None):
        self._limit = int(size or 0)

    def get_limit(self):
        return self._limit


class DefaultPool(MemoryPool):
    """The default pool: arrays made without a pool allocator do not pass through it here; its
    numbers are fixed."""

    def used_bytes(self):
        return 3 << 20

    def total_bytes(self):
        return 5 << 20


# ---- allocators ------------------------------------------------------------------------------
class _Allocators(threading.local):
    current = None  # using_allocator's, on this thread (None: the global one)


_thread = _Allocators()
_global = [None]  # set_allocator's (None: the default pool, untracked here)


def _raw_malloc(size):
    """CuPy's ``memory._malloc``: cudaMalloc, no pool (untracked here, refused in capture)."""
    capture.refuse_cuda_malloc()
    return None


def get_allocator():
    if _thread.current is not None:
        return _thread.current
    return _global[0]


def set_allocator(allocator=None):
    if _thread.current is not None:
        raise ValueError("Can't change the global allocator inside `using_allocator` context "
                         "manager")
    _global[0] = allocator


@contextlib.contextmanager
def using_allocator(allocator=None):
    previous = _thread.current
    _thread.current = _raw_malloc if allocator is None else allocator
    try:
        yield
    finally:
        _thread.current = previous


def allocate(nbytes):
    """Memory for a new array of ``nbytes``: the current allocator's MemoryPointer, or None
    for untracked host memory (the default pool, or a size of 0). The default pool (whose
    bookkeeping the stand-in does not keep) is refused while the current stream captures."""
    allocator = get_allocator()
    if nbytes == 0:
        return None
    if allocator is None:
        capture.refuse_cuda_malloc(default_pool=True)
        return None
    pointer = allocator(nbytes)
    return pointer if isinstance(pointer, MemoryPointer) and pointer.mem is not None else None


def place(value, pointer, copy=True):
    """``value`` (a NumPy array) copied into ``pointer``'s chunk (unless ``copy`` is false:
    the chunk's bytes as they are), with the same strides where it is dense (a fresh result),
    else C-contiguous."""
    strides = value.strides
    span = sum((n - 1) * abs(s) for n, s in zip(value.shape, strides)) + value.itemsize
    if value.size and span != value.nbytes:
        strides = None
    offset = sum((n - 1) * -s for n, s in zip(value.shape, strides or ()) if s < 0)
    out = np.ndarray(value.shape, value.dtype, buffer=pointer._buffer(value.nbytes),
                     offset=offset, strides=strides)
    if copy:
        out[...] = value
    return out


def reset():
    _thread.current = None
    _global[0] = None
