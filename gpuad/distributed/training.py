"""Around a data-parallel training loop: work and files on rank 0 only, and metrics combined
across ranks."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from ..tensor import Tensor
from . import group as groups
from .collectives import all_reduce, barrier

_R = TypeVar("_R")


def is_main_process() -> bool:
    """Whether this is rank 0 (True without a process group: a single process is its own main).

    >>> ad.distributed.is_main_process()
    True
    """
    return groups.current is None or groups.current.rank == 0


def rank0_only(fn: Callable[..., _R]) -> Callable[..., _R | None]:
    """``fn`` run on rank 0 only; elsewhere the call does nothing and returns None.

    >>> @ad.distributed.rank0_only
    ... def report(acc):
    ...     return f"accuracy {acc:.2f}"
    >>> report(0.5)
    'accuracy 0.50'
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> _R | None:
        return fn(*args, **kwargs) if is_main_process() else None

    return run


def save(obj: Mapping[str, Tensor], path: Any) -> None:
    """``ad.save(obj, path)`` on rank 0, then a barrier (with a group): when it returns, the
    file is complete for every rank to load.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> ad.distributed.save({"w": ad.ones(2)}, path)
    >>> ad.load(path)["w"]
    tensor([1., 1.])
    """
    from ..checkpoint import save as save_file

    if is_main_process():
        save_file(dict(obj), path)
    if groups.current is not None:
        barrier()


def reduce_metrics(metrics: Mapping[str, float], op: str = "mean") -> dict[str, float]:
    """``metrics`` (name -> number) combined across ranks by ``op`` ("sum", "mean", "max",
    "min"), as Python floats, in one all-reduce; unchanged without a group.

    >>> ad.distributed.reduce_metrics({"loss": 0.25, "correct": 3}, op="sum")
    {'loss': 0.25, 'correct': 3.0}
    """
    names = list(metrics)
    values = np.array([float(metrics[k]) for k in names], np.float64)
    if groups.current is not None:
        from ..creation import tensor

        t = tensor(values, device=_cpu_or_group_device())
        all_reduce(t, op=op)
        values = t.numpy()
    return dict(zip(names, values.tolist()))


def _cpu_or_group_device() -> Any:
    """Where a metric travels: the CPU where the group carries CPU tensors, else its GPU."""
    group = groups.current
    assert group is not None
    return "cpu" if "cpu" in group.comms else group.device
