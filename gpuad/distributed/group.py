"""The process group: which ranks take part, and the communicator for each device kind.

``init_process_group(backend)`` builds at most two communicators:

- for CPU tensors, MPI's ``COMM_WORLD`` (:mod:`.mpi_comm`), when the processes were started by
  an MPI launcher (``mpiexec``, ``mpirun``, ``srun`` with MPI); none for a torchrun-style launch
  without MPI (processes started one by one cannot form an MPI world);
- for CUDA tensors, NCCL (:mod:`.nccl_comm`) on the GPU of the local rank, with ``"nccl"`` or
  with ``"auto"`` where CuPy and NCCL are usable; otherwise CUDA tensors travel through the
  host and MPI.

A world of one needs neither: its collectives leave tensors as they are.
"""
from __future__ import annotations

import contextlib
import datetime
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import DistributedError
from . import launch as launching
from .mpi_comm import MpiCommunicator
from .rendezvous import Rendezvous, rendezvous_port

BACKENDS = ("auto", "mpi", "nccl")
#: seconds a collective may wait for the other ranks (PyTorch's default: 30 minutes)
DEFAULT_TIMEOUT = 1800.0


class SelfCommunicator:
    """The communicator of a world of one: every collective leaves its array as it is."""

    name = "self"
    rank, size = 0, 1

    def all_reduce(self, a: Any, op: str) -> None:
        """Nothing to combine."""

    def broadcast(self, a: Any, src: int) -> None:
        """Nothing to send."""

    def all_gather(self, a: Any, out: Any, what: str | None = None) -> None:
        out[0] = a

    def barrier(self) -> None:
        """Nobody to wait for."""

    def check_usable(self) -> None:
        """Always usable."""

    def close(self) -> None:
        """Nothing to free."""


@dataclass
class Group:
    """The initialised process group."""

    launch: launching.Launch
    backend: str
    timeout: float | None
    comms: dict[str, Any] = field(default_factory=dict)  # "cpu"/"cuda" -> communicator
    rendezvous: Rendezvous | None = None
    device: str = "cpu"  # where this rank computes: "cpu" or "cuda:<local rank>"

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size


current: Group | None = None
#: how many groups this process has made (the rendezvous keys of each group are its own)
_made = [0]


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"gpuad.distributed.init_process_group: timeout={timeout!r}; give "
                         "seconds > 0 (a number or a datetime.timedelta), or None to wait "
                         "forever")
    return float(timeout)


def _mpi_launch(info: launching.Launch, env: Any) -> bool:
    """Whether an MPI launcher started this process (for a torchrun-style launch: whether
    MPI's variables are set too)."""
    if info.launcher in ("Open MPI", "MPICH (PMI)", "Slurm"):
        return True
    for name in ("Open MPI", "MPICH (PMI)"):  # (torchrun's variables and MPI's: one world?)
        rank_name, size_name, _ = launching.LAUNCHERS[name]
        if (env.get(rank_name), env.get(size_name)) == (str(info.rank), str(info.world_size)):
            return True
    return False  # (torchrun started inside an MPI launch: its workers are no MPI world)


@contextlib.contextmanager
def deadline(seconds: float | None, what: str, rank: int) -> Iterator[None]:
    """A step that cannot be interrupted (MPI's start-up, NCCL's ``ncclCommInitRank``): past
    ``seconds`` the process says what it waited for and exits (status 1), which ends an MPI
    job on every rank, rather than wait forever for a rank that is gone. Where the step holds
    the GIL while it waits (MPI_Init does), the message cannot run: then, a second later,
    faulthandler prints "Timeout" and every thread's stack (the step's frames in it) and
    exits."""
    if seconds is None:
        yield
        return

    def expire() -> None:
        sys.stderr.write(f"gpuad.distributed: rank {rank}: {what} did not complete within "
                         f"timeout={seconds:g} s: some rank did not take part (it died "
                         "before init_process_group, or hangs); exiting\n")
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    # (a backstop that needs no GIL, which MPI_Init and ncclCommInitRank hold while they
    # wait: it prints every thread's stack, this step's frames among them, and exits)
    faulthandler.dump_traceback_later(seconds + 1.0, exit=True)
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def _mpi(info: launching.Launch, timeout: float | None) -> MpiCommunicator:
    with deadline(timeout, "MPI's start-up (MPI_Init, with every rank)", info.rank):
        comm = MpiCommunicator(timeout)
    if (comm.rank, comm.size) != (info.rank, info.world_size):
        raise DistributedError(
            f"gpuad.distributed: the launch says rank {info.rank} of {info.world_size} "
            f"({info.launcher}), but MPI's world is rank {comm.rank} of {comm.size}; launch "
            "every process with one mpiexec/mpirun/srun (processes started one by one cannot "
            "form an MPI world), or for CUDA tensors use backend='nccl'")
    return comm


