"""Learning-rate schedules: ``StepLR`` and ``CosineAnnealingLR``, stepped once per epoch."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

from ..backends import tracing
from .optimizers import Optimizer

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["StepLR", "CosineAnnealingLR"]


def _number(schedule: str, name: str, value: float, low: float, strict: bool = False,
            integer: bool = False) -> None:
    """Refuse a setting that is not a finite number >= ``low`` (> ``low`` when ``strict``;
    an int when ``integer``), naming it."""
    kind = numbers.Integral if integer else numbers.Real
    ok = (isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
          and (value > low if strict else value >= low))
    if not ok:
        rule = f"{'an int' if integer else 'a finite number'} {'>' if strict else '>='} {low}"
        raise ValueError(f"gpuad.optim.lr_scheduler.{schedule}: invalid {name}={value!r}; "
                         f"it must be {rule}")


class _Schedule:
    """A learning-rate schedule: each ``step()`` sets every group's lr to ``get_lr()``'s."""

    get_lr: Callable[[], list[float]]  # (each schedule's rule)

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _number(type(self).__name__, "last_epoch", last_epoch, -1, integer=True)
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def step(self) -> None:
        """The next epoch: the optimizer's learning rates set to the schedule's (in a compiled
        function, a step that each replay takes again)."""
        tracing.host(self._step)

    def _step(self) -> None:
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """Each group's learning rate now."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The epoch and base rates (what :meth:`load_state_dict` restores)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the epoch and base rates of a :meth:`state_dict`."""
        self.last_epoch, self.base_lrs = state["last_epoch"], list(state["base_lrs"])


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (epoch // step_size).

    >>> opt = ad.optim.SGD([ad.zeros(2, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(sched.get_last_lr()[0])
    ...     opt.step()  # (an epoch of training)
    ...     sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        _number("StepLR", "step_size", step_size, 0, strict=True, integer=True)
        _number("StepLR", "gamma", gamma, 0)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Chained, as PyTorch: each step_size-th epoch multiplies the current rate by gamma
        (so a rate changed by hand keeps its change)."""
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return [group["lr"] for group in self.optimizer.param_groups]
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2.

    >>> opt = ad.optim.SGD([ad.zeros(2, requires_grad=True)], lr=1.0)
    >>> sched = ad.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 4))
    ...     opt.step()  # (an epoch of training)
    ...     sched.step()
    >>> lrs
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: float, eta_min: float = 0.0,  # noqa: N803
                 last_epoch: int = -1) -> None:  # (T_max: PyTorch's name)
        _number("CosineAnnealingLR", "T_max", T_max, 0, strict=True)
        _number("CosineAnnealingLR", "eta_min", eta_min, 0)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        """Each group's rate at ``last_epoch``, from its base rate (not chained)."""
        return [self.eta_min + (base - self.eta_min)
                * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]
