"""The reductions that square: var, std and the vector p-norms. Their values come from the
backend's scaled forms (x divided by a power of two near max|x|, or by max|x| itself for
p-norms other than 2), so no square, power, sum or mean overflows or underflows on the way; the
rules use the backend's centering (x - mean, scaled where the mean overflows) and ratios
((x - mean) / std, |x| / ||x||) for the same reason.
"""
import math
import numbers
from typing import TYPE_CHECKING

from ..autograd.node import Op
from ..autograd.record import record1
from ..tensor import Tensor
from ._args import DDOF, NO_DIM, Default, normalize_axis, to_tensor, torch_axis, torch_spread
from ._reduce import check_extremum, expand, last_axes, n_reduced, wide
from .elementwise import abs, sign
from .registry import exports, public
from .selection import where


def _center(x, axes):
    """x - mean(x) along ``axes`` (negative, so a tangent's leading batch axis passes): the
    backend's, which is finite wherever the result is and exactly 0 for a constant slice."""
    return record1(_CENTER, x, wide(x._dev._backend, "center", x._a, axes), (axes,))


# centering is linear and its matrix I - 11^T / N symmetric: it is its own VJP and JVP
_CENTER = Op("center", (lambda g, axes: _center(g, axes),),
             jvp=lambda ts, y, axes: _center(ts[0], axes))


def _dof(shape, axis, ddof):
    """The degrees of freedom N - ddof, at least 0 (NumPy and PyTorch: var is then x/0)."""
    dof = n_reduced(shape, axis) - ddof
    return dof if dof > 0 else 0  # (max here is the reduction)


def _two_over(dof):
    """2 / dof as a float: inf at no degrees of freedom (then nan times a zero spread, or
    inf, as PyTorch), not ZeroDivisionError."""
    return 2.0 / dof if dof else math.inf


def _var_jvp(ts, y, x, axis, ddof, keepdims):
    """d var along t: 2 sum((x - mean) t) / (N - ddof) (divided: the quiet x/0 at no degrees
    of freedom, where forward mode runs without the backward pass's silenced warnings)."""
    at = last_axes(axis, x.ndim)
    return (ts[0] * _center(x, at)).sum(axis=at, keepdims=keepdims) / _dof(x.shape, axis,
                                                                           ddof) * 2


_VAR = Op("var", (lambda g, x, axis, ddof, keepdims:
                  expand(g * _two_over(_dof(x.shape, axis, ddof)), x.shape, axis, keepdims)
                  * _center(x, last_axes(axis, x.ndim)),), jvp=_var_jvp)


def _standardized(y, x, axis, keepdims):
    """(x - mean) / std, with 1 for std where it is zero. The ratio is at most sqrt(N), so a
    tiny std does not overflow the rule (1 / std would, in float16)."""
    ye = expand(where(y == 0, 1, y), x.shape, axis, keepdims)
    return _center(x, last_axes(axis, x.ndim)) / ye


def _std_rule(g, y, x, axis, ddof, keepdims):
    """d std/dx = (x - mean) / (std (N - ddof)); 0 where the spread is zero (PyTorch's
    convention; g is masked there, so the rule's own derivative is 0 there too)."""
    g = where(y == 0, 0, g) / _dof(x.shape, axis, ddof)
    return expand(g, x.shape, axis, keepdims) * _standardized(y, x, axis, keepdims)


def _std_jvp(ts, y, x, axis, ddof, keepdims):
    z = _standardized(y, x, axis, keepdims)
    return where(y == 0, 0, (ts[0] * z).sum(axis=last_axes(axis, x.ndim), keepdims=keepdims)
                 / _dof(x.shape, axis, ddof))


_STD = Op("std", (_std_rule,), jvp=_std_jvp, save_out=True)


def _spread(method, x, axis, ddof, keepdims):
    """The backend's var or std: scaled, so the mean and the squares do not overflow; with
    no degrees of freedom (N - ddof <= 0, an empty tensor included) sum((x - mean)^2) / 0
    (inf, or nan where N or the sum is 0, as NumPy and PyTorch), without warnings."""
    return wide(x._dev._backend, method, x._a, axis=axis, ddof=ddof,
                 keepdims=keepdims)


_PLAIN_INT = (int, Default)


def _number(value):
    """A Python int or float from a real number (NumPy's scalars included, whose own
    precision would otherwise carry into the arithmetic: 1 / float32(3)); None otherwise."""
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value) if isinstance(value, numbers.Real) else None


def _ddof(name, ddof):
    """``ddof`` as a Python number, or a clear error."""
    out = _number(ddof)
    if out is None:
        raise TypeError(f"gpuad.{name}: ddof (PyTorch: correction) must be a number, the "
                        f"ddof of the N - ddof divisor, e.g. ddof=1; got {ddof!r} "
                        f"({type(ddof).__name__})")
    return out


@public(method=True)
def var(x, axis=None, ddof=DDOF, keepdims=False, *, dim=NO_DIM, keepdim=None,
        correction=None, unbiased=None):
    """The variance, sum((x - mean(x))^2) / (N - ddof) over ``axis`` (all axes when None),
    N the number of elements reduced; ``ddof=0`` (NumPy's default) by default.

    >>> x = ad.tensor([1.0, 2.0, 3.0, 4.0])
    >>> ad.var(x)
    tensor(1.2500)
    >>> ad.var(x, ddof=1)
    tensor(1.6667)
    """
    return _spread_op(_VAR, x, axis, ddof, keepdims, dim, keepdim, correction, unbiased)


