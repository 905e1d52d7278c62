"""Which functions of ``kernels/elementwise.cuh`` implement each elementwise op.

One row per op of ``gpuad/ops/elementwise.py``: the kernel's base name (``<base>_fwd`` and
``<base>_bwd``, or ``_bwd_a``/``_bwd_b`` for two inputs), the NumPy backend method that is the
op's forward (the reference the kernel is held equal to), what the derivative reads after the
output gradient (the input "x", the output "y", or nothing), and the op's parameters.

The CUDA backend builds its kernels from this table; tests/test_kernels_host.py compiles the
header for the host and checks every row against the NumPy backend and the op's rules, and
fails when an elementwise op has no row or a kernel in the header has no check.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Unary:
    op: str
    kernel: str
    method: str
    reads: str | None = "x"
    params: tuple = ()


UNARY = (
    Unary("neg", "neg", "negative", None),
    Unary("abs", "abs", "abs"),
    Unary("exp", "exp", "exp", "y"),
    Unary("expm1", "expm1", "expm1", "y"),
    Unary("log", "log", "log"),
    Unary("log1p", "log1p", "log1p"),
    Unary("sqrt", "sqrt", "sqrt", "y"),
    Unary("rsqrt", "rsqrt", "rsqrt", "y"),
    Unary("square", "square", "square"),
    Unary("reciprocal", "reciprocal", "reciprocal", "y"),
    Unary("sin", "sin", "sin"),
    Unary("cos", "cos", "cos"),
    Unary("tan", "tan", "tan", "y"),
    Unary("tanh", "tanh", "tanh", "y"),
    Unary("sinh", "sinh", "sinh"),
    Unary("cosh", "cosh", "cosh"),
    Unary("arctan", "arctan", "arctan"),
    Unary("erf", "erf", "erf"),
    Unary("sigmoid", "sigmoid", "sigmoid", "y"),
    Unary("step", "step", "step", None),
    Unary("relu", "relu", "relu", "y"),
    Unary("silu", "silu", "silu"),
    Unary("leaky_relu", "leaky_relu", "leaky_relu", "x", ("negative_slope",)),
    Unary("elu", "elu", "elu", "x", ("alpha",)),
    Unary("gelu", "gelu_erf", "gelu", "x", ("approximate=none",)),
    Unary("gelu", "gelu_tanh", "gelu", "x", ("approximate=tanh",)),
    Unary("softplus", "softplus", "softplus", "x", ("beta", "threshold")),
    Unary("sign", "sign", "sign", None),
    Unary("floor", "floor", "floor", None),
    Unary("ceil", "ceil", "ceil", None),
    Unary("round", "round", "rint", None),
)

#: two inputs: op name -> NumPy backend method
BINARY = {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "div": "true_divide",
    "pow": "power",
    "maximum": "maximum",
    "minimum": "minimum",
}

#: selection ops, whose kernels take a condition or bounds: op name -> kernel functions
SELECTION = {
    "where": ("where_fwd", "where_bwd_x", "where_bwd_y"),
    "clip": ("clip_fwd", "clip_bwd_x", "clip_bwd_lo", "clip_bwd_hi"),
}


#: data dtype -> (CuPy's parameter type, the type the math runs in: float16 in float)
TYPES = {
    np.dtype(np.float16): ("float16", "float"),
    np.dtype(np.float32): ("float32", "float"),
    np.dtype(np.float64): ("float64", "double"),
}


def elementwise_spec(function, dtype, n_inputs, n_params=0):
    """``(in_params, out_params, operation, name)`` of the CuPy ElementwiseKernel that applies
    ``gpuad::<function>`` to ``n_inputs`` arrays of ``dtype`` and ``n_params`` scalars."""
    dtype = np.dtype(dtype)
    ctype, acc = TYPES[dtype]
    ins = [f"{ctype} a{i}" for i in range(n_inputs)] + [f"float64 p{j}" for j in range(n_params)]
    args = [f"({acc})a{i}" for i in range(n_inputs)] + [f"({acc})p{j}" for j in range(n_params)]
    return (", ".join(ins), f"{ctype} out",
            f"out = gpuad::{function}<{acc}>({', '.join(args)});",
            f"gpuad_{function}_{dtype.name}")


def backend_elementwise():
    """``(function, dtype, n_inputs, n_params)`` of every ElementwiseKernel the CUDA backend
    builds: each row's forward, and its derivative where the rule reads x or y, per dtype
    (``CupyBackend.warmup`` builds these, tests/test_kernels_nvrtc.py compiles them)."""
    for row in UNARY:
        n_params = sum(1 for p in row.params if "=" not in p)
        for dtype in TYPES:
            yield f"{row.kernel}_fwd", dtype, 1, n_params
            if row.reads:
                yield f"{row.kernel}_bwd", dtype, 2, n_params


#: the templated kernels of kernels/rowwise.cu and kernels/optim.cu (instantiated per dtype)
ROWWISE = ("softmax_warp", "softmax_block", "softmax_backward_warp", "softmax_backward_block",
           "cross_entropy_warp", "cross_entropy_block", "bias_act_forward", "bias_act_backward")
OPTIM = ("sgd_update", "adam_update")
#: the source file of each kernel module, and its kernels
MODULES = {"rowwise.cu": ROWWISE, "optim.cu": OPTIM}


def kernel_functions():
    """Every function name the table uses from the header."""
    names = []
    for row in UNARY:
        names += [f"{row.kernel}_fwd", f"{row.kernel}_bwd"]
    for op in BINARY:
        names += [f"{op}_fwd", f"{op}_bwd_a", f"{op}_bwd_b"]
    for fns in SELECTION.values():
        names += list(fns)
    return names
