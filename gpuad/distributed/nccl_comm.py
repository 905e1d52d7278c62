"""Collectives on CUDA arrays through NCCL (CuPy's ``cupy.cuda.nccl``): one communicator per
process, on the GPU of its local rank. A collective is queued on the current stream; gpuad then
waits for it with a deadline (an event polled, NCCL's asynchronous errors checked), and on a
timeout aborts the communicator (``NcclCommunicator.abort()``), so no rank hangs.

Inside a CUDA graph's capture nothing is waited for (the collective is recorded, not run):
a replayed step's collectives have NCCL's own behaviour, without gpuad's timeout.

NCCL's unique id reaches the ranks through whichever control plane the group has: MPI's
broadcast, or the torchrun-style rendezvous (:mod:`.rendezvous`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends.probe import install_hint
from ..errors import DistributedError, DistributedTimeoutError

#: gpuad's reduction names -> NCCL's (mean is NCCL's average, floating point only)
OPS = {"sum": "NCCL_SUM", "mean": "NCCL_AVG", "max": "NCCL_MAX", "min": "NCCL_MIN"}
#: NumPy dtype names -> NCCL's data types (bool travels as uint8); NCCL has no others
DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
          "int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32",
          "uint32": "NCCL_UINT32", "int64": "NCCL_INT64", "uint64": "NCCL_UINT64",
          "bool": "NCCL_UINT8"}
SPIN = 0.01


def import_nccl() -> Any:
    """CuPy's NCCL module, or an error that says what is missing."""
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        raise DistributedError("gpuad.distributed: the NCCL backend needs CuPy: "
                               f"{install_hint('cuda13-dist')} ({exc})") from None
    if not getattr(nccl, "available", True):
        raise DistributedError("gpuad.distributed: CuPy cannot load NCCL (libnccl.so.2): "
                               f"{install_hint('cuda13-dist')}, or nvidia-nccl-cu12 for CUDA 12")
    return nccl


def usable() -> bool:
    """Whether NCCL can be loaded (CuPy installed, libnccl found); imports nothing when CuPy
    is not installed."""
    from ..backends import probe

    if not probe.cupy_installed():
        return False
    try:
        import_nccl()
    except DistributedError:
        return False
    return True


def _id_bytes(uid: Any) -> bytes:
    """NCCL's unique id as it travels: CuPy 14's 128 bytes as they are, marked ``b"B"``; an
    older CuPy's tuple of 128 C chars (signed or not, as the platform's char) as int16s,
    marked ``b"T"``, so that every rank rebuilds the type its CuPy takes."""
    if isinstance(uid, bytes):
        return b"B" + uid
    return b"T" + np.array(uid, np.int16).tobytes()


def _id_of(data: bytes) -> Any:
    """The unique id that :func:`_id_bytes` packed."""
    if data[:1] == b"B":
        return data[1:]
    return tuple(np.frombuffer(data[1:], np.int16).tolist())


class NcclCommunicator:
    """An NCCL communicator of ``size`` ranks on CUDA device ``device``; ``share_id(uid)``
    gives every rank rank 0's unique id."""

    name = "nccl"

    def __init__(self, rank: int, size: int, device: int, timeout: float | None,
                 share_id: Callable[[bytes | None], bytes]) -> None:
        import cupy

        self.cupy, self.nccl = cupy, import_nccl()
        self.rank, self.size, self.device, self.timeout = rank, size, device, timeout
        self.broken: str | None = None
        mine = _id_bytes(self.nccl.get_unique_id()) if rank == 0 else None
        uid = _id_of(share_id(mine))
        with cupy.cuda.Device(device):
            self.comm = self.nccl.NcclCommunicator(size, uid, rank)

    def _wait(self, what: str) -> None:
        """Wait for the queued collective until the deadline; a timeout aborts NCCL."""
        cuda = self.cupy.cuda
        if cuda.get_current_stream().is_capturing():
            return  # (captured into a CUDA graph, not run: each replay runs it, unwatched)
        event = cuda.Event(disable_timing=True)
        event.record()
        start = time.monotonic()
        while not event.done:
            self.comm.check_async_error()
            now = time.monotonic()
            if self.timeout is not None and now - start > self.timeout:
                self.broken = f"{what} did not complete within timeout={self.timeout:g} s"
                self.comm.abort()
                raise DistributedTimeoutError(
                    f"gpuad.distributed: {what} on rank {self.rank} of {self.size} (NCCL, "
                    f"cuda:{self.device}) did not complete within timeout={self.timeout:g} s: "
                    "some rank did not take part (it died, hangs, or runs other code). The "
                    "communicator was aborted; the group is unusable. Make every rank make "
                    "the same calls in the same order, or raise timeout= in "
                    "init_process_group.")
            if now - start > SPIN:
                time.sleep(0.0005)

    def check_usable(self) -> None:
        if self.broken is not None:
            raise DistributedError(f"gpuad.distributed: the NCCL group is unusable: an "
                                   f"earlier {self.broken}; start a new job")

    def _args(self, a: Any) -> tuple[int, int]:
        name = DTYPES.get(a.dtype.name)
        if name is None:
            raise TypeError(f"gpuad.distributed: NCCL cannot carry {a.dtype} tensors (it has "
                            f"{', '.join(sorted(DTYPES))}); cast the tensor first, or move it "
                            "to the CPU (MPI carries more dtypes)")
        return a.size, getattr(self.nccl, name)

    def _stream(self) -> int:
        return self.cupy.cuda.get_current_stream().ptr

    def all_reduce(self, a: Any, op: str) -> None:
        """``a`` (contiguous, on this communicator's device) becomes the elementwise ``op`` of
        every rank's ``a``, in place."""
        self.check_usable()
        count, dtype = self._args(a)
        with self.cupy.cuda.Device(self.device):
            self.comm.allReduce(a.data.ptr, a.data.ptr, count, dtype,
                                getattr(self.nccl, OPS[op]), self._stream())
            self._wait(f"all_reduce({op}) of {a.dtype} {a.shape}")

    def broadcast(self, a: Any, src: int) -> None:
        """``a`` becomes rank ``src``'s ``a``, in place."""
        self.check_usable()
        count, dtype = self._args(a)
        with self.cupy.cuda.Device(self.device):
            self.comm.bcast(a.data.ptr, count, dtype, src, self._stream())
            self._wait(f"broadcast(src={src}) of {a.dtype} {a.shape}")

    def all_gather(self, a: Any, out: Any, what: str | None = None) -> None:
        """``out[r]`` becomes rank ``r``'s ``a``."""
        self.check_usable()
        count, dtype = self._args(a)
        with self.cupy.cuda.Device(self.device):
            self.comm.allGather(a.data.ptr, out.data.ptr, count, dtype, self._stream())
            self._wait(what or f"all_gather of {a.dtype} {a.shape}")

    def barrier(self) -> None:
        """An all-reduce of one value: NCCL has no barrier of its own."""
        with self.cupy.cuda.Device(self.device):
            self.all_reduce(self.cupy.zeros(1, self.cupy.float32), "sum")

    def close(self) -> None:
        """Free the communicator (after a timeout it was aborted already)."""
        if self.broken is None:
            self.comm.destroy()
