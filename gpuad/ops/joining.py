"""Joining and splitting along an axis: ``concatenate`` and ``stack`` (their VJP rules slice
the gradient back into the pieces; their JVP rules join the tangents, zeros for an input without
one), ``split`` (slices of ``x``, differentiated as indexing), and ``pad`` with a constant (its
VJP rule slices the border off the gradient).
"""
from typing import TYPE_CHECKING

from ..autograd.node import Op
from ..autograd.record import record, record1
from ._args import Default, axis_index, plain, tensors, torch_axis
from .registry import exports, public
from .shape import _tensor, reshape


def _slices(g, axis, bounds):
    lead = (slice(None),) * axis
    return [g[lead + (slice(a, b),)] for a, b in bounds]


def _concat_rule(i):
    return lambda g, axis, bounds: g[(slice(None),) * axis + (slice(*bounds[i]),)]


def _zeros_tangent(ts, shape, like):
    """The tangents ``ts``, with zeros of ``(k,) + shape(i)`` for the inputs that have none."""
    k = next(t.shape[0] for t in ts if t is not None)
    backend = like._dev.backend
    return [t if t is not None else plain(backend.zeros((k,) + shape(i), like.dtype), like._dev)
            for i, t in enumerate(ts)]


def _concat_jvp(ts, y, axis, bounds):
    def shape(i):
        return y.shape[:axis] + (bounds[i][1] - bounds[i][0],) + y.shape[axis + 1:]
    return concatenate(_zeros_tangent(ts, shape, y), axis + 1)


_AXIS0 = Default(0)


@public
def concatenate(seq, axis=_AXIS0, *, dim=None):
    """Join tensors along an existing axis (``axis=None``: flatten them first); their shapes
    must match elsewhere.

    >>> a, b = ad.tensor([[1.0, 2.0]]), ad.tensor([[3.0, 4.0]])
    >>> ad.concatenate([a, b])
    tensor([[1., 2.],
            [3., 4.]])
    >>> ad.concatenate([a, b], axis=1)
    tensor([[1., 2., 3., 4.]])
    """
    ts = tensors(seq, "concatenate")
    axis = torch_axis("concatenate", axis, False, dim, None)[0]
    if axis is None:
        ts, axis = [reshape(t, (-1,)) for t in ts], 0
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("gpuad.concatenate: 0-d tensors have no axis to join along; use "
                         "stack to make a 1-D tensor of them")
    axis = axis_index(axis, nd, "concatenate")
    try:
        out = ts[0]._dev._backend.concatenate([t._a for t in ts], axis=axis)
    except ValueError:
        raise ValueError(
            f"gpuad: concatenate along axis {axis} needs equal shapes elsewhere, got "
            f"{[t.shape for t in ts]}"
        ) from None
    bounds, start = [], 0
    for t in ts:
        bounds.append((start, start + t.shape[axis]))
        start += t.shape[axis]
    op = Op("concatenate", tuple(_concat_rule(i) for i in range(len(ts))), jvp=_concat_jvp)
    return record(op, ts, out, ts[0]._dev, (axis, bounds))


def _stack_rule(i):
    return lambda g, axis: g[(slice(None),) * axis + (i,)]


@public
def stack(seq, axis=_AXIS0, *, dim=None):
    """Join tensors of one shape along a new axis: ``stack(ts, axis)`` indexed at i along
    ``axis`` is ``ts[i]``.

    >>> a, b = ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0])
    >>> ad.stack([a, b])
    tensor([[1., 2.],
            [3., 4.]])
    >>> ad.stack([a, b], axis=1)
    tensor([[1., 3.],
            [2., 4.]])
    """
    ts = tensors(seq, "stack")
    axis = torch_axis("stack", axis, False, dim, None)[0]
    if len({t.shape for t in ts}) != 1:
        raise ValueError(f"gpuad: stack needs tensors of one shape, got {[t.shape for t in ts]}")
    axis = axis_index(axis, ts[0].ndim + 1, "stack")
    out = ts[0]._dev._backend.stack([t._a for t in ts], axis=axis)
    op = Op("stack", tuple(_stack_rule(i) for i in range(len(ts))),
            jvp=lambda ts, y, axis: stack(
                _zeros_tangent(ts, lambda i: y.shape[:axis] + y.shape[axis + 1:], y), axis + 1))
    return record(op, ts, out, ts[0]._dev, (axis,))


