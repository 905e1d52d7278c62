"""Reductions over axes: sum, mean, var, std, max, min, prod, logsumexp, norm, the softmax
family and argmax/argmin. ``axis`` is None (all axes), an int or a tuple; ``keepdims`` as NumPy.

JVP rules reduce the tangent over the same axes counted from the end (:func:`_last`), so its
leading batch axis of directions passes through.
"""
import math

from ..autograd.node import Op
from ..dtypes import float16, float32
from ..tensor import Tensor, record, record1
from ._args import (
    DDOF,
    LAST,
    axis_index,
    normalize_axis,
    plain,
    to_tensor,
    torch_axis,
    torch_reduce,
    torch_spread,
)
from .elementwise import abs, exp, isnan, sign, where
from .shape import broadcast_to, expand_dims, moveaxis, reshape, transpose


def _kept_shape(shape, axis):
    """``shape`` with the reduced axes set to 1."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else s for i, s in enumerate(shape))


def _expand(g, shape, axis, keepdims):
    """Broadcast a reduced value back over the axes it was reduced along."""
    if not keepdims and g.ndim:  # (a 0-d value broadcasts as it is)
        g = reshape(g, _kept_shape(shape, axis))
    return broadcast_to(g, shape)


def _last(axis, ndim):
    """The reduced axes of an ``ndim``-dimensional value, counted from the end (negative), so
    they also name them in a tangent with a leading batch axis."""
    return tuple(range(-ndim, 0)) if axis is None else tuple(a - ndim for a in axis)


def _wide(fn, a, *args, **kwargs):
    """``fn(a, ...)``, computed in float32 when ``a`` is float16 (no overflow of squares and
    sums past 65504), with the result cast back."""
    if a.dtype == float16:
        return fn(a.astype(float32), *args, **kwargs).astype(float16)
    return fn(a, *args, **kwargs)


def _count(shape, axis):
    return math.prod(shape) if axis is None else math.prod(shape[i] for i in axis)


def _check_extremum(name, shape, axis):
    """max and min have no value over zero elements: refuse an empty reduced axis (other
    axes may be empty: the result is then empty too, as in NumPy and PyTorch)."""
    if _count(shape, axis) == 0:
        along = "" if axis is None else f" along axes {axis} of length 0"
        raise ValueError(f"gpuad: {name} of an empty tensor (shape {shape}){along} has no "
                         "value; check the input is not empty, or reduce along a non-empty axis")


def _empty_mean(backend, a, axis, keepdims):
    """The mean over zero elements: 0/0 = nan, without NumPy's "Mean of empty slice"."""
    with backend.errstate():
        return backend.sum(a, axis=axis, keepdims=keepdims) / 0.0


def _reduction(name, rule, jvp, save_x=True, save_out=False):
    op = Op(name, (rule,), jvp=jvp, save_out=save_out)

    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if not isinstance(x, Tensor):
            x = to_tensor(x)
        if dim is not None or keepdim is not None:
            axis, keepdims = torch_reduce(name, axis, keepdims, dim, keepdim)
        axis = normalize_axis(axis, x.ndim, name)
        if x._a.size == 0 and name != "sum":
            if name in ("max", "min"):
                _check_extremum(name, x.shape, axis)
            elif name == "mean" and _count(x.shape, axis) == 0:
                out = _empty_mean(x._dev._backend, x._a, axis, keepdims)
                return record1(op, x, out, (x.shape, axis, keepdims))
        out = _wide(getattr(x._dev._backend, name), x._a, axis=axis, keepdims=keepdims)
        saved = ((x,) if save_x else (x.shape,)) + (axis, keepdims)
        return record1(op, x, out, saved)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.op = op
    return reduce


def _hits(x, y, axis, keepdims):
    """Where x equals its max/min ``y``; where the result is nan, the nan elements (a nan
    wins the reduction, so it gets the gradient, as in PyTorch's max())."""
    return (x == _expand(y, x.shape, axis, keepdims)) | isnan(x)


