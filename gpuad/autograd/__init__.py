"""The autograd engine: graph nodes, grad mode, the backward traversal, gradient tapes and
custom gradients, forward mode and the function transforms built on both (device-agnostic:
no numpy or cupy here).

``ad.autograd.grad``, ``ad.autograd.backward`` and ``ad.autograd.Function`` are spelled as in
``torch.autograd``, and so is the anomaly mode (``detect_anomaly``, ``set_detect_anomaly``).

This package's ``__init__`` runs whenever one of its modules is imported, the ops' imports of
the core included, so it imports only the core itself (custom functions and gradients, and
``jvp``/``vjp``, included). The transforms built on the ops (gradient tapes, the Jacobians and
Hessians of :mod:`.functional`) are named here and imported on first use (``_TRANSFORMS``
says from which module): the import graph stays layered. (``import gpuad`` itself imports
them all.)
"""
from importlib import import_module as _import_module
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from .anomaly import (
    detect_anomaly,
    is_anomaly_check_nan_enabled,
    is_anomaly_enabled,
    set_detect_anomaly,
)
from .collector import install as _install_collector
from .custom_gradient import custom_gradient
from .engine import backward, grad
from .function import Function, FunctionCtx
from .linearize import jvp, vjp

if _TYPE_CHECKING:  # for the type checker, which cannot follow __getattr__ below
    from .functional import hessian as hessian
    from .functional import hvp as hvp
    from .functional import jacobian as jacobian
    from .tape import GradientTape as GradientTape
    from .tape import UnconnectedGradients as UnconnectedGradients

#: public name -> the module of this package that defines it, imported when first asked for
_install_collector()  # (long graphs: see .collector)

_TRANSFORMS = {
    "GradientTape": "tape", "UnconnectedGradients": "tape", "jacobian": "functional",
    "hessian": "functional", "hvp": "functional",
}

__all__ = ["backward", "grad", "Function", "FunctionCtx", "custom_gradient", "jvp", "vjp",
           *_TRANSFORMS, "detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled",
           "is_anomaly_check_nan_enabled"]


def __getattr__(name: str) -> _Any:
    if name not in _TRANSFORMS:
        raise AttributeError(f"module 'gpuad.autograd' has no attribute {name!r}")
    value = getattr(_import_module(f".{_TRANSFORMS[name]}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({n for n in globals() if not n.startswith("_")} | set(_TRANSFORMS))
