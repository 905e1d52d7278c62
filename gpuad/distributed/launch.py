"""Where this process stands in a launch: its rank, the world size and its local rank, read
from the variables that launchers set, in this order (the first launcher found wins):

- torchrun's contract: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (0 if absent),
  ``MASTER_ADDR`` and ``MASTER_PORT`` (where rank 0 serves the rendezvous);
- Open MPI's ``mpirun``: ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``;
- MPICH's and Intel MPI's ``mpiexec`` (PMI): ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``;
- Slurm's ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``.

With none of them, the process is a world of one (rank 0 of 1).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

#: per launcher: the variables of (rank, world size, local rank); the first two must be set
LAUNCHERS: dict[str, tuple[str, str, str]] = {
    "torchrun": ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    "Open MPI": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    "MPICH (PMI)": ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    "Slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
}


@dataclass(frozen=True)
class Launch:
    """This process's place: ``rank`` of ``world_size``, ``local_rank`` on its machine, the
    launcher that said so (None: no launcher, a world of one) and, under torchrun's contract,
    the rendezvous address (``MASTER_ADDR``, ``MASTER_PORT``)."""

    rank: int
    world_size: int
    local_rank: int
    launcher: str | None
    master_addr: str | None = None
    master_port: int | None = None


def _integer(env: Mapping[str, str], name: str, launcher: str) -> int:
    text = env[name]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"gpuad.distributed: {launcher}'s {name}={text!r} is not an integer; "
                         f"fix the launch (or unset {name})") from None


def read(env: Mapping[str, str] | None = None) -> Launch:
    """The launch described by ``env`` (default: ``os.environ``).

    >>> at = ad.distributed.launch.read({"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "9"})
    >>> at.rank, at.world_size, at.local_rank, at.launcher, at.master_port
    (1, 2, 0, 'torchrun', 9)
    >>> ad.distributed.launch.read({}).world_size
    1
    """
    env = os.environ if env is None else env
    for launcher, (rank_name, size_name, local_name) in LAUNCHERS.items():
        if rank_name not in env and size_name not in env:
            continue
        missing = [n for n in (rank_name, size_name) if n not in env]
        if missing:
            raise ValueError(f"gpuad.distributed: {launcher}'s variables are incomplete: "
                             f"{missing[0]} is not set (set both {rank_name} and {size_name}, "
                             "or neither)")
        rank = _integer(env, rank_name, launcher)
        size = _integer(env, size_name, launcher)
        local = _integer(env, local_name, launcher) if local_name in env else 0
        if size < 1 or not 0 <= rank < size or local < 0:
            raise ValueError(f"gpuad.distributed: {launcher} says rank {rank} of world size "
                             f"{size} (local rank {local}); a rank must lie in "
                             "[0, world size) and the local rank be >= 0")
        addr = port = None
        if launcher == "torchrun":
            addr = env.get("MASTER_ADDR")
            if "MASTER_PORT" in env:
                port = _integer(env, "MASTER_PORT", launcher)
        return Launch(rank, size, local, launcher, addr, port)
    return Launch(0, 1, 0, None)


def override(launch: Launch, rank: int | None, world_size: int | None) -> Launch:
    """``launch`` with the rank and world size given to ``init_process_group`` (the local
    rank, launcher and rendezvous address kept).

    >>> ad.distributed.launch.override(ad.distributed.launch.read({}), 1, 2).rank
    1
    """
    rank = launch.rank if rank is None else rank
    size = launch.world_size if world_size is None else world_size
    for name, value in (("rank", rank), ("world_size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"gpuad.distributed.init_process_group: {name}={value!r}; give an "
                            "int")
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"gpuad.distributed.init_process_group: rank={rank} of "
                         f"world_size={size}; a rank must lie in [0, world_size)")
    return dataclasses.replace(launch, rank=rank, world_size=size)