@public(method=True)
def std(x, axis=None, ddof=DDOF, keepdims=False, *, dim=NO_DIM, keepdim=None,
        correction=None, unbiased=None):
    """The standard deviation sqrt(var(x)), ``ddof`` as :func:`var`'s; its derivative is 0
    where the spread is zero (as in PyTorch).

    >>> ad.std(ad.tensor([1.0, 3.0, 5.0, 7.0]))
    tensor(2.2361)
    >>> x = ad.tensor([2.0, 2.0], requires_grad=True)
    >>> ad.std(x).backward()
    >>> x.grad
    tensor([0., 0.])
    """
    return _spread_op(_STD, x, axis, ddof, keepdims, dim, keepdim, correction, unbiased)


def _spread_op(op, x, axis, ddof, keepdims, dim, keepdim, correction, unbiased):
    """var or std (``op``) of ``x``, its arguments in NumPy's or PyTorch's spelling."""
    name = op.name
    x = x if isinstance(x, Tensor) else to_tensor(x, name)
    if (dim is not NO_DIM or keepdim is not None or correction is not None
            or unbiased is not None):
        axis, ddof, keepdims = torch_spread(name, axis, ddof, keepdims, dim, keepdim,
                                            correction, unbiased)
    if ddof.__class__ not in _PLAIN_INT:
        ddof = _ddof(name, ddof)
    axis = normalize_axis(axis, x.ndim, name)
    out = _spread(name, x, axis, ddof, keepdims)
    return record1(op, x, out, (x, axis, ddof, keepdims))


# ---- vector norms ---------------------------------------------------------------------------

def _pnorm_dir(y, x, p, axis, keepdims):
    """d||x||_p/dx = sign(x) (|x| / ||x||)^(p-1), from the ratio |x| / ||x|| (at most 1 for
    p >= 1), so no power of |x| or of the norm overflows before the result does. Zero where
    the norm is zero (for p < 0, wherever the slice holds a zero), and (for p < 1, where
    |x|^(p-1) is infinite) where x is zero, as in PyTorch. The norm's masks are taken before
    they are broadcast over x (one pass over x each, not two)."""
    zero = y == 0
    safe = expand(where(zero, 1, y), x.shape, axis, keepdims)
    zero = expand(zero, x.shape, axis, keepdims)
    if p == 2:
        return where(zero, 0, x / safe)
    if p < 1:  # (p < 0: one zero element makes the norm zero)
        off = zero | (x == 0)
        return where(off, 0, sign(x) * abs(where(off, 1, x) / safe) ** (p - 1))
    return sign(x) * abs(x / safe) ** (p - 1)


_PNORM = Op("norm", (lambda g, y, x, p, axis, keepdims: expand(g, x.shape, axis, keepdims)
                     * _pnorm_dir(y, x, p, axis, keepdims),), save_out=True,
            jvp=lambda ts, y, x, p, axis, keepdims: (ts[0] * _pnorm_dir(y, x, p, axis, keepdims))
            .sum(axis=last_axes(axis, x.ndim), keepdims=keepdims))


_ORD = Default(2)  # (norm's default ord, told apart from an explicit 2)


def _norm_ord(ord, p):
    """The p of the p-norm from ``ord`` or PyTorch's ``p`` (None and "fro" are 2)."""
    if p is not None:
        if ord is not _ORD:
            raise TypeError(f"gpuad.norm: got both ord={ord!r} and p={p!r}; p is PyTorch's "
                            "name for ord: pass one of them")
        ord = p
    if ord is None:
        return 2
    if isinstance(ord, str):
        if ord == "fro":
            return 2
        raise ValueError(f"gpuad.norm: ord={ord!r} is not supported (vector norms only); use "
                         "a number, inf, -inf or 'fro'")
    number = _number(ord)
    if number is None:
        raise TypeError(f"gpuad.norm: ord must be a number (the p of the p-norm), inf, -inf or "
                        f"'fro'; got {ord!r} ({type(ord).__name__})")
    return number


@public(method=True)
def norm(x, ord=_ORD, axis=None, keepdims=False, *, dim=None, keepdim=None, p=None):
    """The vector p-norm of the elements along ``axis`` (all elements when None):
    (sum |x|^p)^(1/p).

    ``ord`` (or PyTorch's name ``p``): any p != 0 (2 by default, "fro" is 2; negative p as
    NumPy), inf (max |x|), -inf (min |x|), 0 (count of non-zeros). The gradient is zero where
    the norm is zero (PyTorch's convention), which for p < 0 is wherever the slice holds a 0.

    >>> x = ad.tensor([3.0, -4.0])
    >>> ad.norm(x), ad.norm(x, 1), ad.norm(x, np.inf)
    (tensor(5.), tensor(7.), tensor(4.))
    >>> ad.norm(ad.tensor([[3.0, 4.0], [6.0, 8.0]]), axis=1)
    tensor([ 5., 10.])
    """
    x = x if isinstance(x, Tensor) else to_tensor(x, "norm")
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis("norm", axis, keepdims, dim, keepdim)
    ord = _norm_ord(ord, p)
    if ord in (math.inf, -math.inf):
        check_extremum(f"norm(ord={ord})", x.shape, normalize_axis(axis, x.ndim, "norm"))
        return (abs(x).max if ord > 0 else abs(x).min)(axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of non-zeros; its gradient is zero (sign's)
        return abs(sign(x)).sum(axis=axis, keepdims=keepdims)
    if ord == 1:
        return abs(x).sum(axis=axis, keepdims=keepdims)
    axis = normalize_axis(axis, x.ndim, "norm")
    out = wide(x._dev._backend, "vector_norm", x._a, ord, axis, keepdims)
    return record1(_PNORM, x, out, (x, ord, axis, keepdims))

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
