"""The table of op cases that tests/test_ops.py checks: one row per op (and per notable form).

Each case names the gpuad function, an independent NumPy float64 reference, the input shapes,
the input domain (so finite differences stay away from poles and kinks), and, where PyTorch has
the op, the torch spelling. ``second=False`` marks ops whose second derivative is not checked
(piecewise-linear ones, where it is zero almost everywhere and finite differences add nothing).
"""
import math
from dataclasses import dataclass, field

import numpy as np

import gpuad as ad
from gpuad.backends.kernel_table import UNARY as UNARY_ROWS
from gpuad.ops.registry import EXPORTS

try:
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    _erf = np.vectorize(math.erf)


def _uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def _away_from_zero(rng, shape):
    return rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def _fractional(rng, shape):
    return rng.integers(-3, 3, shape) + rng.uniform(0.2, 0.8, shape)


def _distinct(rng, shape):
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.37 - n * 0.15).reshape(shape) + rng.uniform(-0.05, 0.05, shape)


def _special(rng, shape):
    return rng.choice([0.5, -1.5, 0.0, np.inf, -np.inf, np.nan], shape)


def _some_zeros(rng, shape):
    return rng.choice([0.0, 1.5, -2.0], shape)


REAL = _uniform(-2.0, 2.0)
POS = _uniform(0.5, 2.0)
UNIT = _uniform(-0.9, 0.9)
AWAY = _away_from_zero
FRAC = _fractional
DISTINCT = _distinct
SPECIAL = _special
ZEROS = _some_zeros


@dataclass
class Case:
    name: str
    fn: object
    ref: object
    shapes: tuple
    domains: tuple = (REAL,)
    torch: object = None
    grad: bool = True
    second: bool = True
    noncontig: bool = True
    #: the result's dtype, where it is not the inputs' (comparisons: bool)
    dtype: object = None
    extra: dict = field(default_factory=dict)

    def inputs(self, rng):
        doms = self.domains if len(self.domains) == len(self.shapes) else self.domains * len(
            self.shapes)
        return [d(rng, s) for d, s in zip(doms, self.shapes)]


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x, beta=1.0, threshold=20.0):
    return np.where(x * beta > threshold, x, np.log1p(np.exp(beta * x)) / beta)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


S = (3, 4)
#: the reference (NumPy, float64), input domain and PyTorch spelling of each public unary op
#: of gpuad/ops/elementwise.py, by name; UNARY_CASES below follows the ops' rows
UNARY_REFERENCE = {
    "neg": (np.negative, REAL, "neg"),
    "abs": (np.abs, AWAY, "abs"),
    "exp": (np.exp, REAL, "exp"),
    "expm1": (np.expm1, REAL, "expm1"),
    "log": (np.log, POS, "log"),
    "log1p": (np.log1p, POS, "log1p"),
    "sqrt": (np.sqrt, POS, "sqrt"),
    "rsqrt": (lambda x: 1 / np.sqrt(x), POS, "rsqrt"),
    "square": (np.square, REAL, "square"),
    "reciprocal": (np.reciprocal, POS, "reciprocal"),
    "sin": (np.sin, REAL, "sin"),
    "cos": (np.cos, REAL, "cos"),
    "tan": (np.tan, UNIT, "tan"),
    "tanh": (np.tanh, REAL, "tanh"),
    "sinh": (np.sinh, REAL, "sinh"),
    "cosh": (np.cosh, REAL, "cosh"),
    "arctan": (np.arctan, REAL, "arctan"),
    "sigmoid": (_sigmoid, REAL, "sigmoid"),
    "relu": (lambda x: np.maximum(x, 0), AWAY, "relu"),
    "erf": (_erf, REAL, "erf"),
    "softsign": (lambda x: x / (1 + np.abs(x)), REAL, "nn.functional.softsign"),
    "silu": (lambda x: x * _sigmoid(x), REAL, "nn.functional.silu"),
    "gelu": (lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), REAL, "nn.functional.gelu"),
    "softplus": (_softplus, REAL, "nn.functional.softplus"),
    "sign": (np.sign, AWAY, "sign"),
    "floor": (np.floor, FRAC, "floor"),
    "ceil": (np.ceil, FRAC, "ceil"),
    "round": (np.round, FRAC, "round"),
}

