"""Undoing broadcasting and promotion: how a gradient is fitted to the input it is for.

An op that broadcast an input (``x + b`` with ``b`` of shape ``(3,)`` and ``x`` of ``(2, 3)``)
gets an output gradient of the broadcast shape; the input's gradient is its sum over the
broadcast axes (:func:`sum_to`), cast to the input's dtype. The engine does this in one place
(:func:`fit`), for every rule. ``sum_to`` is an op of its own (its array work is the backend's
``sum_to``), recorded like any op, so gradients built under ``create_graph`` stay
differentiable.
"""
from .node import Node, Op, OutputGrads
from .record import record1


def _sum_to_jvp(ts, y, shape):
    """Tangents ``(k,) + shape`` summed down to ``(k,) + y.shape``: the batch axis stays first,
    the axes broadcasting added come right after it."""
    t = ts[0]
    k = t.shape[:1]
    lead = len(shape) - y.ndim
    return sum_to(t, k + (1,) * lead + y.shape).reshape(k + y.shape)


_SUM_TO = Op("sum_to", (lambda g, shape: g.broadcast_to(shape),), jvp=_sum_to_jvp)


def sum_to(x, shape):
    """Sum ``x`` down to ``shape``: the inverse of broadcasting (used to undo it in backward).

    With ``lead = x.ndim - len(shape)``: the sum over the first ``lead`` axes and over every
    axis ``i`` where ``shape[i] == 1 < x.shape[lead + i]``. Its gradient broadcasts back.

    >>> ad.sum_to(ad.ones(2, 3), (3,))  # the sum over axis 0
    tensor([2., 2., 2.])
    >>> ad.sum_to(ad.ones(2, 3), (2, 1))  # the sum over axis 1, kept
    tensor([[3.],
            [3.]])
    """
    shape = tuple(shape)
    if x.shape != shape:
        if not broadcasts(shape, x.shape):
            raise RuntimeError(f"gpuad: cannot sum a gradient of shape {x.shape} to shape "
                               f"{shape}; it is not a broadcast of that shape")
        x = record1(_SUM_TO, x, x._dev._backend.sum_to(x._a, shape), (x.shape,))
    return x


def broadcasts(small, big):
    """Whether shape ``small`` broadcasts to shape ``big`` (a gradient of shape ``big`` then
    sums down to it)."""
    if len(small) > len(big):
        return False
    return all(s in (1, b) for s, b in zip(reversed(small), reversed(big)))


def fit(g, parent):
    """Undo broadcasting and promotion: sum ``g`` down to the parent's shape, cast its dtype."""
    if g.__class__ is OutputGrads:
        return g  # the gradients of a multi-output custom function's outputs
    if parent.__class__ is Node:
        shape, dtype = parent.shape, parent.dtype
    else:
        shape, dtype = parent._a.shape, parent._a.dtype
    if g._a.shape != shape:
        g = sum_to(g, shape)
    if g._a.dtype != dtype:
        g = g.astype(dtype)
    return g
