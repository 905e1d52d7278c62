"""The numbers an optimizer is set with: read (a one-number tensor, as PyTorch accepts for
``lr``, becomes a float) and checked (a finite number, in range), with errors naming the
optimizer and the setting; and a loaded state, copied to its parameter's device."""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..tensor import Tensor


def numbers_of(opt: str, group: dict[str, Any]) -> dict[str, Any]:
    """``group`` with settings given as one-number tensors or 0-d arrays (PyTorch accepts a
    tensor lr) turned into floats; other values stay, for :func:`setting` to judge."""
    for key in ("lr", "momentum", "dampening", "weight_decay", "eps"):
        if key in group:
            group[key] = _number(opt, key, group[key])
    betas = group.get("betas")
    if isinstance(betas, (tuple, list)):
        group["betas"] = tuple(_number(opt, f"betas[{i}]", b) for i, b in enumerate(betas))
    return group


def betas_pair(betas: Any) -> Any:
    """Adam's ``betas`` as a tuple when it is iterable (a list, a generator); anything else as
    it is, for :func:`setting` to judge."""
    return tuple(betas) if hasattr(betas, "__iter__") else betas


def _number(opt: str, name: str, value: Any) -> Any:
    """A 0-d tensor, array or NumPy scalar as a Python float (so a float32 one does not make
    the update's arithmetic float32); anything else as it is."""
    if value.__class__ in (int, float, bool) or not (hasattr(value, "ndim") and
                                                     hasattr(value, "item")):
        return value
    if value.ndim != 0:
        raise ValueError(f"gpuad.optim.{opt}: {name} is a number (a 0-d tensor also works), "
                         f"got a tensor of shape {tuple(value.shape)}")
    value = value.item()
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else value


def setting(opt: str, name: str, value: Any, upper: float | None = None) -> None:
    """Refuse a setting that is not a finite number >= 0 (and below ``upper`` when given)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (upper is not None and value >= upper):
        rule = f"in [0, {upper})" if upper is not None else "a finite number >= 0"
        raise ValueError(f"gpuad.optim.{opt}: invalid {name}={value!r}; it must be {rule}")


def state_copy(p: Tensor, state: dict[str, Any]) -> dict[str, Any]:
    """A copy of parameter ``p``'s loaded ``state`` whose arrays (NumPy ones from ``ad.load`` or
    a CPU optimizer's ``state_dict`` included) are new arrays on ``p``'s device."""
    backend = p._dev.backend
    return {k: backend.copy(backend.asarray(v)) if _is_array(v) else v
            for k, v in state.items()}


def _is_array(v: object) -> bool:
    """Whether a state value is an array (a step count stays a number, NumPy's included)."""
    return hasattr(v, "shape") and not isinstance(v, numbers.Number)
