"""Jacobians one row at a time: the one-hot seeds of the backward passes and the stacking of
their results. The gradient tape and ``jacobian`` take this way through graphs whose backward
runs user code (custom gradients, hooks), which a batched pass could not see through."""
from ..ops.joining import stack
from ..ops.shape import reshape
from ..tensor import Tensor
from .linearize import zeros


def one_hots(y, count, batch=None):
    """Seeds selecting one element of ``y`` each (with ``batch``: that element of every
    example at once)."""
    backend = y._dev.backend
    for i in range(count):
        if batch is None:
            a = backend.zeros(y.size, dtype=y.dtype)
            backend.setitem(a, i, 1)
        else:
            a = backend.zeros((batch, count), dtype=y.dtype)
            backend.setitem(a, (slice(None), i), 1)
        yield Tensor(a.reshape(y.shape), y._dev)


def example_directions(y, count, batch):
    """The seeds of :func:`one_hots` with ``batch``, stacked: ``(count,) + y.shape``."""
    backend = y._dev.backend
    eye = backend.eye(count, dtype=y.dtype).reshape(count, 1, count)
    return backend.broadcast_to(eye, (count, batch, count)).reshape((count,) + y.shape)


def stack_rows(rows, source, shape, axis, zero):
    """Jacobian rows (each shaped like ``source``; None where unconnected) stacked on ``axis``
    and reshaped to ``shape``. None when no row is connected (zeros with ``zero``)."""
    connected = [r for r in rows if r is not None]
    if not rows or (not connected and zero and source.dtype.kind == "f"):
        return Tensor(source._dev.backend.zeros(shape, dtype=source.dtype), source._dev)
    if not connected:
        return None
    rows = [zeros(source.shape, source) if r is None else r for r in rows]
    return reshape(stack(rows, axis), shape)


def or_zeros(g, source, zero, shape=None):
    """The result handed back: ``g``, or for an unconnected (None) floating-point source with
    ``zero``, zeros of ``shape`` (by default the source's)."""
    if g is None and zero and source.dtype.kind == "f":
        return zeros(source.shape if shape is None else shape, source)
    return g
