"""Reductions over axes: sum, mean, var, std, max, min, prod, logsumexp, norm, the softmax
family and argmax/argmin. ``axis`` is None (all axes), an int or a tuple; ``keepdims`` as NumPy.

JVP rules reduce the tangent over the same axes counted from the end (:func:`last_axes`), so its
leading batch axis of directions passes through.
"""
from typing import TYPE_CHECKING

from ..autograd import linearize
from ..autograd.node import Op
from ..autograd.record import record, record1
from ..backends.kernel_table import RowMode
from ..tensor import Tensor
from ._args import (
    LAST,
    NO_DIM,
    axis_index,
    normalize_axis,
    plain,
    softmax_dim,
    to_tensor,
    torch_axis,
    torch_reduce,
)
from ._reduce import check_extremum, expand, last_axes, n_reduced, wide
from .compare import isinf, isnan
from .define import example_section
from .elementwise import exp
from .registry import exports, public
from .selection import where
from .shape import expand_dims, moveaxis, reshape, transpose


def _empty_mean(backend, a, axis, keepdims):
    """The mean over zero elements: 0/0 = nan, without NumPy's "Mean of empty slice"."""
    with backend.errstate():
        return backend.sum(a, axis=axis, keepdims=keepdims) / 0.0


def _reduction(name, rule, jvp, math, gradient, save_x=True, save_out=False, example=()):
    """The public op and Tensor method ``name(x, axis=None, keepdims=False)``: the reduction
    ``math`` over ``axis``, with VJP ``rule`` and JVP ``jvp``, whose docstring states
    ``math`` and what the ``gradient`` is, and ends with the doctest lines ``example``."""
    op = Op(name, (rule,), jvp=jvp, save_out=save_out)

    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        if dim is not None or keepdim is not None:
            axis, keepdims = torch_reduce(name, axis, keepdims, dim, keepdim)
        axis = normalize_axis(axis, x.ndim, name)
        if x._a.size == 0 and name != "sum":
            if name in ("max", "min"):
                check_extremum(name, x.shape, axis)
            elif name == "mean" and n_reduced(x.shape, axis) == 0:
                out = _empty_mean(x._dev._backend, x._a, axis, keepdims)
                return record1(op, x, out, (x.shape, axis, keepdims))
        out = wide(x._dev._backend, name, x._a, axis=axis, keepdims=keepdims)
        saved = ((x,) if save_x else (x.shape,)) + (axis, keepdims)
        return record1(op, x, out, saved)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = (f"{name}(x, axis=None, keepdims=False): {math}, over ``axis`` (None: "
                      "all axes; an int or a tuple; negative counts from the end), keeping the "
                      "reduced axes as length 1 with ``keepdims``. PyTorch's ``dim``/``keepdim`` "
                      "are accepted too. The result is on x's device; a floating x keeps its "
                      f"dtype (integer and bool x follow NumPy's type rules). {gradient}."
                      + example_section(example))
    reduce.op, reduce.math = op, math
    return public(reduce, method=True)


def _hits(x, y, axis, keepdims):
    """Where x equals its max/min ``y``; where the result is nan, the nan elements (a nan
    wins the reduction, so it gets the gradient, as in PyTorch's max())."""
    return (x == expand(y, x.shape, axis, keepdims)) | isnan(x)


def _extremum_rule(g, y, x, axis, keepdims):
    """The gradient of max/min goes to the elements equal to the result, split evenly."""
    hit = _hits(x, y, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True).astype(g.dtype)
    return where(hit, expand(g, x.shape, axis, keepdims) / count, 0)


def _extremum_jvp(ts, y, x, axis, keepdims):
    """The tangent of max/min: the mean of the tangents at the elements equal to the result."""
    hit = _hits(x, y, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=keepdims).astype(y.dtype)
    return where(hit, ts[0], 0).sum(axis=last_axes(axis, x.ndim), keepdims=keepdims) / count


