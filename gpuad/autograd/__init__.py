"""The autograd engine: graph nodes, grad mode, the backward traversal, gradient tapes and
custom gradients, forward mode and the function transforms built on both (device-agnostic:
no numpy or cupy here).

``ad.autograd.grad``, ``ad.autograd.backward`` and ``ad.autograd.Function`` are spelled as in
``torch.autograd``, and so is the anomaly mode (``detect_anomaly``, ``set_detect_anomaly``).
"""
from .anomaly import (
    detect_anomaly,
    is_anomaly_check_nan_enabled,
    is_anomaly_enabled,
    set_detect_anomaly,
)
from .custom_gradient import custom_gradient
from .engine import backward, grad
from .function import Function, FunctionCtx
from .functional import hessian, hvp, jacobian, jvp, vjp
from .tape import GradientTape, UnconnectedGradients

__all__ = ["backward", "grad", "Function", "FunctionCtx", "custom_gradient", "GradientTape",
           "UnconnectedGradients", "jvp", "vjp", "jacobian", "hessian", "hvp", "detect_anomaly",
           "set_detect_anomaly", "is_anomaly_enabled", "is_anomaly_check_nan_enabled"]
