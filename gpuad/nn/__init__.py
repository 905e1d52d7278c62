"""``ad.nn``: building blocks for training small networks, as ``torch.nn`` spells them."""
from . import functional, init
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, ReLU, Sequential, Sigmoid, Tanh
from .module import Module, Parameter

__all__ = ["functional", "init", "Module", "Parameter", "Linear", "Sequential", "ReLU",
           "Sigmoid", "Tanh", "GELU", "Dropout", "LayerNorm", "Embedding"]
