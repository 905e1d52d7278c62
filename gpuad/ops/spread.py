"""The reductions that square: var, std and the vector p-norms. Their values come from the
backend's scaled forms (x divided by a power of two near max|x|), so no square, sum or mean
overflows or underflows on the way; the rules use ratios ((x - mean) / std, |x| / ||x||) for the
same reason.
"""
import math

from ..autograd.node import Op
from ..tensor import Tensor, record1
from ._args import DDOF, NO_DIM, normalize_axis, plain, to_tensor, torch_axis, torch_spread
from ._reduce import check_extremum, expand, last_axes, n_reduced, wide
from .elementwise import abs, sign, where


def _centered(x, axis):
    """x - mean(x), the mean taken of x / s times s (s a constant power of two near max|x|,
    an exact scaling), so the sum does not overflow: float32 [3e38, 3e38] gives [0, 0]."""
    s = plain(x._dev._backend.pow2_scale(x._a, axis), x._dev)
    return x - (x / s).mean(axis=axis, keepdims=True) * s


def _dof(shape, axis, ddof):
    """The degrees of freedom N - ddof, at least 0 (NumPy and PyTorch: var is then x/0)."""
    dof = n_reduced(shape, axis) - ddof
    return dof if dof > 0 else 0  # (max here is the reduction)


def _spread_jvp(ts, x, axis, ddof, keepdims):
    """d sum((x - mean)^2) / (N - ddof) along t, halved: sum((x - mean) t) / (N - ddof)."""
    return ((ts[0] * _centered(x, axis)).sum(axis=last_axes(axis, x.ndim), keepdims=keepdims)
            / _dof(x.shape, axis, ddof))


def _two_over(dof):
    """2 / dof as a float: inf at no degrees of freedom (then nan times a zero spread, or
    inf, as PyTorch), not ZeroDivisionError."""
    return 2.0 / dof if dof else math.inf


_VAR = Op("var", (lambda g, x, axis, ddof, keepdims: expand(g, x.shape, axis, keepdims)
                  * _centered(x, axis) * _two_over(_dof(x.shape, axis, ddof)),),
          jvp=lambda ts, y, x, axis, ddof, keepdims: _spread_jvp(ts, x, axis, ddof, keepdims) * 2)


def _standardized(y, x, axis, keepdims):
    """(x - mean) / std, and where std is zero (True) in the second place. The ratio is at
    most sqrt(N), so a tiny std does not overflow the rule (1 / std would, in float16)."""
    ye = expand(y, x.shape, axis, keepdims)
    zero = ye == 0
    return _centered(x, axis) / where(zero, 1, ye), zero


def _std_rule(g, y, x, axis, ddof, keepdims):
    """d std/dx = (x - mean) / (std (N - ddof)); 0 where the spread is zero (PyTorch's
    convention; masked as a whole, so its own derivative there is 0 too)."""
    z, zero = _standardized(y, x, axis, keepdims)
    return where(zero, 0, expand(g, x.shape, axis, keepdims) * z / _dof(x.shape, axis, ddof))


def _std_jvp(ts, y, x, axis, ddof, keepdims):
    z, _ = _standardized(y, x, axis, keepdims)
    return where(y == 0, 0, (ts[0] * z).sum(axis=last_axes(axis, x.ndim), keepdims=keepdims)
                 / _dof(x.shape, axis, ddof))


_STD = Op("std", (_std_rule,), jvp=_std_jvp, save_out=True)


def _spread(method, x, axis, ddof, keepdims):
    """The backend's var or std: scaled, so the mean and the squares do not overflow; with
    no degrees of freedom (N - ddof <= 0, an empty tensor included) sum((x - mean)^2) / 0
    (inf, or nan where N or the sum is 0, as NumPy and PyTorch), without warnings."""
    return wide(getattr(x._dev._backend, method), x._a, axis=axis, ddof=ddof,
                 keepdims=keepdims)


