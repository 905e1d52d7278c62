"""``ad.distributed``: data-parallel training across processes, GPUs and machines, on NCCL (CUDA
tensors, through CuPy) and MPI (CPU tensors and the control plane, through mpi4py), as
``torch.distributed`` spells it.

Launch one process per GPU (or per CPU share) with ``mpiexec -n N``, ``srun``, or torchrun's
variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); each
process calls :func:`init_process_group` and wraps its model in
:class:`gpuad.nn.parallel.DistributedDataParallel`. Nothing here imports mpi4py or CuPy until a
group needs them; without a launcher a process is a world of one, and every collective leaves
its tensor as it is.

>>> ad.distributed.init_process_group()
>>> ad.distributed.get_rank(), ad.distributed.get_world_size()
(0, 1)
>>> ad.distributed.destroy_process_group()
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import DistributedError, DistributedTimeoutError
from . import group as _groups
from .collectives import all_gather, all_reduce, barrier, broadcast
from .group import DEFAULT_TIMEOUT
from .sampler import DistributedSampler
from .training import is_main_process, rank0_only, reduce_metrics, save

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank",
           "get_world_size", "get_local_rank", "get_backend", "barrier", "all_reduce",
           "broadcast", "all_gather", "DistributedSampler", "is_main_process", "rank0_only",
           "save", "reduce_metrics", "DistributedError", "DistributedTimeoutError"]


def init_process_group(backend: str = "auto", timeout: Any = DEFAULT_TIMEOUT, *,
                       rank: int | None = None, world_size: int | None = None) -> None:
    """Join the process group that the launcher describes (torchrun's variables first, then
    Open MPI's, MPICH's and Slurm's; ``rank``/``world_size`` override them).

    ``backend``: ``"auto"`` uses NCCL for CUDA tensors where CuPy and NCCL are usable (each
    process on the GPU of its local rank, which becomes the default device) and MPI for CPU
    tensors; ``"mpi"`` uses MPI for both (CUDA tensors through the host); ``"nccl"`` requires
    NCCL. ``timeout`` (seconds or a ``datetime.timedelta``; None: forever) bounds every
    collective: a rank that does not take part ends the others' calls in a
    :class:`DistributedTimeoutError`.

    >>> ad.distributed.init_process_group(timeout=60)
    >>> ad.distributed.is_initialized()
    True
    >>> ad.distributed.destroy_process_group()
    """
    _groups.init(backend, timeout, rank, world_size, os.environ)


def destroy_process_group() -> None:
    """Leave the process group and free its communicators (nothing without one).

    >>> ad.distributed.destroy_process_group()
    """
    _groups.destroy()


def is_initialized() -> bool:
    """Whether this process is in a process group.

    >>> ad.distributed.is_initialized()
    False
    """
    return _groups.current is not None


def get_rank() -> int:
    """This process's rank, 0 to ``get_world_size() - 1``.

    >>> ad.distributed.init_process_group(); ad.distributed.get_rank()
    0
    >>> ad.distributed.destroy_process_group()
    """
    return _groups.require("get_rank").rank


def get_world_size() -> int:
    """The number of processes in the group.

    >>> ad.distributed.init_process_group(); ad.distributed.get_world_size()
    1
    >>> ad.distributed.destroy_process_group()
    """
    return _groups.require("get_world_size").world_size


def get_local_rank() -> int:
    """This process's rank on its machine (its GPU, on the NCCL path).

    >>> ad.distributed.init_process_group(); ad.distributed.get_local_rank()
    0
    >>> ad.distributed.destroy_process_group()
    """
    return _groups.require("get_local_rank").launch.local_rank


def get_backend() -> str:
    """The group's communicators, joined by ``+``: ``"mpi"`` (CPU tensors, and CUDA ones where
    there is no NCCL), ``"nccl"`` (CUDA tensors) and ``"self"`` (a world of one, which needs
    no library): ``"mpi+nccl"``, ``"mpi"``, ``"nccl+self"``, ``"self"``.

    >>> ad.distributed.init_process_group(); ad.distributed.get_backend()
    'self'
    >>> ad.distributed.destroy_process_group()
    """
    return _groups.require("get_backend").backend
