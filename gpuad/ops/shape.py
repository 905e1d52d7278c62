"""Shape ops, indexing, casts and device moves.

Ops whose result may share memory with the input (reshape, transpose, basic indexing, ...)
share the input's version counter, so an in-place change through either is seen by backward.

These ops are linear, so each JVP rule applies the op itself to the tangent, with its axes
shifted past the tangent's leading batch axis (indexing moves that axis last instead, where it
cannot disturb NumPy's placement of advanced-index axes: :func:`batched_index`).
"""
from numbers import Integral
from typing import TYPE_CHECKING

from ..autograd.forward import carry, has_tangent
from ..autograd.grad_mode import mode
from ..autograd.node import Op
from ..dtypes import as_dtype
from ..tensor import Tensor, record, record1, tape_tracked
from ._args import (
    Default,
    axes_tuple,
    axis_index,
    mismatch,
    normalize_axis,
    permutation,
    plain,
    shape_arg,
    tensors,
    to_tensor,
    torch_axis,
)
from .registry import exports, public


def _tensor(x):
    return x if isinstance(x, Tensor) else to_tensor(x)


def _as_view(out, x, view, arg):
    """Mark ``out`` as a view of ``x`` when their storage overlaps, or when ``out`` is empty
    (NumPy says that nothing overlaps then; PyTorch's empty views still share the version
    counter).

    ``view(backend, array, arg)`` re-applies the view to an array; applied in turn along the
    chain of views, it maps each element of ``out`` to its position in the base tensor (see
    :func:`view_positions`), which is how in-place changes reach the base's graph and how a
    view's graph is rebuilt after the base changed.
    """
    if x._dev._backend.xp.may_share_memory(out._a, x._a) or not out._a.size:
        out._ver = x._ver
        out._base = x._base if x._base is not None else x
        # a link of the chain of views from the base, not the intermediate tensors
        out._view_of = (x._view_of if x._base is not None else None, view, arg)
        out._view_ver = x._ver[0]
    return out


def view_positions(t):
    """For a view ``t``, the flat index in its base of each of its elements (an int array)."""
    chain = []
    link = t._view_of
    while link is not None:
        link, view, arg = link
        chain.append((view, arg))
    base = t._base
    backend = t._dev._backend
    positions = backend.arange(base._a.size).reshape(base.shape)
    for view, arg in reversed(chain):
        positions = view(backend, positions, arg)
    return positions


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


def _view_reshape(backend, a, shape):
    return a.reshape(shape)


def _view_transpose(backend, a, axes):
    return a.transpose(axes)


def _view_broadcast(backend, a, shape):
    return backend.broadcast_to(a, shape)


def _view_flip(backend, a, axis):
    return backend.flip(a, axis)


def _view_getitem(backend, a, index):
    return a[index]


# ---- reshaping ------------------------------------------------------------------------------
_RESHAPE = Op("reshape", (lambda g, shape: reshape(g, shape),),
              jvp=lambda ts, y, shape: reshape(ts[0], ts[0].shape[:1] + y.shape))


@public
def reshape(x, *shape):
    """``x`` with a new shape (one entry may be -1); accepts ``reshape(x, 2, 3)`` or a tuple."""
    x = _tensor(x)
    shape = shape_arg(shape)
    try:
        out = x._dev._backend.reshape(x._a, shape)
    except ValueError:
        raise ValueError(
            f"gpuad: reshape cannot turn shape {x.shape} ({x.size} elements) into {shape}; "
            "the number of elements must match"
        ) from None
    return _as_view(record1(_RESHAPE, x, out, (x.shape,)), x, _view_reshape, shape)


@public(method=True)
def flatten(x):
    """``x`` as a 1-D tensor."""
    return reshape(x, (-1,))


