"""Indexing and gathering: ``x[index]`` (a view for a basic index), ``index_add``, its
transpose, ``gather_nd`` and ``take_along_axis``; and the rebuilding of a view's graph from its
base, which indexes the base.

These ops are linear; a JVP rule indexes the tangent with its batch axis moved last, where it
cannot disturb NumPy's placement of advanced-index axes (:func:`batched_index`).
"""
from numbers import Integral
from typing import TYPE_CHECKING

from ..autograd.forward import carry, has_tangent
from ..autograd.grad_mode import mode
from ..autograd.node import Op
from ..autograd.record import record1, tape_tracked
from ..tensor import Tensor
from ._args import axis_index, mismatch, plain
from .registry import exports, public
from .shape import _as_view, _tensor, moveaxis, reshape, view_positions


def refresh_view(t):
    """Rebuild the graph of view ``t`` from its base, after an in-place change through the base
    or through another view made it stale: t = base.flat[positions]. Only while something
    records (grad mode on, and the base requires grad or a recording tape watches it); the
    view's forward-mode tangents are rebuilt likewise whenever the base has some."""
    base = t._base
    graph = mode.enabled and (base._rg or (mode.tapes and tape_tracked(base)))
    tangents = mode.levels and (has_tangent(base) or has_tangent(t))
    if graph or tangents:
        fresh = getitem(reshape(base, (-1,)), (view_positions(t),))
        if tangents:
            carry(t, dict(getattr(fresh, "_tan", None) or {}))
        if graph:
            t._view_ver = t._ver[0]
            t._grad_fn, t._rg = fresh._grad_fn, fresh._rg
    if not graph and base._grad_fn is None and not base._rg:
        t._view_ver = t._ver[0]  # no graph to rebuild; else it stays stale until one records


def _view_getitem(backend, a, index):
    return a[index]

def _index(index, x):
    """Normalise an index for the backend: tensors and lists become arrays, boolean masks their
    integer positions, and integer scalars (NumPy's, or 0-d integer tensors, as PyTorch takes
    them) Python ints. Returns ``(index, advanced)``."""
    if not isinstance(index, tuple):
        index = (index,)
    backend = x._dev._backend
    out, advanced = [], False
    for item in index:
        if isinstance(item, Tensor):
            if item._a.ndim == 0 and item._a.dtype.kind in "iu":
                out.append(int(item.item()))
                continue
            if item._dev is not x._dev:
                raise mismatch("indexing", x._dev, item._dev)
            arr = item._a
        elif isinstance(item, list) or hasattr(item, "__array_interface__") \
                or hasattr(item, "__cuda_array_interface__"):
            if getattr(item, "ndim", 1) == 0 and isinstance(item, Integral):  # NumPy's int
                out.append(int(item))
                continue
            arr = backend.asarray(item)
            if arr.size == 0 and arr.dtype.kind == "f":  # x[[]] selects nothing
                arr = arr.astype("int64")
        else:
            out.append(item)
            continue
        advanced = True
        if arr.dtype.kind == "b" and arr.ndim:
            out.extend(backend.nonzero(arr))
        elif arr.dtype.kind == "b":
            out.append(arr)
        elif arr.dtype.kind in "iu":
            out.append(arr)
        else:
            raise IndexError(
                f"gpuad: tensors used as indices must be integer or boolean, got {arr.dtype}"
            )
    if advanced:
        _check_bounds(out, x)
    return tuple(out), advanced


def _check_bounds(index, x):
    """Check each integer index array against the axis it indexes (CuPy would wrap around)."""
    backend = x._dev._backend
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    axis = 0
    for item in index:
        if item is None:
            continue
        if item is Ellipsis:
            axis += x.ndim - consumed
            continue
        if hasattr(item, "dtype") and item.dtype.kind in "iu" and axis < x.ndim:
            backend.check_indices(item, x.shape[axis], axis)
        axis += 1


def batched_index(index, ndim):
    """A normalised ``index`` into an ``ndim``-dimensional value, extended to index the same
    value with one more axis at the end (a tangent's batch axis moved last), which it keeps
    last: the ellipsis and the implicit trailing axes are spelled out as slices."""
    consumed = sum(1 for i in index if not (
        i is None or i is Ellipsis or i is True or i is False
        or (getattr(i, "dtype", None) is not None and i.dtype.kind == "b" and i.ndim == 0)))
    rest = (slice(None),) * (ndim - consumed)
    at = next((n for n, i in enumerate(index) if i is Ellipsis), None)
    if at is None:
        return index + rest + (slice(None),)
    return index[:at] + rest + index[at + 1:] + (slice(None),)


