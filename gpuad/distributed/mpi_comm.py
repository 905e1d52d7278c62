"""Collectives on host arrays through MPI (mpi4py): ``MPI_Iallreduce`` and its kin, waited on
with a deadline, so that a rank that never joins ends in a :class:`DistributedTimeoutError`
instead of a hang (MPI cannot cancel a collective: after a timeout the group is unusable, and
the job is aborted when the process exits, so that no rank waits forever in ``MPI_Finalize``).

mpi4py is imported only here, and only when a group uses MPI.
"""
from __future__ import annotations

import atexit
import time
from typing import Any

import numpy as np

from ..backends.probe import install_hint
from ..errors import DistributedError, DistributedTimeoutError

#: gpuad's reduction names -> mpi4py's operation names (mean is a sum, then a division)
OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}
#: how long a wait spins on ``Test`` before it sleeps between tests (seconds)
SPIN = 0.01


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module, or an error that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            "gpuad.distributed: the MPI backend needs mpi4py and an MPI library: "
            f"{install_hint('mpi')} ({exc})") from None
    return MPI


class MpiCommunicator:
    """MPI's ``COMM_WORLD`` for host (NumPy) arrays; every call waits at most ``timeout``
    seconds (None: forever)."""

    name = "mpi"

    def __init__(self, timeout: float | None) -> None:
        self.MPI = import_mpi()
        self.comm = self.MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = timeout
        self.broken: str | None = None  # why the group is unusable, after a timeout

    # ---- the waits ----------------------------------------------------------------------
    def _wait(self, request: Any, what: str) -> None:
        """Wait for ``request`` until the deadline; a timeout breaks the group."""
        if self.timeout is None:
            request.Wait()
            return
        start = time.monotonic()
        deadline = start + self.timeout
        tests = 0
        while not request.Test():
            tests += 1
            if tests % 64:
                continue
            now = time.monotonic()
            if now > deadline:
                self._break(f"{what} did not complete within timeout={self.timeout:g} s")
                raise DistributedTimeoutError(
                    f"gpuad.distributed: {what} on rank {self.rank} of {self.size} (MPI) did "
                    f"not complete within timeout={self.timeout:g} s: some rank did not take "
                    "part (it died, hangs, or runs other code). MPI cannot cancel a "
                    "collective: the group is unusable, and the MPI job is aborted when this "
                    "process exits. Make every rank make the same calls in the same order, "
                    "or raise timeout= in init_process_group.")
            if now - start > SPIN:
                time.sleep(0.0005)

    def _break(self, why: str) -> None:
        if self.broken is None:
            self.broken = why
            atexit.register(self.comm.Abort, 1)

    def check_usable(self) -> None:
        if self.broken is not None:
            raise DistributedError(f"gpuad.distributed: the MPI group is unusable: an earlier "
                                   f"{self.broken}; start a new job")

    # ---- the collectives (contiguous host arrays, in place) -----------------------------
    def all_reduce(self, a: np.ndarray, op: str) -> None:
        """``a`` becomes the elementwise ``op`` of every rank's ``a`` (mean: sum, then /size)."""
        self.check_usable()
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, a,
                                       op=getattr(self.MPI, OPS[op]))
        self._wait(request, f"all_reduce({op}) of {a.dtype} {a.shape}")
        if op == "mean":
            np.divide(a, self.size, out=a, casting="unsafe")

    def broadcast(self, a: np.ndarray, src: int) -> None:
        """``a`` becomes rank ``src``'s ``a``."""
        self.check_usable()
        request = self.comm.Ibcast(a, root=src)
        self._wait(request, f"broadcast(src={src}) of {a.dtype} {a.shape}")

    def all_gather(self, a: np.ndarray, out: np.ndarray, what: str | None = None) -> None:
        """``out[r]`` becomes rank ``r``'s ``a``."""
        self.check_usable()
        request = self.comm.Iallgather(a, out)
        self._wait(request, what or f"all_gather of {a.dtype} {a.shape}")

    def barrier(self) -> None:
        """Return when every rank has reached its barrier."""
        self.check_usable()
        self._wait(self.comm.Ibarrier(), "barrier()")

    def bcast_object(self, value: Any, src: int) -> Any:
        """A small picklable value from rank ``src`` (the NCCL unique id)."""
        data = np.frombuffer(bytes(value), np.uint8).copy() if self.rank == src else None
        size = np.array([0 if data is None else data.size], np.int64)
        self.broadcast(size, src)
        if data is None:
            data = np.empty(int(size[0]), np.uint8)
        self.broadcast(data, src)
        return data.tobytes()

    def close(self) -> None:
        """Nothing to free: ``COMM_WORLD`` lives until the process ends (mpi4py finalizes)."""
