"""Differentiable selection: ``where`` (one of two values per element) and ``clip``."""
from typing import TYPE_CHECKING

from ..autograd.forward import DIAGONAL
from ..autograd.node import Op
from ..autograd.record import record
from ..tensor import Tensor
from ._args import SCALARS, constant, mismatch, plain, to_tensor
from .registry import exports, public

_WHERE = Op("where", (None, lambda g, c: where(c, g, 0), lambda g, c: where(c, 0, g)),
            jvp=DIAGONAL)


@public
def where(condition, x=None, y=None):
    """``x`` where ``condition`` is true, else ``y`` (broadcast together). With only the
    condition, the indices of its non-zero elements, one int64 tensor per axis (NumPy).
    The gradient goes to ``x`` where the condition holds and to ``y`` elsewhere.

    >>> x = ad.tensor([-1.0, 0.0, 2.0])
    >>> ad.where(x > 0, x, 0.0)
    tensor([0., 0., 2.])
    >>> ad.where(x >= 0)
    (tensor([1, 2]),)
    """
    if x is None and y is None:
        c = condition if isinstance(condition, Tensor) else to_tensor(condition)
        return tuple(plain(i, c._dev) for i in c._dev._backend.nonzero(c._a))
    if x is None or y is None:
        raise TypeError("gpuad.where takes the condition alone, or the condition, x and y")
    items = (condition, x, y)
    dev = next((v._dev for v in items if isinstance(v, Tensor)), None)
    if dev is None:
        condition = to_tensor(condition)
        dev = condition._dev
    raw = []
    conv = []
    for v in (condition, x, y):
        if isinstance(v, Tensor):
            if v._dev is not dev:
                raise mismatch("where", dev, v._dev)
            raw.append(v._a)
            conv.append(v)
        elif v.__class__ in SCALARS:
            raw.append(v)
            conv.append(v)
        else:
            t = constant(v, dev)
            raw.append(t._a)
            conv.append(t)
    condition = conv[0]
    if not isinstance(condition, Tensor):
        condition = constant(condition, dev)
    if condition.dtype.kind != "b":
        condition = condition != 0
        raw[0] = condition._a
    try:
        out = dev._backend.where(*raw)
    except ValueError as exc:
        shapes = [getattr(v, "shape", ()) for v in conv]
        raise ValueError(
            f"gpuad: where cannot broadcast condition, x and y of shapes {shapes} ({exc})"
        ) from None
    return record(_WHERE, (condition, conv[1], conv[2]), out, dev, (condition,))


def _clip_x(g, x, lo, hi):
    keep = None
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is None else keep & (x <= hi)
    return g if keep is None else where(keep, g, 0)


def _clip_lo(g, x, lo, hi):
    """min is active where x < min, unless min > max (then max wins everywhere)."""
    active = x < lo
    if hi is not None:
        active = active & (lo <= hi)
    return where(active, g, 0)


def _clip_hi(g, x, lo, hi):
    """max is active where x > max, and everywhere max < min."""
    active = x > hi
    if lo is not None:
        active = active | (lo > hi)
    return where(active, g, 0)


_CLIP = Op("clip", (_clip_x, _clip_lo, _clip_hi), jvp=DIAGONAL)


@public(method=True)
def clip(x, min=None, max=None, *, a_min=None, a_max=None):
    """``x`` limited to [min, max]; either bound (not both) may be None, a scalar or a tensor
    (NumPy's ``a_min``/``a_max`` keywords also work).

    The gradient reaches ``x`` where min <= x <= max and each bound where it is active.

    >>> ad.clip(ad.tensor([-2.0, 0.5, 3.0]), 0.0, 1.0)
    tensor([0.0000, 0.5000, 1.0000])
    >>> x = ad.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    >>> ad.clip(x, min=0.0).sum().backward()
    >>> x.grad
    tensor([0., 1., 1.])
    """
    min = a_min if min is None else min
    max = a_max if max is None else max
    if min is None and max is None:
        raise TypeError("gpuad.clip (clamp): at least one of min and max must not be None; "
                        "pass a bound, e.g. clip(x, min=0) (or x.clamp(min=0))")
    if not isinstance(x, Tensor):
        x = to_tensor(x, "clip")
    dev = x._dev
    bounds = []
    for b in (min, max):
        if b is None or b.__class__ in SCALARS:
            bounds.append(b)
        elif isinstance(b, Tensor):
            if b._dev is not dev:
                raise mismatch("clip", dev, b._dev)
            bounds.append(b)
        else:
            bounds.append(constant(b, dev))
    lo, hi = bounds
    raw = [b._a if isinstance(b, Tensor) else b for b in bounds]
    out = dev._backend.clip(x._a, raw[0], raw[1])
    return record(_CLIP, (x, lo, hi), out, dev, (x, lo, hi))



clamp = public(clip, name="clamp", method=True)  # PyTorch's name

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