def _extremum_rule(g, y, x, axis, keepdims):
    """The gradient of max/min goes to the elements equal to the result, split evenly."""
    hit = _hits(x, y, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=True).astype(g.dtype)
    return where(hit, _expand(g, x.shape, axis, keepdims) / count, 0)


def _extremum_jvp(ts, y, x, axis, keepdims):
    """The tangent of max/min: the mean of the tangents at the elements equal to the result."""
    hit = _hits(x, y, axis, keepdims)
    count = hit.sum(axis=axis, keepdims=keepdims).astype(y.dtype)
    return where(hit, ts[0], 0).sum(axis=_last(axis, x.ndim), keepdims=keepdims) / count


sum = _reduction("sum", lambda g, shape, axis, keepdims: _expand(g, shape, axis, keepdims),
                 lambda ts, y, shape, axis, keepdims:
                 ts[0].sum(axis=_last(axis, len(shape)), keepdims=keepdims),
                 save_x=False)
mean = _reduction(
    "mean",
    lambda g, shape, axis, keepdims: _expand(g, shape, axis, keepdims) / _count(shape, axis),
    lambda ts, y, shape, axis, keepdims:
    ts[0].mean(axis=_last(axis, len(shape)), keepdims=keepdims),
    save_x=False,
)
max = _reduction("max", _extremum_rule, _extremum_jvp, save_out=True)
min = _reduction("min", _extremum_rule, _extremum_jvp, save_out=True)


def _centered(x, axis):
    """x - mean(x), the mean taken of x / s times s (s a constant power of two near max|x|,
    an exact scaling), so the sum does not overflow: float32 [3e38, 3e38] gives [0, 0]."""
    s = plain(x._dev._backend.pow2_scale(x._a, axis), x._dev)
    return x - (x / s).mean(axis=axis, keepdims=True) * s


def _dof(shape, axis, ddof):
    """The degrees of freedom N - ddof, at least 0 (NumPy and PyTorch: var is then x/0)."""
    dof = _count(shape, axis) - ddof
    return dof if dof > 0 else 0  # (max here is the reduction)


def _spread_jvp(ts, x, axis, ddof, keepdims):
    """d sum((x - mean)^2) / (N - ddof) along t, halved: sum((x - mean) t) / (N - ddof)."""
    return ((ts[0] * _centered(x, axis)).sum(axis=_last(axis, x.ndim), keepdims=keepdims)
            / _dof(x.shape, axis, ddof))


def _two_over(dof):
    """2 / dof as a float: inf at no degrees of freedom (then nan times a zero spread, or
    inf, as PyTorch), not ZeroDivisionError."""
    return 2.0 / dof if dof else math.inf


_VAR = Op("var", (lambda g, x, axis, ddof, keepdims: _expand(g, x.shape, axis, keepdims)
                  * _centered(x, axis) * _two_over(_dof(x.shape, axis, ddof)),),
          jvp=lambda ts, y, x, axis, ddof, keepdims: _spread_jvp(ts, x, axis, ddof, keepdims) * 2)


def _standardized(y, x, axis, keepdims):
    """(x - mean) / std, and where std is zero (True) in the second place. The ratio is at
    most sqrt(N), so a tiny std does not overflow the rule (1 / std would, in float16)."""
    ye = _expand(y, x.shape, axis, keepdims)
    zero = ye == 0
    return _centered(x, axis) / where(zero, 1, ye), zero


def _std_rule(g, y, x, axis, ddof, keepdims):
    """d std/dx = (x - mean) / (std (N - ddof)); 0 where the spread is zero (PyTorch's
    convention; masked as a whole, so its own derivative there is 0 too)."""
    z, zero = _standardized(y, x, axis, keepdims)
    return where(zero, 0, _expand(g, x.shape, axis, keepdims) * z / _dof(x.shape, axis, ddof))


def _std_jvp(ts, y, x, axis, ddof, keepdims):
    z, _ = _standardized(y, x, axis, keepdims)
    return where(y == 0, 0, (ts[0] * z).sum(axis=_last(axis, x.ndim), keepdims=keepdims)
                 / _dof(x.shape, axis, ddof))


_STD = Op("std", (_std_rule,), jvp=_std_jvp, save_out=True)


