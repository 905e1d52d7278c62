"""Which functions of ``kernels/elementwise.cuh`` implement each elementwise op.

One row per unary op of ``gpuad/ops/elementwise.py`` whose derivative rule reads a value
(the input "x" or the output "y"): the kernel's base name (``<base>_bwd``, and ``<base>_fwd``
where the CUDA backend runs the op's forward in its own kernel: ``forward``), the NumPy backend
method that is the op's forward (the reference the kernels are held equal to), what the
derivative reads after the output gradient, and the op's parameters. The header holds exactly
the functions this table names, nothing a backend does not launch.

The CUDA backend builds its kernels, and its forward methods that run one, from this table;
tests/test_kernels_host.py compiles the header for the host and checks every row against the
NumPy backend and the op's rules, and fails when a fusable op has no row or a kernel in the
header has no check.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Unary:
    op: str
    kernel: str
    method: str
    reads: str = "x"
    params: tuple = ()
    forward: bool = False


UNARY = (
    Unary("abs", "abs", "abs"),
    Unary("exp", "exp", "exp", "y"),
    Unary("expm1", "expm1", "expm1", "y"),
    Unary("log", "log", "log"),
    Unary("log1p", "log1p", "log1p"),
    Unary("sqrt", "sqrt", "sqrt", "y"),
    Unary("rsqrt", "rsqrt", "rsqrt", "y", forward=True),
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
    Unary("sigmoid", "sigmoid", "sigmoid", "y", forward=True),
    Unary("relu", "relu", "relu", "y"),
    Unary("silu", "silu", "silu", forward=True),
    Unary("leaky_relu", "leaky_relu", "leaky_relu", "x", ("negative_slope",), forward=True),
    Unary("elu", "elu", "elu", "x", ("alpha",), forward=True),
    Unary("gelu", "gelu_erf", "gelu", "x", ("approximate=none",), forward=True),
    Unary("gelu", "gelu_tanh", "gelu", "x", ("approximate=tanh",), forward=True),
    Unary("softplus", "softplus", "softplus", "x", ("beta", "threshold"), forward=True),
)


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


def n_params(row):
    """How many numeric parameters the row's kernels take (gelu's form is in its name)."""
    return sum(1 for p in row.params if "=" not in p)


def launched(row):
    """``(function, n_inputs)`` of the header functions the CUDA backend launches for ``row``:
    its forward where ``forward`` is set, and its derivative."""
    return ([(f"{row.kernel}_fwd", 1)] if row.forward else []) + [(f"{row.kernel}_bwd", 2)]


def backend_elementwise():
    """``(function, dtype, n_inputs, n_params)`` of every ElementwiseKernel the CUDA backend
    builds (``CupyBackend.warmup`` builds these, tests/test_kernels_nvrtc.py compiles them)."""
    for row in UNARY:
        for function, n_inputs in launched(row):
            for dtype in TYPES:
                yield function, dtype, n_inputs, n_params(row)


def kernel_functions():
    """Every function name the table uses from the header: exactly what the backend launches."""
    return [function for row in UNARY for function, _ in launched(row)]


#: the templated kernels of kernels/rowwise.cu and kernels/optim.cu (instantiated per dtype)
ROWWISE = ("softmax_warp", "softmax_block", "softmax_backward_warp", "softmax_backward_block",
           "cross_entropy_warp", "cross_entropy_block")
OPTIM = ("sgd_update", "adam_update")
#: the source file of each kernel module, and its kernels
MODULES = {"rowwise.cu": ROWWISE, "optim.cu": OPTIM}