sum = _reduction("sum", lambda g, shape, axis, keepdims: expand(g, shape, axis, keepdims),
                 lambda ts, y, shape, axis, keepdims:
                 ts[0].sum(axis=last_axes(axis, len(shape)), keepdims=keepdims),
                 "the sum of the elements", "The gradient is g broadcast back to x's shape",
                 save_x=False, example=(
                     ">>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])",
                     ">>> ad.sum(x), ad.sum(x, axis=0)", "(tensor(10.), tensor([4., 6.]))",
                     ">>> ad.sum(x, axis=1, keepdims=True)", "tensor([[3.],", "        [7.]])"))
mean = _reduction(
    "mean",
    lambda g, shape, axis, keepdims: expand(g, shape, axis, keepdims) / n_reduced(shape, axis),
    lambda ts, y, shape, axis, keepdims:
    ts[0].mean(axis=last_axes(axis, len(shape)), keepdims=keepdims),
    "the mean of the elements (nan over none)",
    "The gradient is g / n broadcast back to x's shape, n the number of elements reduced",
    save_x=False,
    example=(">>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])",
             ">>> ad.mean(x), ad.mean(x, axis=1)", "(tensor(2.5000), tensor([1.5000, 3.5000]))"),
)
max = _reduction("max", _extremum_rule, _extremum_jvp,
                 "the largest element (nan if any is)",
                 "Tied maxima share the gradient evenly (a nan result gives it to the nans)",
                 save_out=True, example=(
                     ">>> ad.max(ad.tensor([[1.0, 5.0], [3.0, 2.0]]), axis=0)", "tensor([3., 5.])",
                     ">>> x = ad.tensor([1.0, 3.0, 3.0], requires_grad=True)",
                     ">>> ad.max(x).backward()",
                     ">>> x.grad", "tensor([0.0000, 0.5000, 0.5000])"))
min = _reduction("min", _extremum_rule, _extremum_jvp,
                 "the smallest element (nan if any is)",
                 "Tied minima share the gradient evenly (a nan result gives it to the nans)",
                 save_out=True, example=(
                     ">>> ad.min(ad.tensor([[1.0, 5.0], [3.0, 2.0]]), axis=1)", "tensor([1., 2.])",
                     ">>> ad.min(ad.tensor([1.0, np.nan]))", "tensor(nan)"))


# ---- prod -----------------------------------------------------------------------------------

def _prod_others_rule(g, x, axis):
    """VJP of o_i = prod_{k != i} x_k: grad_j = sum_{i != j} g_i prod_{k not in {i, j}} x_k.

    Row i of ``rows`` is x with x_i replaced by 1, so prod_others of that row gives the
    products that leave out both i and j; exact with zeros and differentiable again. The
    Jacobian is symmetric, so this is also the JVP (``g`` may have leading batch axes).
    A zero g_i contributes nothing, also where its products are inf.
    """
    at = axis - x.ndim
    xl = moveaxis(x, at, -1)
    gl = moveaxis(g, at, -1)
    n = xl.shape[-1]
    backend = x._dev.backend
    diag = plain(backend.eye(n, dtype=bool), x._dev)
    rows = where(diag, 1, expand_dims(xl, -2))
    pairs = where(diag, 0, _prod_others(rows, rows.ndim - 1))
    if x._dev._backend.all_finite(pairs._a):
        return moveaxis(reshape(expand_dims(gl, -2) @ pairs, gl.shape), -1, at)
    # an inf among the pairs: a zero g_i selects its infs out (a product would make 0 * inf =
    # nan of them, as in the Hessian of [1e300, 1e300, 1e-300, 2], whose row of 1e-300 holds
    # inf); elsewhere, a nan pair included, the rule stays g_i times the pair, linear in g
    gi = expand_dims(gl, -1)
    return moveaxis(where((gi == 0) & isinf(pairs), 0, gi * pairs).sum(axis=-2), -1, at)


_PROD_OTHERS = Op("prod_others", (_prod_others_rule,),
                  jvp=lambda ts, y, x, axis: _prod_others_rule(ts[0], x, axis))


