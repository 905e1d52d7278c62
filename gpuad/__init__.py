"""gpuad: array automatic differentiation on NVIDIA GPUs (CuPy) with a NumPy CPU fallback.

>>> import gpuad as ad
>>> x = ad.tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4.])
"""
from . import cuda, nn, optim
from .autograd.custom_gradient import custom_gradient
from .autograd.engine import backward, grad
from .autograd.function import Function, FunctionCtx
from .autograd.functional import hessian, hvp, jacobian, jvp, vjp
from .autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .autograd.tape import GradientTape, UnconnectedGradients
from .backends.cpu_parallel import get_num_threads, set_num_threads
from .capture import compile
from .checkpoint import load, save
from .creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    fill,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    manual_seed,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .devices import Device, device, get_default_device, set_cpu_fallback, set_default_device
from .dtypes import bool_, double, float16, float32, float64, half, int32, int64, long
from .errors import (
    CustomGradientError,
    DeviceMismatchError,
    DeviceUnavailableError,
    ForwardModeError,
    GradcheckError,
    GradientTapeWarning,
    OutOfMemoryError,
)
from .gradcheck import gradcheck
from .ops import *  # noqa: F403  (every op of SPEC section 5)
from .ops.registry import EXPORTS as _OPS
from .ops.tf_names import (
    cast,
    clip_by_value,
    concat,
    cond,
    divide,
    multiply,
    reduce_logsumexp,
    reduce_max,
    reduce_mean,
    reduce_min,
    reduce_prod,
    reduce_sum,
    subtract,
    while_loop,
)
from .tensor import Tensor
from .variables import Variable, constant

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``distributed``, imported on first use: nothing distributed loads unless it is used."""
    if name == "distributed":
        from importlib import import_module

        return import_module(".distributed", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Tensor", "tensor", "as_tensor", "zeros", "ones", "full", "empty", "arange", "linspace",
    "eye", "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn", "fill",
    "from_numpy", "from_dlpack", "manual_seed", "float16", "float32", "float64", "int32",
    "int64", "bool_", "half", "double", "long", "Device", "device", "get_default_device",
    "set_default_device", "set_cpu_fallback", "cuda", "nn", "optim", "save", "load",
    "DeviceUnavailableError",
    "DeviceMismatchError", "GradcheckError", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "grad", "backward", "gradcheck", "GradientTape", "UnconnectedGradients",
    "GradientTapeWarning", "CustomGradientError", "Variable", "constant", "custom_gradient",
    "Function", "FunctionCtx", "jvp", "vjp", "jacobian", "hessian", "hvp", "ForwardModeError",
    "OutOfMemoryError", "get_num_threads", "set_num_threads", "compile",
    "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "multiply", "subtract", "divide",
    "clip_by_value", "cast", "cond", "while_loop", "reduce_prod", "reduce_logsumexp", "concat",
    *_OPS,
]