@public
def squeeze(x, axis=None, *, dim=None):
    """``x`` without the axes ``axis`` (all axes of length 1 when None), which must have
    length 1, as NumPy; with PyTorch's ``dim=``, an axis of another length is kept, as
    PyTorch."""
    x = _tensor(x)
    if dim is not None:
        axis = torch_axis("squeeze", axis, False, dim, None)[0]
    axes = normalize_axis(axis, x.ndim, "squeeze")
    if axes is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        for a in axes:
            if x.shape[a] != 1 and dim is None:
                raise ValueError(
                    f"gpuad.squeeze: cannot remove axis {a} of shape {x.shape}: its size is "
                    f"{x.shape[a]}, not 1 (NumPy's rule; PyTorch's squeeze(dim={a}) keeps "
                    "such an axis: pass dim= for that)"
                )
        shape = tuple(s for i, s in enumerate(x.shape) if i not in axes or x.shape[i] != 1)
    return reshape(x, shape)


@public(method=True)
def expand_dims(x, axis=None, *, dim=None):
    """``x`` with a new axis of length 1 at ``axis`` (each of them, for a tuple)."""
    return inserted(_tensor(x), torch_axis("expand_dims", axis, False, dim, None)[0],
                    "expand_dims")


def inserted(x, axis, op):
    """expand_dims and unsqueeze: ``op`` names the one called, in messages."""
    if axis is None:
        raise TypeError(f"gpuad.{op}: say where the new axis goes: {op}(x, axis)")
    axes = axes_tuple(axis, op)
    nd = x.ndim + len(axes)
    axes = normalize_axis(axes, nd, op)
    it = iter(x.shape)
    return reshape(x, tuple(1 if i in axes else next(it) for i in range(nd)))


_TRANSPOSE = Op("transpose", (lambda g, inverse: transpose(g, inverse),),
                jvp=lambda ts, y, inverse: transpose(ts[0], (0,) + tuple(
                    sorted(range(1, len(inverse) + 1), key=lambda a: inverse[a - 1]))))


@public
def transpose(x, axes=None, dim1=None, *, dim0=None):
    """Permute the axes (reverse them when ``axes`` is None), as ``numpy.transpose``; with two
    axes, ``transpose(x, 0, 1)`` or ``transpose(x, dim0=0, dim1=1)``, swap them, as
    ``torch.transpose``."""
    x = _tensor(x)
    if dim0 is not None or dim1 is not None:
        if (dim0 is None) == (axes is None) or dim1 is None:
            raise TypeError(f"gpuad.transpose: swapping takes two axes, transpose(x, 0, 1) or "
                            f"transpose(x, dim0=0, dim1=1); got axes={axes!r}, dim0={dim0!r}, "
                            f"dim1={dim1!r}")
        return swapped(x, axes if dim0 is None else dim0, dim1, "transpose")
    return permuted(x, axes, "transpose")


def permuted(x, axes, op):
    """``x`` with its axes in the order ``axes`` (None: reversed); ``op`` names the op called
    (transpose, permute), in messages."""
    if axes is None:
        axes = tuple(range(x.ndim - 1, -1, -1))
    else:
        axes = permutation(axes, x.ndim, op)
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    out = record1(_TRANSPOSE, x, x._dev._backend.transpose(x._a, axes), (inverse,))
    return _as_view(out, x, _view_transpose, axes)


@public(method=True)
def swapaxes(x, a, b):
    """``x`` with axes ``a`` and ``b`` exchanged."""
    return swapped(_tensor(x), a, b, "swapaxes")


def swapped(x, a, b, op):
    """swapaxes, and transpose of two axes: ``op`` names the one called, in messages."""
    a, b = axis_index(a, x.ndim, op), axis_index(b, x.ndim, op)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return permuted(x, perm, op)


@public
def moveaxis(x, source, destination):
    """x with axis ``source`` moved to position ``destination``, the others in order (a view;
    NumPy's moveaxis). The gradient moves back."""
    x = _tensor(x)
    source = axis_index(source, x.ndim, "moveaxis")
    destination = axis_index(destination, x.ndim, "moveaxis")
    perm = [i for i in range(x.ndim) if i != source]
    perm.insert(destination, source)
    return transpose(x, perm)


