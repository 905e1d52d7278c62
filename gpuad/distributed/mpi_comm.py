"""Collectives on host arrays through MPI (mpi4py): ``MPI_Iallreduce`` and its kin, waited on
with a deadline, so that a rank that never joins ends in a :class:`DistributedTimeoutError`
instead of a hang (MPI cannot cancel a collective: after a timeout the group is unusable, and
the job is aborted when the process exits, so that no rank waits forever in ``MPI_Finalize``).

mpi4py is imported only here, and only when a group uses MPI.
"""
from __future__ import annotations

import atexit
import os
import time
from typing import Any

import numpy as np

from ..backends.probe import install_hint
from ..errors import DistributedError, DistributedTimeoutError

#: gpuad's reduction names -> mpi4py's operation names (mean is a sum, then a division)
OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}
#: how long a wait tests (yielding the core between tests) before it sleeps between tests
IDLE = 1.0


def import_mpi() -> Any:
    """mpi4py's ``MPI`` module, or an error that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            "gpuad.distributed: the MPI backend needs mpi4py and an MPI library: "
            f"{install_hint('mpi')} ({exc})") from None
    return MPI


def scale(a: np.ndarray, n: int) -> None:
    """``a /= n`` in place; by a power of two as a multiplication by its reciprocal, which gives
    the same bits (both are the correctly rounded ``a / n``) in a pass about twice as fast."""
    if n & (n - 1) == 0:
        np.multiply(a, 1.0 / n, out=a, casting="unsafe")
    else:
        np.divide(a, n, out=a, casting="unsafe")


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
        #: whether this machine's ranks outnumber its cores: a wait then yields the core
        #: between tests, since a spinning rank keeps the one it waits for from running
        #: (measured, 4 ranks on 2 cores, a 1 MiB all-reduce: 12.8 ms spinning, 0.8 ms
        #: yielding, 0.77 ms a bare Allreduce); with a core each, yielding slowed it (2
        #: ranks: 0.88x of the bare Allreduce, against 0.97x spinning)
        self.crowded = False

    # ---- the waits ----------------------------------------------------------------------
    def _wait(self, request: Any, describe: Any) -> None:
        """Wait for ``request`` until the deadline; a timeout breaks the group (``describe``
        names the call, a string or a function giving one: formatted only then)."""
        if self.timeout is None:
            request.Wait()
            return
        start = time.monotonic()
        deadline = start + self.timeout
        tests = 0
        while not request.Test():
            tests += 1
            if self.crowded:  # (see crowded)
                os.sched_yield()
            if tests % 64:
                continue
            now = time.monotonic()
            if now > deadline:
                what = describe() if callable(describe) else describe
                self._break(f"{what} did not complete within timeout={self.timeout:g} s")
                raise DistributedTimeoutError(
                    f"gpuad.distributed: {what} on rank {self.rank} of {self.size} (MPI) did "
                    f"not complete within timeout={self.timeout:g} s: some rank did not take "
                    "part (it died, hangs, or runs other code). MPI cannot cancel a "
                    "collective: the group is unusable, and the MPI job is aborted when this "
                    "process exits. Make every rank make the same calls in the same order, "
                    "or raise timeout= in init_process_group.")
            if now - start > IDLE:
                time.sleep(0.0005)  # (a long wait: a rank far behind, or gone)

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
        self._wait(request, lambda: f"all_reduce({op}) of {a.dtype} {a.shape}")
        if op == "mean":
            scale(a, self.size)

    def broadcast(self, a: np.ndarray, src: int) -> None:
        """``a`` becomes rank ``src``'s ``a``."""
        self.check_usable()
        request = self.comm.Ibcast(a, root=src)
        self._wait(request, lambda: f"broadcast(src={src}) of {a.dtype} {a.shape}")

    def all_gather(self, a: np.ndarray, out: np.ndarray, what: str | None = None) -> None:
        """``out[r]`` becomes rank ``r``'s ``a``."""
        self.check_usable()
        request = self.comm.Iallgather(a, out)
        self._wait(request, lambda: what or f"all_gather of {a.dtype} {a.shape}")

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
