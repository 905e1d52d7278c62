"""What the reductions share: the reduced axes' shape and count, broadcasting a reduced
value back, the axes of a tangent with a batch axis, float16 computed in float32, and the error
for max/min over nothing."""
import math

from ..dtypes import float16, float32
from .shape import broadcast_to, reshape


def kept_shape(shape, axis):
    """``shape`` with the reduced axes set to 1."""
    if axis is None:
        return (1,) * len(shape)
    return tuple(1 if i in axis else s for i, s in enumerate(shape))


def expand(g, shape, axis, keepdims):
    """Broadcast a reduced value back over the axes it was reduced along."""
    if not keepdims and g.ndim:  # (a 0-d value broadcasts as it is)
        g = reshape(g, kept_shape(shape, axis))
    return broadcast_to(g, shape)


def last_axes(axis, ndim):
    """The reduced axes of an ``ndim``-dimensional value, counted from the end (negative), so
    they also name them in a tangent with a leading batch axis."""
    return tuple(range(-ndim, 0)) if axis is None else tuple(a - ndim for a in axis)


def wide(backend, method, a, *args, **kwargs):
    """``backend.<method>(a, ...)``, computed in float32 when ``a`` is float16 (no overflow of
    squares and sums past 65504), with the result cast back; the casts are the backend's too,
    so they run on its device."""
    fn = getattr(backend, method)
    if a.dtype == float16:
        return backend.astype(fn(backend.astype(a, float32), *args, **kwargs), float16)
    return fn(a, *args, **kwargs)


def n_reduced(shape, axis):
    return math.prod(shape) if axis is None else math.prod(shape[i] for i in axis)


def check_extremum(name, shape, axis):
    """max and min have no value over zero elements: refuse an empty reduced axis (other
    axes may be empty: the result is then empty too, as in NumPy and PyTorch)."""
    if n_reduced(shape, axis) == 0:
        along = "" if axis is None else f" along axes {axis} of length 0"
        raise ValueError(f"gpuad: {name} of an empty tensor (shape {shape}){along} has no "
                         "value; check the input is not empty, or reduce along a non-empty axis")
