"""Large CPU results on memory used before, not on pages the kernel must fault in and zero.

A fresh NumPy array of tens of MiB is a fresh ``mmap``: its first write page-faults every page,
and the kernel zeroes each one, which on a 10^7-value float32 array costs more than the
arithmetic (an exp into such an array takes ~8 ms; into a reused one ~1.5 ms, on two Xeon
vCPUs). PyTorch's CPU allocator pays this too. The chunked elementwise path
(:mod:`cpu_parallel`) therefore takes its outputs from this pool: a result's memory goes back
to the pool when the last array that sees it is gone, and the next result of the same byte
size takes it over.

Safety rests on how NumPy records a view's owner: each pooled array is made over a lease, a
ctypes array over its buffer, and NumPy stops a view's ``base`` chain at the first object that
is not an array: a view of the pooled array has that array as its base, and the array has the
lease. So the lease lives exactly as long as anything that sees the memory, and only its
finalizer gives the buffer back. The arrays are writable as ``np.empty``'s are (the lease
exports a writable buffer); they do not own their data, so ``resize`` refuses them.

At most :data:`LIMIT` bytes wait idle: ``GPUAD_CPU_POOL_MB`` MiB (0 turns the pool off), by
default an eighth of the memory this process may use (the machine's, or its container's limit)
and at most 1 GiB. A buffer given back when the pool is full pushes out the ones that have
waited longest, so sizes a program no longer uses make way; :func:`empty` releases them all.

Smaller blocks (a chunk's temporaries, a mid-sized result) come from glibc's malloc, which left
to itself hands freed memory back to the kernel once the top of a heap holds more than twice
the largest block freed so far: so every chunk, and every op on 10^5-10^6 values, faults its
memory in again (a 20-op chain on 10^6 float32 values: 25 ms with, 19 ms without). The CPU
backend therefore sets two of glibc's parameters when it is made (:func:`keep_freed_memory`),
for the whole process: up to 64 MiB of free heap per malloc arena (glibc makes up to 8 per
core) stays with the process. ``GPUAD_MALLOC=system`` leaves glibc as it is.
"""
import ctypes
import os
import sys
import threading
import weakref

import numpy as np

_MIB = 1 << 20
#: where a container's memory limit is read (cgroup v2, then v1)
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def usable_memory(limits=CGROUP_LIMITS):
    """Bytes of memory this process may use: the machine's, or less where a cgroup (a
    container) limits it."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        memory = 8 << 30
    for path in limits:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():  # ("max" where there is no limit)
            memory = min(memory, int(text))
    return memory


def _limit_from_env():
    env = os.environ.get("GPUAD_CPU_POOL_MB", "").strip()
    if not env:
        return min(1024 * _MIB, usable_memory() // 8)
    if not env.isdigit():
        raise ValueError(f"gpuad: GPUAD_CPU_POOL_MB must be a whole number of MiB (0: no "
                         f"pool), not {env!r}")
    return int(env) * _MIB


#: bytes of idle memory the pool keeps at most
LIMIT = _limit_from_env()

_lock = threading.Lock()
if hasattr(os, "register_at_fork"):  # (a child starts with a lock no thread holds)
    os.register_at_fork(after_in_child=lambda: globals().update(_lock=threading.Lock()))
_idle: list[np.ndarray] = []  # buffers waiting to be reused, the longest waiting first
_idle_bytes = 0


_leases: set[int] = set()  # the ids of the leases alive (each the base of one array)


def take(shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` (as ``np.empty``), on an
    idle buffer of its byte size if the pool has one."""
    global _idle_bytes
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if not LIMIT or not nbytes or dtype.hasobject:  # (object arrays: never on old bytes)
        return np.empty(shape, dtype)
    buffer = None
    # (never waits: a signal handler or a finalizer that computes may call this while the same
    # thread holds the lock; then the result takes fresh memory)
    if _idle and _lock.acquire(blocking=False):
        try:
            for i in range(len(_idle) - 1, -1, -1):  # (the most recently given back first)
                if _idle[i].nbytes == nbytes:
                    buffer = _idle.pop(i)
                    _idle_bytes -= nbytes
                    break
        finally:
            _lock.release()
    if buffer is not None and sys.getrefcount(buffer) > 2:
        # something still sees it (a lease brought back to life by a finalizer after its
        # own finalizer ran, or a memoryview kept from a lease's insides): let it go
        buffer = None
    if buffer is None:
        buffer = np.empty(nbytes, np.uint8)
    lease = (ctypes.c_char * nbytes).from_buffer(buffer)
    _leases.add(id(lease))
    weakref.finalize(lease, _give_back, buffer, id(lease)).atexit = False
    return np.ndarray(shape, dtype, buffer=lease)


def _give_back(buffer, lease):
    """The lease ``lease`` (an id) has gone: keep ``buffer`` for reuse, pushing out the buffers
    that have waited longest while the pool would hold more than LIMIT. Never waits: a
    finalizer can run in any thread, inside the pool's own code among them (a collection
    there), and the buffer is simply freed when the lock is held."""
    global _idle_bytes
    _leases.discard(lease)
    if buffer.nbytes > LIMIT or not _lock.acquire(blocking=False):
        return
    try:
        _idle.append(buffer)
        _idle_bytes += buffer.nbytes
        while _idle_bytes > LIMIT:
            _idle_bytes -= _idle.pop(0).nbytes
    finally:
        _lock.release()


#: glibc's mallopt parameter numbers (malloc.h), and the values :func:`keep_freed_memory` sets:
#: blocks below MMAP_THRESHOLD (glibc's upper limit for it) come from the heap, and up to
#: TRIM_THRESHOLD of free memory at the top of each heap is kept
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: GPUAD_MALLOC: "keep" (the default) or "system"
MALLOC = os.environ.get("GPUAD_MALLOC", "keep")
if MALLOC not in ("keep", "system"):
    raise ValueError(f"gpuad: GPUAD_MALLOC must be 'keep' (the default: keep freed memory for "
                     f"reuse) or 'system' (leave glibc's malloc as it is), not {MALLOC!r}")
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_malloc_set = False


def keep_freed_memory():
    """Once per process: glibc's ``mallopt`` serves blocks below MMAP_THRESHOLD from the heap
    and keeps up to TRIM_THRESHOLD of free heap per arena, so freed memory is reused instead
    of faulted in again. Left alone where malloc is not glibc's, where the program tunes malloc
    itself (a ``MALLOC_*`` or ``GLIBC_TUNABLES`` variable), or with ``GPUAD_MALLOC=system``
    (``keep``, the default, sets them). Returns whether the parameters were set (None: left
    alone)."""
    global _malloc_set
    if _malloc_set is not False:
        return _malloc_set
    _malloc_set = None  # (decided: whatever follows, this runs once)
    env = os.environ
    if (MALLOC == "system" or "GLIBC_TUNABLES" in env
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
    return None if id(b) in _leases else b


def idle_bytes():
    """Bytes waiting in the pool."""
    return _idle_bytes


def empty():
    """Let every idle buffer go (arrays in use keep theirs)."""
    global _idle_bytes
    with _lock:
        _idle.clear()
        _idle_bytes = 0