@public(method=True)
def split(x, sections_or_indices, axis=0, *, dim=None):
    """Split into equal sections (an int) or at the given indices, as ``numpy.split``: a list
    of tensors, slices of ``x`` along ``axis``.

    >>> ad.split(ad.arange(6), 3)
    [tensor([0, 1]), tensor([2, 3]), tensor([4, 5])]
    >>> ad.split(ad.arange(6), [1, 4])
    [tensor([0]), tensor([1, 2, 3]), tensor([4, 5])]
    """
    x = _tensor(x)
    if dim is not None:
        raise TypeError(
            "gpuad.split follows numpy.split, not torch.split: an int is the number of equal "
            "sections (not their size); call split(x, sections_or_indices, axis=...)")
    axis = axis_index(axis, x.ndim, "split")
    n = x.shape[axis]
    if hasattr(sections_or_indices, "__index__"):
        k = int(sections_or_indices)
        if k <= 0 or n % k:
            raise ValueError(
                f"gpuad: split cannot divide axis {axis} of size {n} into {k} equal sections; "
                "pass a list of split indices instead"
            )
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        cuts = [int(c) for c in sections_or_indices]
    edges = [0] + cuts + [n]
    return _slices(x, axis, list(zip(edges[:-1], edges[1:])))


_PAD = Op("pad", (lambda g, inner: g[inner],),
          jvp=lambda ts, y, inner: pad(ts[0], [(0, 0)] + [(s.start, n - s.stop)
                                                        for s, n in zip(inner, y.shape)]))


@public
def pad(x, pad_width, constant_values=0):
    """Pad with a constant (``numpy.pad``'s constant mode); ``pad_width`` as NumPy takes it:
    (before, after) counts of padding, one pair for every axis or one pair per axis. The
    gradient is the padded gradient's middle, the part where ``x`` was placed.

    >>> ad.pad(ad.tensor([1.0, 2.0]), (1, 2))
    tensor([0., 1., 2., 0., 0.])
    >>> ad.pad(ad.tensor([[1.0]]), 1, constant_values=9.0)
    tensor([[9., 9., 9.],
            [9., 1., 9.],
            [9., 9., 9.]])
    """
    x = _tensor(x)
    backend = x._dev._backend
    widths = [tuple(int(v) for v in w) for w in _pad_widths(pad_width, x.ndim)]
    out = backend.pad(x._a, widths, mode="constant", constant_values=constant_values)
    inner = tuple(slice(lo, lo + s) for (lo, _), s in zip(widths, x.shape))
    return record1(_PAD, x, out, (inner,))


def _pad_widths(pad_width, ndim):
    """NumPy's forms: n, (n,), (before, after), ((before, after),), or one pair per axis."""
    if hasattr(pad_width, "__index__"):
        return [(pad_width, pad_width)] * ndim
    pw = list(pad_width)
    if len(pw) == 1 and hasattr(pw[0], "__index__"):
        return [(pw[0], pw[0])] * ndim
    if len(pw) == 2 and all(hasattr(v, "__index__") for v in pw):
        return [tuple(pw)] * ndim
    if len(pw) == 1:
        return [tuple(pw[0])] * ndim
    if len(pw) != ndim:
        raise ValueError(f"gpuad: pad needs {ndim} (before, after) pairs, got {pad_width}")
    return pw

cat = public(concatenate, name="cat")  # PyTorch's name

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
