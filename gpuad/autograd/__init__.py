"""The autograd engine: graph nodes, grad mode and the backward traversal (device-agnostic).

``ad.autograd.grad`` and ``ad.autograd.backward`` are spelled as in ``torch.autograd``.
"""
from .engine import backward, grad

__all__ = ["backward", "grad"]
