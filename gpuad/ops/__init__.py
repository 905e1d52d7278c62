"""Every differentiable op, defined once with its rules (SPEC section 5)."""
from .elementwise import (
    abs, add, arctan, ceil, clip, cos, cosh, div, elu, equal, erf, exp, expm1, floor, gelu,
    greater, greater_equal, isfinite, isinf, isnan, leaky_relu, less, less_equal, log, log1p,
    logical_and, logical_not, logical_or, logical_xor, maximum, minimum, mul, neg, not_equal,
    pow, reciprocal, relu, round, rsqrt, sigmoid, sign, silu, sin, sinh, softplus, sqrt,
    square, sub, tan, tanh, where,
)
from .linalg import dot, einsum, matmul, outer, tensordot
from .methods import install as _install
from .reduction import (
    argmax, argmin, log_softmax, logsumexp, max, mean, min, norm, prod, softmax, std, sum, var,
)
from .shape import (
    astype, broadcast_to, clone, concatenate, expand_dims, flatten, flip, gather_nd, moveaxis,
    pad, reshape, split, squeeze, stack, sum_to, swapaxes, take_along_axis, transpose,
)

_install()

__all__ = [name for name in dir() if not name.startswith("_")]