_PIECEWISE = {"abs", "relu", "sign", "floor", "ceil", "round", "neg"}


def _torch_attr(path):
    def get(torch):
        obj = torch
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj
    return get


def _unary_cases():
    """A case per public unary op, in the order of the ops' rows (kernel_table.UNARY), called
    through its public function with its default arguments (gelu and softplus are functions over
    several rows); an op without a reference gets none, and test_every_public_op_has_a_case
    names it."""
    names = dict.fromkeys(row.name for row in UNARY_ROWS if row.name in EXPORTS)
    for name in names:
        if name in UNARY_REFERENCE:
            ref, dom, tname = UNARY_REFERENCE[name]
            yield Case(name, EXPORTS[name], ref, (S,), (dom,), torch=_torch_attr(tname),
                       second=name not in _PIECEWISE)


CASES = list(_unary_cases())

CASES += [
    Case("leaky_relu", lambda x: ad.leaky_relu(x, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
         (S,), (AWAY,), torch=lambda t: lambda x: t.nn.functional.leaky_relu(x, 0.1),
         second=False),
    Case("elu", lambda x: ad.elu(x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x)),
         (S,), (AWAY,), torch=lambda t: lambda x: t.nn.functional.elu(x, alpha=0.7)),
    Case("gelu_tanh", lambda x: ad.gelu(x, approximate="tanh"), _gelu_tanh, (S,),
         torch=lambda t: lambda x: t.nn.functional.gelu(x, approximate="tanh")),
    Case("softplus_beta", lambda x: ad.softplus(x, beta=2.0), lambda x: _softplus(x, 2.0),
         (S,), torch=lambda t: lambda x: t.nn.functional.softplus(x, beta=2.0)),
    # two inputs, with broadcasting and Python scalars
    Case("add", ad.add, np.add, (S, S), torch=_torch_attr("add"), second=False),
    Case("add_bcast", ad.add, np.add, ((3, 1), (4,)), torch=_torch_attr("add"), second=False),
    Case("sub", ad.sub, np.subtract, (S, (4,)), torch=_torch_attr("sub"), second=False),
    Case("mul", ad.mul, np.multiply, (S, S), torch=_torch_attr("mul")),
    Case("mul_bcast", ad.mul, np.multiply, ((2, 3, 1), (3, 4)), torch=_torch_attr("mul")),
    Case("div", ad.div, np.divide, (S, S), (REAL, POS), torch=_torch_attr("div")),
    Case("pow", ad.pow, np.power, (S, S), (POS, REAL), torch=_torch_attr("pow")),
    Case("pow_scalar", lambda x: x ** 3, lambda x: x ** 3, (S,),
         torch=lambda t: lambda x: x ** 3),
    Case("rpow_scalar", lambda x: 2.0 ** x, lambda x: 2.0 ** x, (S,),
         torch=lambda t: lambda x: 2.0 ** x),
    Case("scalar_ops", lambda x: (2.5 - x) * 0.5 / 1.5 + 1, lambda x: (2.5 - x) * 0.5 / 1.5 + 1,
         (S,), torch=lambda t: lambda x: (2.5 - x) * 0.5 / 1.5 + 1, second=False),
    Case("rdiv_scalar", lambda x: 1.5 / x, lambda x: 1.5 / x, (S,), (POS,),
         torch=lambda t: lambda x: 1.5 / x),
    Case("maximum", ad.maximum, np.maximum, (S, S), (DISTINCT, REAL),
         torch=_torch_attr("maximum"), second=False),
    Case("minimum", ad.minimum, np.minimum, (S, (4,)), (DISTINCT, REAL),
         torch=_torch_attr("minimum"), second=False),
    Case("where", lambda a, b: ad.where(a > 0, a * 2, b), lambda a, b: np.where(a > 0, a * 2, b),
         (S, S), (AWAY, REAL), torch=lambda t: lambda a, b: t.where(a > 0, a * 2, b),
         second=False),
    Case("clip", lambda x: ad.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), (S,),
         (AWAY,), torch=lambda t: lambda x: t.clamp(x, -0.5, 0.5), second=False),
    Case("clip_tensor_bounds", lambda x, lo: ad.clip(x, lo, None), lambda x, lo: np.maximum(x, lo),
         (S, (4,)), (DISTINCT, REAL), torch=lambda t: lambda x, lo: t.clamp(x, min=lo),
         second=False),
    # comparisons, logic and classification (no gradient)
    *[Case(name, getattr(ad, name), getattr(np, name), (S, (4,)), (DISTINCT, REAL), grad=False,
           dtype=ad.bool_)
      for name in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")],
    *[Case(name, getattr(ad, name), getattr(np, name), (S, S), (ZEROS,), grad=False,
           dtype=ad.bool_)
      for name in ("logical_and", "logical_or", "logical_xor")],
    Case("logical_not", ad.logical_not, np.logical_not, (S,), (ZEROS,), grad=False,
         dtype=ad.bool_),
    *[Case(name, getattr(ad, name), getattr(np, name), (S,), (SPECIAL,), grad=False,
           dtype=ad.bool_) for name in ("isnan", "isinf", "isfinite")],
    Case("any", lambda x: ad.any(x, axis=1), lambda x: np.any(x, axis=1), (S,), (ZEROS,),
         grad=False, dtype=ad.bool_),
    Case("all", lambda x: x.all(axis=0, keepdims=True), lambda x: np.all(x, axis=0,
                                                                         keepdims=True),
         (S,), (ZEROS,), grad=False, dtype=ad.bool_),
    Case("argmax", lambda x: ad.argmax(x, axis=1), lambda x: np.argmax(x, axis=1), (S,),
         (DISTINCT,), grad=False, dtype=ad.int64),
    Case("argmin", lambda x: x.argmin(), lambda x: np.argmin(x), (S,), (DISTINCT,), grad=False,
         dtype=ad.int64),
    # reductions
    Case("sum", lambda x: ad.sum(x), np.sum, (S,), torch=_torch_attr("sum"), second=False),
    Case("sum_axis", lambda x: x.sum(axis=1), lambda x: x.sum(axis=1), ((2, 3, 4),),
         torch=lambda t: lambda x: x.sum(dim=1), second=False),
    Case("sum_axes_keepdims", lambda x: x.sum(axis=(0, 2), keepdims=True),
         lambda x: x.sum(axis=(0, 2), keepdims=True), ((2, 3, 4),),
         torch=lambda t: lambda x: x.sum(dim=(0, 2), keepdim=True), second=False),
    Case("mean", lambda x: x.mean(axis=0), lambda x: x.mean(axis=0), (S,),
         torch=lambda t: lambda x: x.mean(dim=0), second=False),
    Case("var", lambda x: x.var(axis=1), lambda x: x.var(axis=1), (S,),
         torch=lambda t: lambda x: x.var(dim=1, unbiased=False)),
    Case("var_ddof", lambda x: ad.var(x, ddof=1), lambda x: x.var(ddof=1), (S,),
         torch=lambda t: lambda x: x.var()),
    Case("std", lambda x: x.std(axis=0, keepdims=True), lambda x: x.std(axis=0, keepdims=True),
         (S,), torch=lambda t: lambda x: x.std(dim=0, keepdim=True, unbiased=False)),
    Case("max", lambda x: x.max(axis=1), lambda x: x.max(axis=1), (S,), (DISTINCT,),
         torch=lambda t: lambda x: x.amax(dim=1), second=False),
    Case("max_all", lambda x: ad.max(x), np.max, (S,), (DISTINCT,),
         torch=lambda t: lambda x: x.amax(), second=False),
    Case("min", lambda x: x.min(axis=0, keepdims=True), lambda x: x.min(axis=0, keepdims=True),
         (S,), (DISTINCT,), torch=lambda t: lambda x: x.amin(dim=0, keepdim=True),
         second=False),
    Case("prod", lambda x: x.prod(axis=1), lambda x: x.prod(axis=1), (S,),
         torch=lambda t: lambda x: x.prod(dim=1)),
    Case("prod_all", lambda x: ad.prod(x), np.prod, ((2, 3),), torch=_torch_attr("prod")),
    Case("prod_axes", lambda x: ad.prod(x, axis=(0, 2)), lambda x: np.prod(x, axis=(0, 2)),
         ((2, 3, 2),)),
    Case("logsumexp", lambda x: ad.logsumexp(x, axis=1), lambda x: _lse(x, axis=1), (S,),
         torch=lambda t: lambda x: t.logsumexp(x, dim=1)),
    Case("logsumexp_all", lambda x: ad.logsumexp(x), _lse, (S,),
         torch=lambda t: lambda x: t.logsumexp(x, dim=(0, 1))),
    Case("norm", lambda x: ad.norm(x), lambda x: np.linalg.norm(x.reshape(-1)), (S,),
         torch=lambda t: lambda x: t.linalg.vector_norm(x)),
    Case("norm_axis", lambda x: ad.norm(x, axis=1), lambda x: np.linalg.norm(x, axis=1), (S,),
         torch=lambda t: lambda x: t.linalg.vector_norm(x, dim=1)),
    Case("norm_l1", lambda x: ad.norm(x, ord=1), lambda x: np.abs(x).sum(), (S,), (AWAY,),
         torch=lambda t: lambda x: t.linalg.vector_norm(x, ord=1), second=False),
    Case("norm_l3", lambda x: ad.norm(x, ord=3, axis=0),
         lambda x: (np.abs(x) ** 3).sum(axis=0) ** (1 / 3), (S,), (AWAY,),
         torch=lambda t: lambda x: t.linalg.vector_norm(x, ord=3, dim=0)),
    Case("norm_inf", lambda x: ad.norm(x, ord=math.inf), lambda x: np.abs(x).max(), (S,),
         (DISTINCT,), torch=lambda t: lambda x: t.linalg.vector_norm(x, ord=math.inf),
         second=False),
    Case("softmax", lambda x: ad.softmax(x, axis=1), lambda x: _softmax(x, 1), (S,),
         torch=lambda t: lambda x: t.softmax(x, dim=1)),
    Case("softmax_axis0", lambda x: ad.softmax(x, axis=0), lambda x: _softmax(x, 0), (S,),
         torch=lambda t: lambda x: t.softmax(x, dim=0)),
    Case("log_softmax", lambda x: ad.log_softmax(x), lambda x: np.log(_softmax(x)), (S,),
         torch=lambda t: lambda x: t.log_softmax(x, dim=-1)),
    # linear algebra
    Case("matmul", ad.matmul, np.matmul, ((3, 4), (4, 2)), torch=_torch_attr("matmul")),
    Case("matmul_batched", ad.matmul, np.matmul, ((2, 3, 4), (4, 2)),
         torch=_torch_attr("matmul")),
    Case("matmul_bcast_batch", ad.matmul, np.matmul, ((2, 1, 3, 4), (3, 4, 2)),
         torch=_torch_attr("matmul")),
    Case("matmul_vec_mat", ad.matmul, np.matmul, ((4,), (2, 4, 3)), torch=_torch_attr("matmul")),
    Case("matmul_mat_vec", ad.matmul, np.matmul, ((2, 3, 4), (4,)), torch=_torch_attr("matmul")),
    Case("matmul_vec_vec", lambda a, b: a @ b, np.matmul, ((4,), (4,)),
         torch=_torch_attr("matmul")),
    Case("dot", ad.dot, np.dot, ((3, 4), (4, 2)), torch=lambda t: lambda a, b: a @ b),
    Case("dot_nd", ad.dot, np.dot, ((2, 3), (2, 3, 2))),
    Case("outer", ad.outer, np.outer, ((3,), (4,)), torch=_torch_attr("outer")),
    Case("tensordot", lambda a, b: ad.tensordot(a, b, axes=1), lambda a, b: np.tensordot(a, b, 1),
         ((2, 3), (3, 4)), torch=lambda t: lambda a, b: t.tensordot(a, b, dims=1)),
    Case("tensordot_axes", lambda a, b: ad.tensordot(a, b, axes=([1, 0], [0, 2])),
         lambda a, b: np.tensordot(a, b, axes=([1, 0], [0, 2])), ((3, 2, 4), (2, 5, 3)),
         torch=lambda t: lambda a, b: t.tensordot(a, b, dims=([1, 0], [0, 2]))),
    Case("einsum_matmul", lambda a, b: ad.einsum("ij,jk->ik", a, b),
         lambda a, b: np.einsum("ij,jk->ik", a, b), ((3, 4), (4, 2)),
         torch=lambda t: lambda a, b: t.einsum("ij,jk->ik", a, b)),
    Case("einsum_batched_ellipsis", lambda a, b: ad.einsum("...ij,...jk", a, b),
         lambda a, b: np.einsum("...ij,...jk", a, b), ((2, 3, 4), (2, 4, 2)),
         torch=lambda t: lambda a, b: t.einsum("...ij,...jk", a, b)),
    Case("einsum_sum_out", lambda a: ad.einsum("ij->j", a), lambda a: np.einsum("ij->j", a),
         (S,), torch=lambda t: lambda a: t.einsum("ij->j", a), second=False),
    Case("einsum_inner", lambda a, b: ad.einsum("i,i", a, b), lambda a, b: np.einsum("i,i", a, b),
         ((4,), (4,)), torch=lambda t: lambda a, b: t.einsum("i,i", a, b)),
    Case("einsum_three", lambda a, b, c: ad.einsum("ij,jk,k->i", a, b, c),
         lambda a, b, c: np.einsum("ij,jk,k->i", a, b, c), ((2, 3), (3, 4), (4,)),
         torch=lambda t: lambda a, b, c: t.einsum("ij,jk,k->i", a, b, c)),
    Case("einsum_diagonal", lambda a: ad.einsum("ii->i", a) ** 2,
         lambda a: np.einsum("ii->i", a) ** 2, ((3, 3),),
         torch=lambda t: lambda a: t.einsum("ii->i", a) ** 2),
    Case("einsum_trace_product", lambda a, b: ad.einsum("ij,jj->i", a, b),
         lambda a, b: np.einsum("ij,jj->i", a, b), ((2, 3), (3, 3)),
         torch=lambda t: lambda a, b: t.einsum("ij,jj->i", a, b)),
    # shapes and indexing
    Case("reshape", lambda x: x.reshape(2, 6) * x.reshape((2, 6)),
         lambda x: x.reshape(2, 6) ** 2, (S,), torch=lambda t: lambda x: x.reshape(2, 6) ** 2),
    Case("flatten", lambda x: ad.flatten(x) * 2, lambda x: x.reshape(-1) * 2, (S,),
         second=False),
    Case("squeeze", lambda x: ad.squeeze(x, 1) ** 2, lambda x: np.squeeze(x, 1) ** 2,
         ((3, 1, 4),), torch=lambda t: lambda x: x.squeeze(1) ** 2),
    Case("expand_dims", lambda x: ad.expand_dims(x, (0, 2)) ** 2,
         lambda x: np.expand_dims(x, (0, 2)) ** 2, (S,)),
    Case("transpose", lambda x: ad.transpose(x, (2, 0, 1)) ** 2,
         lambda x: np.transpose(x, (2, 0, 1)) ** 2, ((2, 3, 4),),
         torch=lambda t: lambda x: x.permute(2, 0, 1) ** 2),
    Case("T", lambda x: x.T @ x, lambda x: x.T @ x, (S,), torch=lambda t: lambda x: x.T @ x),
    Case("broadcast_to", lambda x: ad.broadcast_to(x, (2, 3, 4)) ** 2,
         lambda x: np.broadcast_to(x, (2, 3, 4)) ** 2, ((3, 1),),
         torch=lambda t: lambda x: x.expand(2, 3, 4) ** 2),
    Case("concatenate", lambda a, b: ad.concatenate([a, b * 2], axis=1) ** 2,
         lambda a, b: np.concatenate([a, b * 2], axis=1) ** 2, ((3, 2), (3, 4)),
         torch=lambda t: lambda a, b: t.cat([a, b * 2], dim=1) ** 2),
    Case("stack", lambda a, b: ad.stack([a, b * b], axis=1),
         lambda a, b: np.stack([a, b * b], axis=1), (S, S),
         torch=lambda t: lambda a, b: t.stack([a, b * b], dim=1)),
    Case("split", lambda x: ad.concatenate([p * (i + 1) for i, p in enumerate(
        ad.split(x, [1, 3], axis=1))], axis=1) ** 2,
        lambda x: np.concatenate([p * (i + 1) for i, p in enumerate(
            np.split(x, [1, 3], axis=1))], axis=1) ** 2, (S,)),
    Case("moveaxis", lambda x: ad.moveaxis(x, 0, -1) ** 2, lambda x: np.moveaxis(x, 0, -1) ** 2,
         ((2, 3, 4),), torch=lambda t: lambda x: t.movedim(x, 0, -1) ** 2),
    Case("swapaxes", lambda x: ad.swapaxes(x, 0, 2) ** 2, lambda x: np.swapaxes(x, 0, 2) ** 2,
         ((2, 3, 4),), torch=lambda t: lambda x: t.swapaxes(x, 0, 2) ** 2),
    Case("sum_to", lambda x: ad.sum_to(x, (1, 4)) ** 2,
         lambda x: x.sum(axis=0, keepdims=True) ** 2, (S,)),
    Case("clone", lambda x: ad.clone(x) * x, lambda x: x * x, (S,),
         torch=lambda t: lambda x: x.clone() * x),
    Case("flip", lambda x: ad.flip(x, 1) * x, lambda x: np.flip(x, 1) * x, (S,),
         torch=lambda t: lambda x: t.flip(x, [1]) * x),
    Case("pad", lambda x: ad.pad(x, ((1, 0), (2, 1))) ** 2,
         lambda x: np.pad(x, ((1, 0), (2, 1))) ** 2, (S,)),
    Case("getitem_basic", lambda x: x[1:, ::2] ** 2, lambda x: x[1:, ::2] ** 2, (S,),
         torch=lambda t: lambda x: x[1:, ::2] ** 2),
    Case("getitem_int_array", lambda x: x[[0, 2, 0]] ** 2, lambda x: x[[0, 2, 0]] ** 2, (S,),
         torch=lambda t: lambda x: x[[0, 2, 0]] ** 2),
    Case("getitem_mask", lambda x: x[x > 0] ** 2, lambda x: x[x > 0] ** 2, (S,), (AWAY,),
         torch=lambda t: lambda x: x[x > 0] ** 2),
    Case("getitem_mixed", lambda x: x[1, [3, 0, 3]] ** 2, lambda x: x[1, [3, 0, 3]] ** 2, (S,),
         torch=lambda t: lambda x: x[1, [3, 0, 3]] ** 2),
    Case("gather_nd", lambda x: ad.gather_nd(x, [[0, 1], [2, 3], [0, 1]]) ** 2,
         lambda x: x[[0, 2, 0], [1, 3, 1]] ** 2, (S,)),
    Case("take_along_axis",
         lambda x: ad.take_along_axis(x, np.array([[0, 3], [1, 1], [2, 0]]), 1) ** 2,
         lambda x: np.take_along_axis(x, np.array([[0, 3], [1, 1], [2, 0]]), 1) ** 2, (S,)),
    Case("astype", lambda x: (x.astype(ad.float64) ** 2).astype(x.dtype),
         lambda x: x ** 2, (S,)),
]