def var(x, axis=None, ddof=DDOF, keepdims=False, *, dim=NO_DIM, keepdim=None,
        correction=None, unbiased=None):
    """mean((x - mean(x))^2) with N - ddof in the denominator."""
    x = x if isinstance(x, Tensor) else to_tensor(x, "var")
    if (dim is not NO_DIM or keepdim is not None or correction is not None
            or unbiased is not None):
        axis, ddof, keepdims = torch_spread("var", axis, ddof, keepdims, dim, keepdim,
                                            correction, unbiased)
    axis = normalize_axis(axis, x.ndim, "var")
    out = _spread("var", x, axis, ddof, keepdims)
    return record1(_VAR, x, out, (x, axis, ddof, keepdims))


def std(x, axis=None, ddof=DDOF, keepdims=False, *, dim=NO_DIM, keepdim=None,
        correction=None, unbiased=None):
    """sqrt(var(x)); its derivative is 0 where the spread is zero (as in PyTorch)."""
    x = x if isinstance(x, Tensor) else to_tensor(x, "std")
    if (dim is not NO_DIM or keepdim is not None or correction is not None
            or unbiased is not None):
        axis, ddof, keepdims = torch_spread("std", axis, ddof, keepdims, dim, keepdim,
                                            correction, unbiased)
    axis = normalize_axis(axis, x.ndim, "std")
    out = _spread("std", x, axis, ddof, keepdims)
    return record1(_STD, x, out, (x, axis, ddof, keepdims))


# ---- vector norms ---------------------------------------------------------------------------

def _pnorm_dir(y, x, p, axis, keepdims):
    """d||x||_p/dx = sign(x) (|x| / ||x||)^(p-1), from the ratio |x| / ||x|| (at most 1 for
    p >= 1), so no power of |x| or of the norm overflows before the result does. Zero where
    the norm is zero, and (for p < 1, where |x|^(p-1) is infinite) where x is zero, as in
    PyTorch."""
    ye = expand(y, x.shape, axis, keepdims)
    zero = ye == 0
    safe = where(zero, 1, ye)
    if p == 2:
        return where(zero, 0, x / safe)
    if p < 1:
        return where(x == 0, 0, sign(x) * abs(where(x == 0, 1, x) / safe) ** (p - 1))
    return sign(x) * abs(x / safe) ** (p - 1)


_PNORM = Op("norm", (lambda g, y, x, p, axis, keepdims: expand(g, x.shape, axis, keepdims)
                     * _pnorm_dir(y, x, p, axis, keepdims),), save_out=True,
            jvp=lambda ts, y, x, p, axis, keepdims: (ts[0] * _pnorm_dir(y, x, p, axis, keepdims))
            .sum(axis=last_axes(axis, x.ndim), keepdims=keepdims))


def norm(x, ord=2, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The vector p-norm of the elements along ``axis`` (all elements when None).

    ``ord``: any p != 0 (2 by default, "fro" is 2; negative p as NumPy), inf (max |x|), -inf
    (min |x|), 0 (count of non-zeros). The gradient at the zero vector is zero (PyTorch's
    convention).
    """
    x = x if isinstance(x, Tensor) else to_tensor(x, "norm")
    if dim is not None or keepdim is not None:
        axis, keepdims = torch_axis("norm", axis, keepdims, dim, keepdim)
    if ord in (None, "fro"):
        ord = 2
    if isinstance(ord, str):
        raise ValueError(f"gpuad.norm: ord={ord!r} is not supported; use a number, inf or 'fro'")
    if ord in (math.inf, -math.inf):
        check_extremum(f"norm(ord={ord})", x.shape, normalize_axis(axis, x.ndim, "norm"))
        return (abs(x).max if ord > 0 else abs(x).min)(axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of non-zeros; its gradient is zero (sign's)
        return abs(sign(x)).sum(axis=axis, keepdims=keepdims)
    if ord == 1:
        return abs(x).sum(axis=axis, keepdims=keepdims)
    axis = normalize_axis(axis, x.ndim, "norm")
    out = wide(x._dev._backend.vector_norm, x._a, ord, axis, keepdims)
    return record1(_PNORM, x, out, (x, ord, axis, keepdims))
