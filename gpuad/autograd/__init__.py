"""The autograd engine: graph nodes, grad mode, the backward traversal, gradient tapes and
custom gradients (device-agnostic: no numpy or cupy here).

``ad.autograd.grad``, ``ad.autograd.backward`` and ``ad.autograd.Function`` are spelled as in
``torch.autograd``.
"""
from .engine import backward, grad
from .function import Function, FunctionCtx, custom_gradient
from .tape import GradientTape, UnconnectedGradients

__all__ = ["backward", "grad", "Function", "FunctionCtx", "custom_gradient", "GradientTape",
           "UnconnectedGradients"]