def _prod_others(x, axis):
    """For each element, the product of the others along ``axis`` (no division, exact at 0)."""
    return record1(_PROD_OTHERS, x, x._dev._backend.prod_others(x._a, axis), (x, axis))


def _others(x, axis):
    """For each element, the product of the other elements it is reduced with."""
    if axis is None:
        others = reshape(_prod_others(reshape(x, (-1,)), 0), x.shape)
    elif len(axis) == 1:
        others = _prod_others(x, axis[0])
    else:
        keep = [i for i in range(x.ndim) if i not in axis]
        xt = transpose(x, keep + list(axis))
        merged = reshape(xt, tuple(x.shape[i] for i in keep) + (n_reduced(x.shape, axis),))
        others = reshape(_prod_others(merged, len(keep)), xt.shape)
        order = keep + list(axis)
        others = transpose(others, [order.index(i) for i in range(x.ndim)])
    return others


def _prod_grad(y, x, axis, keepdims):
    """d prod/dx_i, the product of the others: y / x_i (PyTorch's form, one division) where
    y and every partial product on the way to it are normal numbers
    (``Backend.products_in_range``), so y / x_i is the product of the others to within y's
    own rounding. Other slices take the product of the others itself
    (``Backend.prod_others``: no division, exact at zeros, 0 wherever another factor is 0
    even where the rest overflows, differentiable again), computed only when there are such
    slices: a zero, nan or inf factor; an over- or underflow that y / x_i would pass on to
    finite partial derivatives (float32 [1e30, 1e30, 1e-30] gives y = inf, the others of
    1e30 are 1); a partial product in the subnormals, whose lost bits y / x_i carries
    (float32 [1e-20, 1e-20, 1e30]: 5e-6 off; a subnormal factor, 12%); one past the float
    maximum, where y / x_i differentiates to inf - inf (the Hessian of
    [1e300, 1e300, 1e-300, 2])."""
    backend = x._dev._backend
    ye = expand(y, x.shape, axis, keepdims)
    normal = backend.products_in_range(x._a, y._a, axis, keepdims)
    if backend.all(normal):
        return ye / x
    bad = expand(plain(~normal, x._dev), x.shape, axis, keepdims)
    return where(bad, _others(x, axis), ye / where(bad, 1, x))


prod = _reduction(
    "prod",
    lambda g, y, x, axis, keepdims: expand(g, x.shape, axis, keepdims)
    * _prod_grad(y, x, axis, keepdims),
    lambda ts, y, x, axis, keepdims:
    (ts[0] * _prod_grad(y, x, axis, keepdims)).sum(axis=last_axes(axis, x.ndim), keepdims=keepdims),
    "the product of the elements",
    "The gradient of an element is the product of the others, exact also where elements are 0",
    save_out=True,
    example=(">>> ad.prod(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=1)", "tensor([ 2., 12.])",
             ">>> x = ad.tensor([2.0, 0.0, 3.0], requires_grad=True)",
             ">>> ad.prod(x).backward()",
             ">>> x.grad", "tensor([0., 6., 0.])"),
)


# ---- log-sum-exp, norms, softmax ---------------------------------------------------------------

def _fused_rows(mode, name, rule):
    """The softmax family's derivative ``rule(g, y, [x], *params)`` in one kernel where the
    backend has one (CUDA): a node of its own whose derivatives (both modes) are the composed
    rule's, so ``create_graph`` and forward mode work on the fast path; elsewhere the rule."""
    n = 3 if mode == RowMode.LOGSUMEXP else 2
    grad_op = None

    def vjp(g, y, *saved):
        nonlocal grad_op
        fused = g._dev._backend.fused_softmax_grad
        if fused is not None:
            inputs, params = (g, y) + saved[:n - 2], saved[n - 2:]
            axis = params[0]
            lse = mode == RowMode.LOGSUMEXP
            axes = (tuple(range(inputs[2].ndim if lse else y.ndim)) if axis is None
                    else axis if lse else (axis,))
            out = fused(mode, g._a, y._a, inputs[2]._a if lse else None, axes)
            if out is not None:
                if grad_op is None:
                    grad_op = Op(f"{name}_grad",
                                 tuple(_rule_vjp(rule, i, n) for i in range(n)),
                                 jvp=lambda ts, out, *args: _rule_jvp(rule, n, ts, args))
                return record(grad_op, inputs, out, g._dev, inputs + params)
        return rule(g, y, *saved)

    return vjp


