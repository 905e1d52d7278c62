"""``ad.nn``: building blocks for training small networks, as ``torch.nn`` spells them."""
from . import functional, init
from .modules import (
    GELU,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)

__all__ = ["functional", "init", "Module", "Parameter", "Linear", "Sequential", "ReLU",
           "Sigmoid", "Tanh", "GELU", "Dropout", "LayerNorm", "Embedding"]
