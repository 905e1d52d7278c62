"""``ad.nn``: building blocks for training small networks, as ``torch.nn`` spells them."""
from . import functional, init
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, Sequential, Sigmoid, Tanh
from .module import Module, Parameter

__all__ = ["functional", "init", "parallel", "Module", "Parameter", "Linear", "Sequential", "ReLU",
           "Sigmoid", "Tanh", "GELU", "Dropout", "LayerNorm", "Embedding"]


def __getattr__(name: str) -> object:
    """``parallel`` (``DistributedDataParallel``), imported on first use: nothing distributed
    loads unless it is used."""
    if name == "parallel":
        from importlib import import_module

        return import_module(".parallel", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