def _spread(method, x, axis, ddof, keepdims):
    """The backend's var or std: scaled, so the mean and the squares do not overflow; with
    no degrees of freedom (N - ddof <= 0, an empty tensor included) sum((x - mean)^2) / 0
    (inf, or nan where N or the sum is 0, as NumPy and PyTorch), without warnings."""
    return _wide(getattr(x._dev._backend, method), x._a, axis=axis, ddof=ddof,
                 keepdims=keepdims)


def var(x, axis=None, ddof=DDOF, keepdims=False, *, dim=None, keepdim=None,
        correction=None):
    """mean((x - mean(x))^2) with N - ddof in the denominator."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None or keepdim is not None or correction is not None:
        axis, ddof, keepdims = torch_spread("var", axis, ddof, keepdims, dim, keepdim,
                                            correction)
    axis = normalize_axis(axis, x.ndim, "var")
    out = _spread("var", x, axis, ddof, keepdims)
    return record1(_VAR, x, out, (x, axis, ddof, keepdims))


def std(x, axis=None, ddof=DDOF, keepdims=False, *, dim=None, keepdim=None,
        correction=None):
    """sqrt(var(x)); its derivative is 0 where the spread is zero (as in PyTorch)."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None or keepdim is not None or correction is not None:
        axis, ddof, keepdims = torch_spread("std", axis, ddof, keepdims, dim, keepdim,
                                            correction)
    axis = normalize_axis(axis, x.ndim, "std")
    out = _spread("std", x, axis, ddof, keepdims)
    return record1(_STD, x, out, (x, axis, ddof, keepdims))


# ---- prod -----------------------------------------------------------------------------------

def _prod_others_rule(g, x, axis):
    """VJP of o_i = prod_{k != i} x_k: grad_j = sum_{i != j} g_i prod_{k not in {i, j}} x_k.

    Row i of ``rows`` is x with x_i replaced by 1, so prod_others of that row gives the
    products that leave out both i and j; exact with zeros and differentiable again. The
    Jacobian is symmetric, so this is also the JVP (``g`` may have leading batch axes).
    """
    at = axis - x.ndim
    xl = moveaxis(x, at, -1)
    gl = moveaxis(g, at, -1)
    n = xl.shape[-1]
    backend = x._dev.backend
    diag = plain(backend.eye(n, dtype=bool), x._dev)
    rows = where(diag, 1, expand_dims(xl, -2))
    pairs = where(diag, 0, _prod_others(rows, rows.ndim - 1))
    return moveaxis(reshape(expand_dims(gl, -2) @ pairs, gl.shape), -1, at)


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
        merged = reshape(xt, tuple(x.shape[i] for i in keep) + (_count(x.shape, axis),))
        others = reshape(_prod_others(merged, len(keep)), xt.shape)
        order = keep + list(axis)
        others = transpose(others, [order.index(i) for i in range(x.ndim)])
    return others


def _prod_grad(y, x, axis, keepdims):
    """d prod/dx_i: prod / x_i in a slice without zeros (PyTorch's form), else the product of
    the others, 0 wherever another factor is 0 (even where the rest overflows: no 0 * inf),
    and differentiable again (exact second derivatives with zeros)."""
    zero = x == 0
    whole = zero.sum(axis=axis, keepdims=True) == 0
    return where(whole, _expand(y, x.shape, axis, keepdims) / where(zero, 1, x),
                 _others(x, axis))


prod = _reduction(
    "prod",
    lambda g, y, x, axis, keepdims: _expand(g, x.shape, axis, keepdims)
    * _prod_grad(y, x, axis, keepdims),
    lambda ts, y, x, axis, keepdims:
    (ts[0] * _prod_grad(y, x, axis, keepdims)).sum(axis=_last(axis, x.ndim), keepdims=keepdims),
    save_out=True,
)


# ---- log-sum-exp, norms, softmax ---------------------------------------------------------------

