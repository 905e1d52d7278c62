"""Views and reshaping: ops whose result may share memory with the input (reshape, transpose,
broadcast_to, flip, and basic indexing in :mod:`.indexing`) share the input's version counter,
so an in-place change through either is seen by backward.

These ops are linear, so each JVP rule applies the op itself to the tangent, with its axes
shifted past the tangent's leading batch axis.
"""
from typing import TYPE_CHECKING

from ..autograd.node import Op
from ..autograd.record import record1
from ..autograd.unbroadcast import sum_to
from ..tensor import Tensor
from ._args import (
    axes_tuple,
    axis_index,
    normalize_axis,
    permutation,
    shape_arg,
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


def _view_reshape(backend, a, shape):
    return backend.reshape(a, shape)


def _view_transpose(backend, a, axes):
    return a.transpose(axes)


def _view_broadcast(backend, a, shape):
    return backend.broadcast_to(a, shape)


def _view_flip(backend, a, axis):
    return backend.flip(a, axis)




# ---- reshaping ------------------------------------------------------------------------------
_RESHAPE = Op("reshape", (lambda g, shape: reshape(g, shape),),
              jvp=lambda ts, y, shape: reshape(ts[0], ts[0].shape[:1] + y.shape))


@public
def reshape(x, *shape):
    """``x`` with a new shape (one entry may be -1); accepts ``reshape(x, 2, 3)`` or a tuple.
    The elements keep their row-major (C) order.

    >>> ad.reshape(ad.arange(6), (2, 3))
    tensor([[0, 1, 2],
            [3, 4, 5]])
    >>> ad.reshape(ad.arange(6), 3, -1).shape
    (3, 2)
    """
    x = _tensor(x)
    shape = shape_arg(shape)
    return _reshaped(_RESHAPE, _view_reshape, x, shape, lambda: (
        f"reshape cannot turn shape {x.shape} ({x.size} elements) into {shape}; the number of "
        "elements must match"))


def _reshaped(op, view, x, shape, message):
    """``view`` (reshape, broadcast_to) applied to ``x``, recorded as ``op`` and marked as a view
    of ``x``; a shape the backend refuses raises a ValueError saying ``message()``."""
    try:
        out = view(x._dev._backend, x._a, shape)
    except ValueError:
        raise ValueError(f"gpuad: {message()}") from None
    return _as_view(record1(op, x, out, (x.shape,)), x, view, shape)


@public(method=True)
def flatten(x):
    """``x`` as a 1-D tensor, its elements in row-major (C) order.

    >>> ad.flatten(ad.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([1., 2., 3., 4.])
    """
    return reshape(x, (-1,))


@public
def squeeze(x, axis=None, *, dim=None):
    """``x`` without the axes ``axis`` (all axes of length 1 when None), which must have
    length 1, as NumPy; with PyTorch's ``dim=``, an axis of another length is kept, as
    PyTorch.

    >>> ad.squeeze(ad.zeros((1, 3, 1))).shape
    (3,)
    >>> ad.squeeze(ad.zeros((1, 3, 1)), axis=0).shape
    (3, 1)
    """
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
    """``x`` with a new axis of length 1 at ``axis`` (each of them, for a tuple).

    >>> ad.expand_dims(ad.tensor([1.0, 2.0]), 0)
    tensor([[1., 2.]])
    >>> ad.expand_dims(ad.tensor([1.0, 2.0]), -1)
    tensor([[1.],
            [2.]])
    """
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
    ``torch.transpose``. Axis i of the result is axis ``axes[i]`` of x.

    >>> ad.transpose(ad.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    tensor([[1., 4.],
            [2., 5.],
            [3., 6.]])
    >>> ad.transpose(ad.zeros((2, 3, 4)), (1, 2, 0)).shape
    (3, 4, 2)
    """
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
    """``x`` with axes ``a`` and ``b`` exchanged.

    >>> ad.swapaxes(ad.tensor([[1.0, 2.0, 3.0]]), 0, 1)
    tensor([[1.],
            [2.],
            [3.]])
    """
    return swapped(_tensor(x), a, b, "swapaxes")


def swapped(x, a, b, op):
    """swapaxes, and transpose of two axes: ``op`` names the one called, in messages."""
    a, b = axis_index(a, x.ndim, op), axis_index(b, x.ndim, op)
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return permuted(x, perm, op)


@public
def moveaxis(x, source, destination):
    """``x`` with axis ``source`` moved to position ``destination``, the others in order.

    >>> ad.moveaxis(ad.zeros((2, 3, 4)), 0, -1).shape
    (3, 4, 2)
    """
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
    """``x`` repeated along axes of length 1 (and new leading axes) to ``shape``, as a view;
    its gradient is summed back (:func:`sum_to`).

    >>> ad.broadcast_to(ad.tensor([1.0, 2.0]), (2, 2))
    tensor([[1., 2.],
            [1., 2.]])
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> ad.broadcast_to(x, (3, 2)).sum().backward()
    >>> x.grad
    tensor([3., 3.])
    """
    x = _tensor(x)
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return _reshaped(_BROADCAST, _view_broadcast, x, shape, lambda: (
        f"broadcast_to cannot broadcast shape {x.shape} to {shape}; trailing dimensions must "
        "match or be 1"))


public(sum_to)  # (defined in the autograd core, which undoes broadcasting with it)

_FLIP = Op("flip", (lambda g, axis: flip(g, axis),),
           jvp=lambda ts, y, axis: flip(ts[0], tuple(range(1, ts[0].ndim)) if axis is None
                                        else tuple(a + 1 for a in axis)))


@public(method=True)
def flip(x, axis=None, *, dims=None):
    """``x`` reversed along ``axis`` (all axes when None); ``dims`` is PyTorch's name.

    >>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.flip(x, axis=1)
    tensor([[2., 1.],
            [4., 3.]])
    >>> ad.flip(x)
    tensor([[4., 3.],
            [2., 1.]])
    """
    x = _tensor(x)
    if dims is not None:
        axis = torch_axis("flip", axis, False, dims, None)[0]
    axis = normalize_axis(axis, x.ndim, "flip")
    if x.ndim == 0:
        return x
    out = record1(_FLIP, x, x._dev._backend.flip(x._a, axis), (axis,))
    return _as_view(out, x, _view_flip, axis)

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
