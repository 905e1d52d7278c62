"""Turning Python values into graph-free tensors: constants, shapes, and the refusal to mix
devices. Used by creation, the autograd engines (a gradient handed over as an array) and the
ops alike, so it sits just above the Tensor."""
from .dtypes import NUMERIC, infer_dtype
from .errors import DeviceMismatchError
from .tensor import Tensor


def mismatch(op, a, b):
    """The error for op ``op`` given tensors on the devices ``a`` and ``b``."""
    return DeviceMismatchError(
        f"gpuad: {op} got tensors on different devices: {a} and {b}; move one explicitly, "
        f"e.g. other.to({str(a)!r}); gpuad never moves data between devices implicitly"
    )


def constant(value, dev, like=None):
    """``value`` (NumPy array, list, NumPy scalar) as a graph-free tensor on ``dev``.

    A list of Python numbers takes gpuad's defaults (float32, int64), or, next to a floating
    tensor ``like``, that tensor's dtype (Python numbers are weak, in lists too)."""
    if dev.type != "cpu" and type(value).__module__ == "numpy" and getattr(value, "ndim", 0):
        raise DeviceMismatchError(
            f"gpuad: a NumPy array (on the cpu) was combined with a tensor on {dev}; convert "
            f"it explicitly with ad.tensor(array, device={str(dev)!r})"
        )
    try:
        dtype = None
        if not hasattr(value, "dtype"):
            dtype = infer_dtype(value)
            if like is not None and like.dtype.kind == "f" and dtype.kind in "fi":
                dtype = like.dtype
        a = dev.backend.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"gpuad: cannot use a {type(value).__name__} as a tensor operand: "
                        f"{exc}") from None
    if a.dtype.kind not in NUMERIC:
        raise TypeError(
            f"gpuad: cannot use a {type(value).__name__} ({a.dtype}) as a tensor operand; "
            "operands are tensors, numbers or numeric arrays"
        )
    return Tensor(a, dev)


def shape_arg(shape):
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and not hasattr(shape[0], "__index__"):
        if not hasattr(shape[0], "__iter__"):
            raise TypeError(f"gpuad: a shape is ints or a tuple of ints, got {shape[0]!r}")
        shape = shape[0]
    for s in shape:
        if not hasattr(s, "__index__"):
            raise TypeError(f"gpuad: a shape is ints or a tuple of ints, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)