def _rule_vjp(rule, i, n):
    """The fused node's VJP for input ``i``: the composed rule, differentiated in reverse."""
    def vjp_i(gg, *args):
        inputs, params = args[:n], args[n:]
        _, pull = linearize.vjp(lambda v: rule(*inputs[:i], v, *inputs[i + 1:], *params),
                                inputs[i])
        return pull(gg)[0]
    return vjp_i


def _rule_jvp(rule, n, ts, args):
    """The fused node's JVP: the composed rule's, in vector mode."""
    inputs, params = args[:n], args[n:]
    k = next(t.shape[0] for t in ts if t is not None)
    ts = [t if t is not None else plain(x._dev.backend.zeros((k,) + x.shape, x.dtype), x._dev)
          for t, x in zip(ts, inputs)]
    return linearize.jvp(lambda *vs: rule(*vs, *params), tuple(inputs), ts, batched=True)[1]


_LOGSUMEXP = Op("logsumexp", (_fused_rows(
                    RowMode.LOGSUMEXP, "logsumexp", lambda g, y, x, axis, keepdims:
                    expand(g, x.shape, axis, keepdims)
                    * exp(x - expand(y, x.shape, axis, keepdims))),),
                jvp=lambda ts, y, x, axis, keepdims:
                (ts[0] * exp(x - expand(y, x.shape, axis, keepdims))).sum(
                    axis=last_axes(axis, x.ndim), keepdims=keepdims),
                save_out=True)


@public(method=True)
def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """log(sum(exp(x))) over ``axis`` (all axes when None), computed shifted by the max so it
    does not overflow: m + log(sum(exp(x - m))), m = max(x). Its gradient is softmax(x).

    >>> ad.logsumexp(ad.tensor([0.0, 0.0])), ad.logsumexp(ad.tensor([1000.0, 1000.0]))
    (tensor(0.6931), tensor(1000.6932))
    """
    x = x if isinstance(x, Tensor) else to_tensor(x, "logsumexp")
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis("logsumexp", axis, keepdims, dim, keepdim)
    axis = normalize_axis(axis, x.ndim, "logsumexp")
    out = wide(x._dev._backend, "logsumexp", x._a, axis, keepdims)
    return record1(_LOGSUMEXP, x, out, (x, axis, keepdims))


_SOFTMAX = Op("softmax", (_fused_rows(RowMode.SOFTMAX, "softmax", lambda g, y, axis:
                                      y * (g - (g * y).sum(axis=axis, keepdims=True))),),
              jvp=lambda ts, y, axis:
              y * (ts[0] - (ts[0] * y).sum(axis=axis - y.ndim, keepdims=True)),
              save_out=True)
_LOG_SOFTMAX = Op("log_softmax",
                  (_fused_rows(RowMode.LOG_SOFTMAX, "log_softmax", lambda g, y, axis:
                               g - exp(y) * g.sum(axis=axis, keepdims=True)),),
                  jvp=lambda ts, y, axis:
                  ts[0] - (exp(y) * ts[0]).sum(axis=axis - y.ndim, keepdims=True),
                  save_out=True)