def _fused_rows(mode, name, rule):
    """The softmax family's derivative ``rule(g, y, [x], *params)`` in one kernel where the
    backend has one (CUDA): a node of its own whose derivatives (both modes) are the composed
    rule's, so ``create_graph`` and forward mode work on the fast path; elsewhere the rule."""
    n = 3 if mode == 2 else 2
    grad_op = None

    def vjp(g, y, *saved):
        nonlocal grad_op
        fused = g._dev._backend.fused_softmax_grad
        if fused is not None:
            inputs, params = (g, y) + saved[:n - 2], saved[n - 2:]
            axis = params[0]
            axes = (tuple(range(y.ndim if mode != 2 else inputs[2].ndim)) if axis is None
                    else (axis,) if mode != 2 else axis)
            out = fused(mode, g._a, y._a, inputs[2]._a if mode == 2 else None, axes)
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
        from ..autograd.functional import vjp

        inputs, params = args[:n], args[n:]
        _, pull = vjp(lambda v: rule(*inputs[:i], v, *inputs[i + 1:], *params), inputs[i])
        return pull(gg)[0]
    return vjp_i


def _rule_jvp(rule, n, ts, args):
    """The fused node's JVP: the composed rule's, in vector mode."""
    from ..autograd.functional import jvp

    inputs, params = args[:n], args[n:]
    k = next(t.shape[0] for t in ts if t is not None)
    ts = [t if t is not None else plain(x._dev.backend.zeros((k,) + x.shape, x.dtype), x._dev)
          for t, x in zip(ts, inputs)]
    return jvp(lambda *vs: rule(*vs, *params), tuple(inputs), ts, batched=True)[1]


_LOGSUMEXP = Op("logsumexp", (_fused_rows(2, "logsumexp", lambda g, y, x, axis, keepdims:
                                          _expand(g, x.shape, axis, keepdims)
                                          * exp(x - _expand(y, x.shape, axis, keepdims))),),
                jvp=lambda ts, y, x, axis, keepdims:
                (ts[0] * exp(x - _expand(y, x.shape, axis, keepdims))).sum(
                    axis=_last(axis, x.ndim), keepdims=keepdims),
                save_out=True)


