"""Copies: to another dtype (``astype``), to new storage (``clone``), to another device
(``to_device``). Each is the identity on values, so its VJP and JVP rules pass the gradient or
tangent through (the engines cast a gradient back to the input's dtype, a tangent to the
output's; ``to_device`` moves it back to the input's device).
"""
from typing import TYPE_CHECKING

from ..autograd.node import Op
from ..autograd.record import record, record1
from ..dtypes import as_dtype
from ._args import plain
from .registry import exports, public
from .shape import _tensor

_ASTYPE = Op("astype", (lambda g: g,), jvp=lambda ts, y: ts[0])


@public(method=True)
def astype(x, dtype):
    """``x`` converted to ``dtype``; differentiable between floating dtypes (floats to
    integers truncate toward zero).

    >>> ad.astype(ad.tensor([1.7, -1.7]), ad.int32)
    tensor([ 1, -1], dtype=int32)
    >>> ad.astype(ad.tensor([1, 2]), ad.float16)
    tensor([1., 2.], dtype=float16)
    """
    x = _tensor(x)
    dtype = as_dtype(dtype, "astype")
    if dtype == x.dtype:
        return x
    out = x._dev._backend.astype(x._a, dtype)
    if dtype.kind != "f":
        return plain(out, x._dev)
    return record1(_ASTYPE, x, out, ())


_CLONE = Op("clone", (lambda g: g,), jvp=lambda ts, y: ts[0])


@public(method=True)
def clone(x):
    """A differentiable copy with its own storage; the gradient passes through unchanged.

    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> y = ad.clone(x)
    >>> y
    tensor([1., 2.], grad_fn=<CloneBackward>)
    >>> y.sum().backward()
    >>> x.grad
    tensor([1., 1.])
    """
    x = _tensor(x)
    return record1(_CLONE, x, x._dev._backend.copy(x._a), ())


_TO_DEVICE = Op("to_device", (lambda g, src: to_device(g, src),),
                jvp=lambda ts, y, src: to_device(ts[0], y._dev))


def to_device(x, dev):
    """``x`` copied to the resolved device ``dev``; the gradient flows back to ``x.device``."""
    if dev.type == "cpu":
        out = x._dev.backend.to_numpy(x._a)
    else:
        out = dev.backend.asarray(x._a)
    return record(_TO_DEVICE, (x,), out, dev, (x._dev,))

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
