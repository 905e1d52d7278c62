"""``ad.nn``: building blocks for training small networks (``ad.nn.functional``: losses)."""
from . import functional

__all__ = ["functional"]