def logsumexp(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """log(sum(exp(x))), computed shifted by the max so it does not overflow."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis("logsumexp", axis, keepdims, dim, keepdim)
    axis = normalize_axis(axis, x.ndim, "logsumexp")
    out = _wide(x._dev._backend.logsumexp, x._a, axis, keepdims)
    return record1(_LOGSUMEXP, x, out, (x, axis, keepdims))


def _pnorm_dir(y, x, p, axis, keepdims):
    """d||x||_p/dx = sign(x) (|x| / ||x||)^(p-1), from the ratio |x| / ||x|| (at most 1 for
    p >= 1), so no power of |x| or of the norm overflows before the result does. Zero where
    the norm is zero, and (for p < 1, where |x|^(p-1) is infinite) where x is zero, as in
    PyTorch."""
    ye = _expand(y, x.shape, axis, keepdims)
    zero = ye == 0
    safe = where(zero, 1, ye)
    if p == 2:
        return where(zero, 0, x / safe)
    if p < 1:
        return where(x == 0, 0, sign(x) * abs(where(x == 0, 1, x) / safe) ** (p - 1))
    return sign(x) * abs(x / safe) ** (p - 1)


_PNORM = Op("norm", (lambda g, y, x, p, axis, keepdims: _expand(g, x.shape, axis, keepdims)
                     * _pnorm_dir(y, x, p, axis, keepdims),), save_out=True,
            jvp=lambda ts, y, x, p, axis, keepdims: (ts[0] * _pnorm_dir(y, x, p, axis, keepdims))
            .sum(axis=_last(axis, x.ndim), keepdims=keepdims))


def norm(x, ord=2, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The vector p-norm of the elements along ``axis`` (all elements when None).

    ``ord``: any p != 0 (2 by default, "fro" is 2; negative p as NumPy), inf (max |x|), -inf
    (min |x|), 0 (count of non-zeros). The gradient at the zero vector is zero (PyTorch's
    convention).
    """
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis("norm", axis, keepdims, dim, keepdim)
    if ord in (None, "fro"):
        ord = 2
    if isinstance(ord, str):
        raise ValueError(f"gpuad.norm: ord={ord!r} is not supported; use a number, inf or 'fro'")
    if ord in (math.inf, -math.inf):
        _check_extremum(f"norm(ord={ord})", x.shape, normalize_axis(axis, x.ndim, "norm"))
        return (abs(x).max if ord > 0 else abs(x).min)(axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of non-zeros; its gradient is zero (sign's)
        return abs(sign(x)).sum(axis=axis, keepdims=keepdims)
    if ord == 1:
        return abs(x).sum(axis=axis, keepdims=keepdims)
    axis = normalize_axis(axis, x.ndim, "norm")
    out = _wide(x._dev._backend.vector_norm, x._a, ord, axis, keepdims)
    return record1(_PNORM, x, out, (x, ord, axis, keepdims))


_SOFTMAX = Op("softmax", (_fused_rows(0, "softmax", lambda g, y, axis:
                                      y * (g - (g * y).sum(axis=axis, keepdims=True))),),
              jvp=lambda ts, y, axis:
              y * (ts[0] - (ts[0] * y).sum(axis=axis - y.ndim, keepdims=True)),
              save_out=True)
_LOG_SOFTMAX = Op("log_softmax",
                  (_fused_rows(1, "log_softmax", lambda g, y, axis:
                               g - exp(y) * g.sum(axis=axis, keepdims=True)),),
                  jvp=lambda ts, y, axis:
                  ts[0] - (exp(y) * ts[0]).sum(axis=axis - y.ndim, keepdims=True),
                  save_out=True)


def softmax(x, axis=LAST, *, dim=None):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the max for stability."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None:
        axis = torch_axis("softmax", axis, False, dim, None)[0]
    if x.ndim == 0:  # one element: as a vector of one (PyTorch allows axis 0 or -1)
        axis_index(axis, 0, "softmax", whole=True)
        return reshape(softmax(reshape(x, (1,))), ())
    axis = axis_index(axis, x.ndim, "softmax")
    return record1(_SOFTMAX, x, _wide(x._dev._backend.softmax, x._a, axis), (axis,))


def log_softmax(x, axis=LAST, *, dim=None):
    """x - logsumexp(x) along ``axis``."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None:
        axis = torch_axis("log_softmax", axis, False, dim, None)[0]
    if x.ndim == 0:
        axis_index(axis, 0, "log_softmax", whole=True)
        return reshape(log_softmax(reshape(x, (1,))), ())
    axis = axis_index(axis, x.ndim, "log_softmax")
    return record1(_LOG_SOFTMAX, x, _wide(x._dev._backend.log_softmax, x._a, axis), (axis,))


def _truth(name, doc):
    """A reduction to a boolean tensor (``any``/``all`` along ``axis``), with no gradient."""
    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        x = x if isinstance(x, Tensor) else to_tensor(x)
        if dim is not None or keepdim is not None:
            axis, keepdims = torch_axis(name, axis, keepdims, dim, keepdim)
        axis = normalize_axis(axis, x.ndim, name)
        return plain(getattr(x._dev._backend, name)(x._a, axis=axis, keepdims=keepdims), x._dev)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = doc
    return reduce


any = _truth("any", "Whether any element (along ``axis``) is non-zero.")
all = _truth("all", "Whether every element (along ``axis``) is non-zero.")


def _arg_extremum(name, x, axis, keepdims, dim, keepdim):
    """The flat (``axis`` None) or per-``axis`` index of the first extreme element."""
    x = x if isinstance(x, Tensor) else to_tensor(x)
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis(name, axis, keepdims, dim, keepdim)
    if axis is not None:
        axis = axis_index(axis, x.ndim, name, whole=True)
        if x.ndim == 0:
            axis = None  # (axis 0 or -1 of a 0-d tensor is the whole of it)
    return plain(getattr(x._dev._backend, name)(x._a, axis=axis, keepdims=keepdims), x._dev)


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return _arg_extremum("argmax", x, axis, keepdims, dim, keepdim)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    return _arg_extremum("argmin", x, axis, keepdims, dim, keepdim)