_BROADCAST = Op(
    "broadcast_to", (lambda g, shape: sum_to(g, shape),),
    jvp=lambda ts, y, shape: broadcast_to(
        reshape(ts[0], ts[0].shape[:1] + (1,) * (y.ndim - len(shape)) + shape),
        ts[0].shape[:1] + y.shape),
)


@public(method=True)
def broadcast_to(x, shape):
    """x broadcast to ``shape`` (NumPy's rules: trailing axes match or are 1), a view. The
    gradient is summed back to x's shape."""
    x = _tensor(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    try:
        out = x._dev._backend.broadcast_to(x._a, shape)
    except ValueError:
        raise ValueError(
            f"gpuad: broadcast_to cannot broadcast shape {x.shape} to {shape}; trailing "
            "dimensions must match or be 1"
        ) from None
    return _as_view(record1(_BROADCAST, x, out, (x.shape,)), x, _view_broadcast, shape)


@public
def sum_to(x, shape):
    """Sum ``x`` down to ``shape``: the inverse of broadcasting (used to undo it in backward)."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0 or any(s != 1 and s != x.shape[lead + i] for i, s in enumerate(shape)):
        raise RuntimeError(
            f"gpuad: cannot sum a gradient of shape {x.shape} to shape {shape}; it is not a "
            "broadcast of that shape"
        )
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1
    )
    if axes:
        x = x.sum(axis=axes, keepdims=True)
    return reshape(x, shape) if x.shape != shape else x


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
    """Join tensors along an existing axis (``axis=None``: flatten them first)."""
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
    """Join tensors of one shape along a new axis."""
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
    """Split into equal sections (an int) or at the given indices, as ``numpy.split``."""
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


_FLIP = Op("flip", (lambda g, axis: flip(g, axis),),
           jvp=lambda ts, y, axis: flip(ts[0], tuple(range(1, ts[0].ndim)) if axis is None
                                        else tuple(a + 1 for a in axis)))


@public(method=True)
def flip(x, axis=None, *, dims=None):
    """``x`` reversed along ``axis`` (all axes when None); ``dims`` is PyTorch's name."""
    x = _tensor(x)
    if dims is not None:
        axis = torch_axis("flip", axis, False, dims, None)[0]
    axis = normalize_axis(axis, x.ndim, "flip")
    if x.ndim == 0:
        return x
    out = record1(_FLIP, x, x._dev._backend.flip(x._a, axis), (axis,))
    return _as_view(out, x, _view_flip, axis)


_PAD = Op("pad", (lambda g, inner: g[inner],),
          jvp=lambda ts, y, inner: pad(ts[0], [(0, 0)] + [(s.start, n - s.stop)
                                                        for s, n in zip(inner, y.shape)]))


@public
def pad(x, pad_width, constant_values=0):
    """Pad with a constant (``numpy.pad``'s constant mode); ``pad_width`` as NumPy takes it."""
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


# ---- indexing -------------------------------------------------------------------------------

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
    """TensorFlow's gather_nd: ``indices[..., k]`` index the first k axes of ``params``."""
    params = _tensor(params)
    indices = _indices(indices, params, "gather_nd")
    k = indices.shape[-1]
    idx = tuple(indices._a[..., i] for i in range(k))
    return getitem(params, idx)


@public(method=True)
def take_along_axis(x, indices, axis):
    """Pick values along ``axis`` at ``indices`` (same ndim as ``x``), as NumPy does."""
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


# ---- dtype and device -----------------------------------------------------------------------
# (the engines cast a gradient back to the input's dtype, a tangent to the output's)
_ASTYPE = Op("astype", (lambda g: g,), jvp=lambda ts, y: ts[0])


@public(method=True)
def astype(x, dtype):
    """``x`` converted to ``dtype``; differentiable between floating dtypes."""
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
    """A differentiable copy with its own storage."""
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

cat = public(concatenate, name="cat")  # PyTorch's name

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