@public(method=True)
def softmax(x, axis=LAST, *, dim=NO_DIM):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max for stability.

    >>> ad.softmax(ad.tensor([0.0, np.log(3.0)])), ad.softmax(ad.tensor([0.0, 1000.0]))
    (tensor([0.2500, 0.7500]), tensor([0., 1.]))
    """
    x = x if isinstance(x, Tensor) else to_tensor(x, "softmax")
    if dim is not NO_DIM:
        axis = softmax_dim("softmax", axis, dim)
    if x.ndim == 0:  # one element: as a vector of one (PyTorch allows axis 0 or -1)
        axis_index(axis, 0, "softmax", whole=True)
        return reshape(softmax(reshape(x, (1,))), ())
    axis = axis_index(axis, x.ndim, "softmax")
    return record1(_SOFTMAX, x, wide(x._dev._backend, "softmax", x._a, axis), (axis,))


@public(method=True)
def log_softmax(x, axis=LAST, *, dim=NO_DIM):
    """x - logsumexp(x) along ``axis``, computed as (x - max) - log(sum(exp(x - max))) so that
    log(sum) is not lost next to a large max.

    >>> ad.log_softmax(ad.tensor([0.0, np.log(3.0)])), ad.log_softmax(ad.tensor([0.0, 1000.0]))
    (tensor([-1.3863, -0.2877]), tensor([-1000.,     0.]))
    """
    x = x if isinstance(x, Tensor) else to_tensor(x, "log_softmax")
    if dim is not NO_DIM:
        axis = softmax_dim("log_softmax", axis, dim)
    if x.ndim == 0:
        axis_index(axis, 0, "log_softmax", whole=True)
        return reshape(log_softmax(reshape(x, (1,))), ())
    axis = axis_index(axis, x.ndim, "log_softmax")
    return record1(_LOG_SOFTMAX, x, wide(x._dev._backend, "log_softmax", x._a, axis), (axis,))


def _truth(name, doc, example):
    """A reduction to a boolean tensor (``any``/``all`` along ``axis``), with no gradient;
    ``doc`` is its docstring, ``example`` the lines of its doctest."""
    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        x = x if isinstance(x, Tensor) else to_tensor(x, name)
        if dim is not None or keepdim is not None:
            axis, keepdims = torch_axis(name, axis, keepdims, dim, keepdim)
        axis = normalize_axis(axis, x.ndim, name)
        return plain(getattr(x._dev._backend, name)(x._a, axis=axis, keepdims=keepdims), x._dev)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = doc + example_section(example)
    return public(reduce, method=True)


any = _truth("any", "Whether any element (along ``axis``) is non-zero.", (
    ">>> ad.any(ad.tensor([[0.0, 0.0], [0.0, 2.0]]), axis=1)", "tensor([False,  True])"))
all = _truth("all", "Whether every element (along ``axis``) is non-zero.", (
    ">>> ad.all(ad.tensor([[1.0, 0.0], [1.0, 2.0]]), axis=1)", "tensor([False,  True])"))


def _arg_extremum(name, x, axis, keepdims, dim, keepdim):
    """The flat (``axis`` None) or per-``axis`` index of the first extreme element."""
    x = x if isinstance(x, Tensor) else to_tensor(x, name)
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis(name, axis, keepdims, dim, keepdim)
    if axis is not None:
        axis = axis_index(axis, x.ndim, name, whole=True)
        if x.ndim == 0:
            axis = None  # (axis 0 or -1 of a 0-d tensor is the whole of it)
    return plain(getattr(x._dev._backend, name)(x._a, axis=axis, keepdims=keepdims), x._dev)


@public(method=True)
def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The index of the first largest element: flat (``axis`` None) or along ``axis``, as an
    int64 tensor (no gradient).

    >>> x = ad.tensor([[1.0, 5.0, 5.0], [7.0, 0.0, 2.0]])
    >>> ad.argmax(x, axis=1), ad.argmax(x)
    (tensor([1, 0]), tensor(3))
    """
    return _arg_extremum("argmax", x, axis, keepdims, dim, keepdim)


@public(method=True)
def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The index of the first smallest element: flat (``axis`` None) or along ``axis``, as an
    int64 tensor (no gradient).

    >>> x = ad.tensor([[1.0, 5.0, 1.0], [7.0, 0.0, 2.0]])
    >>> ad.argmin(x, axis=1), ad.argmin(x)
    (tensor([0, 1]), tensor(4))
    """
    return _arg_extremum("argmin", x, axis, keepdims, dim, keepdim)

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