def _cuda_device(info: launching.Launch) -> int:
    from .. import cuda

    count = cuda.device_count()
    if info.local_rank >= count and count == 1 and "CUDA_VISIBLE_DEVICES" in os.environ:
        return 0  # (each process shown its own GPU: srun --gpus-per-task=1, and the like)
    if info.local_rank >= count:
        raise DistributedError(
            f"gpuad.distributed: local rank {info.local_rank} needs GPU {info.local_rank}, but "
            f"this machine has {count} GPU(s); start at most {count} processes per machine "
            "(NCCL needs one GPU per process)")
    return info.local_rank


def init(backend: str, timeout: Any, rank: int | None, world_size: int | None,
         env: Any) -> Group:
    """Build the group (see :func:`gpuad.distributed.init_process_group`)."""
    global current
    if current is not None:
        raise DistributedError("gpuad.distributed.init_process_group: the process group is "
                               "already initialised; call destroy_process_group() first")
    if backend not in BACKENDS:
        raise ValueError(f"gpuad.distributed.init_process_group: backend={backend!r}; choose "
                         f"one of {', '.join(map(repr, BACKENDS))}")
    seconds = _seconds(timeout)
    _made[0] += 1
    info = launching.read(env)
    if rank is not None or world_size is not None:  # (the rest of the launch kept)
        info = launching.override(info, rank, world_size)
    group = Group(info, backend, seconds)
    cpu = group.comms
    try:
        if backend == "mpi" or (info.world_size > 1 and _mpi_launch(info, env)):
            cpu["cpu"] = _mpi(info, seconds)
        elif info.world_size == 1:
            cpu["cpu"] = SelfCommunicator()
        _cuda(group, env)
        if not group.comms:
            raise DistributedError(
                f"gpuad.distributed.init_process_group: a {info.launcher} launch of "
                f"{info.world_size} processes without MPI, and NCCL is not usable here "
                f"(backend={backend!r}): CPU tensors need the processes started by mpiexec, "
                "mpirun or srun (processes started one by one cannot form an MPI world); "
                "CUDA tensors need a GPU per process and NCCL")
    except BaseException:
        for comm in group.comms.values():
            comm.close()
        if group.rendezvous is not None:
            group.rendezvous.close()
        raise
    group.backend = "+".join(sorted({c.name for c in group.comms.values()})) or "none"
    current = group
    if isinstance(group.comms.get("cpu"), MpiCommunicator) and info.world_size > 1:
        sys.excepthook = _aborting(sys.excepthook, group.comms["cpu"])
        with deadline(seconds, "finding the ranks of this machine (MPI_Comm_split_type)",
                      info.rank):
            _share_cores(group.comms["cpu"], env, group.device == "cpu")
    return group