def _batch_last(fn, t, *args):
    """``fn`` applied to tangent ``t`` with its batch axis moved last, and moved back."""
    return moveaxis(fn(moveaxis(t, 0, -1), *args), -1, 0)


_GETITEM = Op("getitem", (lambda g, shape, index, advanced:
                          index_add(g, shape, index, advanced),),
              jvp=lambda ts, y, shape, index, advanced:
              _batch_last(getitem, ts[0], batched_index(index, len(shape))))


def getitem(x, index):
    """``x[index]``: basic slicing, integer arrays and boolean masks, with gradients.

    A basic index (ints, slices, None, Ellipsis) gives a view, as in PyTorch, also when it
    picks a single element: NumPy returns a scalar copy for ``a[0, 1]``, so that index is
    taken again as ``a[0, 1, ...]``, NumPy's 0-d view (CuPy's ``a[0, 1]`` is one already)."""
    if x.__class__ is not Tensor:
        x = _tensor(x)
    idx, advanced = _index(index, x)
    backend = x._dev._backend
    try:
        out = backend.getitem(x._a, idx)
        if out.__class__ is not backend.array_type and not advanced:
            idx += (Ellipsis,)
            out = backend.getitem(x._a, idx)
    except IndexError as exc:
        raise IndexError(f"gpuad: index {index!r} is invalid for shape {x.shape}: {exc}") from None
    t = record1(_GETITEM, x, out, (x.shape, idx, advanced))
    if advanced:
        return t
    if not out.size and any(i.__class__ is bool for i in idx):
        return t  # a copy (NumPy takes a Python bool as an advanced index)
    return _as_view(t, x, _view_getitem, idx)


_INDEX_ADD = Op("index_add", (lambda g, shape, index, advanced: g[index],),
                jvp=lambda ts, y, shape, index, advanced:
                _batch_last(index_add, ts[0], shape + ts[0].shape[:1],
                            batched_index(index, len(shape)), advanced))


def index_add(values, shape, index, advanced=True):
    """zeros(shape) with ``values`` added at ``index`` (repeated indices accumulate)."""
    backend = values._dev._backend
    out = backend.index_add(shape, values.dtype, index, values._a, advanced)
    return record1(_INDEX_ADD, values, out, (shape, index, advanced))


def _indices(indices, x, op):
    """Integer index data for ``x``: a tensor on x's device, or host data (lists, arrays),
    which may be copied to the device since it only says where to read."""
    if isinstance(indices, Tensor):
        if indices._dev is not x._dev:
            raise mismatch(op, x._dev, indices._dev)
        t = indices
    else:
        t = plain(x._dev.backend.asarray(indices), x._dev)
    if t.dtype.kind not in "iu":
        raise IndexError(f"gpuad: {op} needs integer indices, got {t.dtype}")
    return t


@public
def gather_nd(params, indices):
    """TensorFlow's gather_nd: the last axis of ``indices``, of length k, holds indices into
    the first k axes of ``params``: out[i...] = params[indices[i..., 0], ..., indices[i..., k-1]].

    >>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.gather_nd(x, [[0, 1], [1, 0]])
    tensor([2., 3.])
    >>> ad.gather_nd(x, [[1]])
    tensor([[3., 4.]])
    """
    params = _tensor(params)
    indices = _indices(indices, params, "gather_nd")
    k = indices.shape[-1]
    idx = tuple(indices._a[..., i] for i in range(k))
    return getitem(params, idx)


@public(method=True)
def take_along_axis(x, indices, axis):
    """Pick values along ``axis`` at ``indices`` (same ndim as ``x``), as NumPy does: along
    axis 1 of a 2-D x, out[i, j] = x[i, indices[i, j]].

    >>> x = ad.tensor([[10.0, 30.0, 20.0], [60.0, 40.0, 50.0]])
    >>> ad.take_along_axis(x, ad.tensor([[1], [0]]), axis=1)
    tensor([[30.],
            [60.]])
    """
    x = _tensor(x)
    backend = x._dev._backend
    idx = _indices(indices, x, "take_along_axis")._a
    if axis is None:
        x, idx = reshape(x, (-1,)), idx.reshape(-1)
        axis = 0
    axis = axis_index(axis, x.ndim, "take_along_axis")
    if idx.ndim != x.ndim:
        raise ValueError(
            f"gpuad: take_along_axis needs indices with {x.ndim} dims like x, got shape "
            f"{idx.shape}"
        )
    full = []
    for d in range(x.ndim):
        if d == axis:
            full.append(idx)
        else:
            shape = [1] * x.ndim
            shape[d] = x.shape[d]
            full.append(backend.arange(x.shape[d]).reshape(shape))
    return getitem(x, tuple(full))

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