#: variables by which a user chooses the CPU threads: then gpuad leaves them alone
THREAD_SETTINGS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _share_cores(comm: MpiCommunicator, env: Any, threads: bool) -> None:
    """Note whether this machine's ranks outnumber its cores (``comm.crowded``) and, with
    ``threads`` (the ranks compute on the CPU), split its cores among the ranks on it (gpuad's
    helper threads, and the BLAS threads through threadpoolctl where it is installed), as
    torchrun sets one thread per process: ranks that each start a thread per core
    oversubscribe the machine, and a step then takes many times as long (measured: the demo's
    epoch at 2 ranks on 2 cores, 238-384 ms with 2 threads each, 10 ms with 1; one process
    alone, 13-14 ms). A variable of ``THREAD_SETTINGS`` set keeps the user's choice."""

    from ..backends import cpu_parallel

    local = comm.comm.Split_type(comm.MPI.COMM_TYPE_SHARED).Get_size()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    comm.crowded = local > cores
    if not threads or local < 2 or any(name in env for name in THREAD_SETTINGS):
        return
    share = max(1, cores // local)
    cpu_parallel.set_num_threads(min(share, cpu_parallel.get_num_threads()))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=share, user_api="blas")


def _aborting(previous: Any, comm: MpiCommunicator) -> Any:
    """``sys.excepthook`` that, after ``previous`` printed the error, aborts the MPI job while
    the group lives: a rank that raises ends every rank at once, instead of leaving them
    waiting for it until their timeout."""

    def hook(kind: Any, value: Any, tb: Any) -> None:
        if current is None or current.comms.get("cpu") is not comm:
            previous(kind, value, tb)
            return
        sys.stderr.write(f"gpuad.distributed: rank {comm.rank} of {comm.size} failed with "
                         f"{kind.__name__}: {value}; aborting the MPI job\n")
        sys.stderr.flush()
        previous(kind, value, tb)
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(0.2)  # (the launcher forwards what was written before the abort)
        comm.comm.Abort(1)

    hook.previous = previous  # type: ignore[attr-defined]  # (put back by destroy())
    return hook


def _cuda(group: Group, env: Any) -> None:
    """The communicator for CUDA tensors, and the GPU this rank uses."""
    from .. import cuda
    from . import nccl_comm

    info, backend = group.launch, group.backend
    if backend == "mpi":
        return
    wanted = backend == "nccl"
    if not wanted and (info.world_size == 1 or not (cuda.is_available()
                                                    and nccl_comm.usable())):
        return  # (a world of one needs no NCCL unless asked for)
    if not cuda.is_available():
        raise DistributedError("gpuad.distributed.init_process_group: backend='nccl' needs a "
                               "usable GPU, and this machine has none "
                               "(python -m gpuad info says why); use backend='mpi' or 'auto'")
    device = _cuda_device(info)
    group.device = f"cuda:{device}"
    from ..devices import set_default_device

    set_default_device(group.device)
    cpu = group.comms.get("cpu")
    if isinstance(cpu, MpiCommunicator):
        share = lambda uid: cpu.bcast_object(uid, 0)  # noqa: E731
    elif info.world_size == 1:
        share = lambda uid: uid  # noqa: E731
    else:
        port = None if info.master_port is None else rendezvous_port(info.master_port, env)
        restarts = env.get("TORCHELASTIC_RESTART_COUNT", "0")
        generation = _made[0] + (int(restarts) if restarts.isdigit() else 0) * 1000
        group.rendezvous = Rendezvous(info.rank, info.world_size, info.master_addr, port,
                                      group.timeout, generation)
        share = lambda uid: group.rendezvous.exchange("nccl-id", uid)  # type: ignore  # noqa
    with deadline(group.timeout, "NCCL's start-up (ncclCommInitRank, with every rank)",
                  info.rank):
        group.comms["cuda"] = nccl_comm.NcclCommunicator(info.rank, info.world_size, device,
                                                         group.timeout, share)


def destroy() -> None:
    """Free the communicators and forget the group."""
    global current
    group, current = current, None
    if group is None:
        return
    previous = getattr(sys.excepthook, "previous", None)
    if previous is not None:
        sys.excepthook = previous
    for comm in group.comms.values():
        comm.close()
    if group.rendezvous is not None:
        group.rendezvous.close()


def require(op: str) -> Group:
    """The group, or an error naming ``op`` that says to initialise it."""
    if current is None:
        raise DistributedError(f"gpuad.distributed.{op}: the process group is not initialised; "
                               "call ad.distributed.init_process_group() first (under mpiexec, "
                               "srun or torchrun-style variables)")
    return current
