"""Argument handling shared by the ops: turning inputs into tensors or raw backend values."""
from ..convert import constant, mismatch, shape_arg  # noqa: F401  (the ops' argument helpers)
from ..creation import tensor
from ..tensor import Tensor

#: Python scalars pass to the backend as they are, so NumPy 2's weak-scalar promotion (NEP 50)
#: applies: ``float32_tensor * 0.5`` stays float32.
SCALARS = (int, float, bool)


def to_tensor(value, op=None):
    """A tensor for a non-tensor op argument, on the default device; ``op`` names the op in
    the message when ``value`` cannot be one."""
    if op is None:
        return tensor(value)
    try:
        return tensor(value)
    except TypeError as exc:
        raise TypeError(str(exc).replace("gpuad.tensor:", f"gpuad.{op}:", 1)) from None


def operands(a, b, op):
    """``(a, b, raw_a, raw_b, device)`` for a two-input op.

    Tensors must share a device. Python scalars stay raw (weak typing); NumPy arrays, NumPy
    scalars and lists become constant tensors on the other operand's device.
    """
    if a.__class__ is Tensor or isinstance(a, Tensor):  # (a Variable is a Tensor too)
        dev = a._dev
        if b.__class__ in SCALARS:
            return a, b, a._a, b, dev
        if isinstance(b, Tensor):
            if b._dev is not dev:
                raise mismatch(op, dev, b._dev)
            return a, b, a._a, b._a, dev
        b = constant(b, dev, a)
        return a, b, a._a, b._a, dev
    if isinstance(b, Tensor):
        dev = b._dev
        if a.__class__ in SCALARS:
            return a, b, a, b._a, dev
        a = constant(a, dev, b)
        return a, b, a._a, b._a, dev
    return operands(to_tensor(a, op), b, op)


def tensors(values, op):
    """A list of tensors on one device from a sequence of tensors (and array-likes)."""
    values = list(values)
    if not values:
        raise ValueError(f"gpuad: {op} needs at least one tensor")
    first = next((v for v in values if isinstance(v, Tensor)), None)
    if first is None:
        return [to_tensor(v, op) for v in values]
    dev = first._dev
    out = []
    for v in values:
        if isinstance(v, Tensor):
            if v._dev is not dev:
                raise mismatch(op, dev, v._dev)
            out.append(v)
        else:
            out.append(constant(v, dev))
    return out


def plain(a, dev):
    """A graph-free tensor for an array result (0-d NumPy scalars become arrays)."""
    backend = dev.backend
    if a.__class__ is not backend.array_type:
        a = backend.asarray(a)
    return Tensor(a, dev)


try:
    from numpy.exceptions import AxisError  # NumPy 2 (a ValueError and an IndexError)
except ImportError:  # NumPy 1.26
    from numpy import AxisError


def axis_index(axis, ndim, op, whole=False):
    """One axis of an ``ndim``-dimensional tensor as an int in [0, ndim): an integer in
    [-ndim, ndim), else a TypeError (not an integer) or AxisError (out of range). ``whole``:
    a 0-d tensor takes axis 0 or -1, meaning the whole of it (PyTorch's rule), as 0."""
    if not hasattr(axis, "__index__") or axis.__class__ is bool:
        raise TypeError(f"gpuad.{op}: an axis is an int, got {axis!r} "
                        f"({type(axis).__name__})")
    ax = axis.__index__()
    n = 1 if whole and ndim == 0 else ndim
    if not -n <= ax < n:
        valid = f"valid: {-n}..{n - 1}" if n else "it has no axes"
        raise AxisError(f"gpuad.{op}: axis {ax} is out of range for a tensor with {ndim} "
                        f"dimensions ({valid})")
    return ax % n


def axes_tuple(axis, op):
    """``axis`` (an int or a sequence of them) as a tuple, unchecked."""
    if hasattr(axis, "__index__"):
        return (axis,)
    if isinstance(axis, (str, bytes)) or not hasattr(axis, "__iter__"):
        raise TypeError(f"gpuad.{op}: axis is an int or a tuple of ints, got {axis!r} "
                        f"({type(axis).__name__})")
    return tuple(axis)


def normalize_axis(axis, ndim, op):
    """``axis`` (None, int or sequence) as None or a sorted tuple of non-negative ints. A 0-d
    tensor takes axis 0 or -1, which is the whole of it (as in PyTorch)."""
    if axis is None:
        return None
    if axis.__class__ is int and -ndim <= axis < ndim:  # (the common case, inline)
        return (axis % ndim,)
    out = [axis_index(ax, ndim, op, whole=True) for ax in axes_tuple(axis, op)]
    if len(set(out)) != len(out):
        raise ValueError(f"gpuad.{op}: repeated axis in {axis}")
    if ndim == 0:
        return None
    return tuple(sorted(out))


def permutation(axes, ndim, op):
    """``axes`` as a permutation of range(ndim) (each in [-ndim, ndim), each once)."""
    perm = tuple(ax % ndim if ax.__class__ is int and -ndim <= ax < ndim
                 else axis_index(ax, ndim, op) for ax in axes_tuple(axes, op))
    if sorted(perm) != list(range(ndim)):
        raise ValueError(f"gpuad.{op}: axes {tuple(axes)} are not a permutation of the {ndim} "
                         f"axes of the tensor (each of 0..{ndim - 1} once)")
    return perm


class Default(int):
    """An int default value that tells whether it was passed: ``arg is DEFAULT``."""

    __slots__ = ()

    def __repr__(self):
        return int.__repr__(self)


LAST = Default(-1)  # (the softmax family's default axis)


#: the reductions whose PyTorch form reads an empty ``dim`` (``()`` or ``[]``) as every axis,
#: where NumPy's ``axis=()`` is none
_EMPTY_DIM_IS_ALL = frozenset(("sum", "mean", "var", "std", "norm"))
#: those whose PyTorch form refuses an empty ``dim`` or reads it inconsistently (logsumexp):
#: refused, not guessed
_EMPTY_DIM_REFUSED = frozenset(("prod", "logsumexp", "argmax", "argmin", "unsqueeze",
                                "expand_dims"))


def torch_axis(op, axis, keepdims, dim, keepdim):
    """``(axis, keepdims)`` from PyTorch's names ``dim`` and ``keepdim`` (the same arguments).
    An empty ``dim`` means what it does in PyTorch: every axis for sum, mean, var, std and
    norm; none for any, all, squeeze and flip (NumPy's reading too); an error elsewhere."""
    if dim is not None:
        if axis is not None and not isinstance(axis, Default):
            raise TypeError(f"gpuad.{op}: got both axis={axis!r} and dim={dim!r}; dim is "
                            "PyTorch's name for axis: pass one of them")
        axis = dim
        if isinstance(dim, (tuple, list)) and not dim:
            if op in _EMPTY_DIM_REFUSED:
                raise TypeError(f"gpuad.{op}: dim={dim!r} names no axis; pass an axis"
                                + ("" if op in ("unsqueeze", "expand_dims")
                                   else ", or dim=None for every axis"))
            axis = None if op in _EMPTY_DIM_IS_ALL else axis
    if keepdim is not None:
        if keepdims:
            raise TypeError(f"gpuad.{op}: got both keepdims and keepdim; keepdim is PyTorch's "
                            "name for keepdims: pass one of them")
        keepdims = bool(keepdim)
    return axis, keepdims


def torch_reduce(name, axis, keepdims, dim, keepdim):
    """PyTorch's ``dim``/``keepdim``; refused for max and min, whose PyTorch form with a dim
    returns (values, indices)."""
    if name in ("max", "min") and dim is not None:
        raise TypeError(
            f"gpuad.{name}: PyTorch's {name}(dim=...) returns (values, indices); gpuad's "
            f"{name}(axis=...) returns the values, arg{name}(axis=...) the indices")
    return torch_axis(name, axis, keepdims, dim, keepdim)


DDOF = Default(0)


class _NotGiven:
    """The default of a ``dim=`` whose explicit None means something: PyTorch's
    ``x.var(dim=None)`` is over all axes *with correction 1*, not gpuad's default ddof=0."""

    __slots__ = ()

    def __repr__(self):
        return "<not given>"


NO_DIM = _NotGiven()


def torch_spread(name, axis, ddof, keepdims, dim, keepdim, correction, unbiased):
    """PyTorch's ``dim`` (None too), ``keepdim``, ``correction`` (= ddof) and ``unbiased``
    (ddof 1 or 0) for var and std. Since PyTorch's default correction is 1 and gpuad's ddof is
    0 (NumPy's), the PyTorch spelling must say which it means."""
    given = [k for k, v in (("ddof", ddof is not DDOF), ("correction", correction is not None),
                            ("unbiased", unbiased is not None)) if v]
    if len(given) > 1:
        raise TypeError(f"gpuad.{name}: got both {given[0]} and {given[1]}; correction is "
                        "PyTorch's name for ddof (unbiased=True is ddof=1): pass one of them")
    if correction is not None:
        ddof = correction
    elif unbiased is not None:
        ddof = int(bool(unbiased))
    elif ddof is DDOF and (dim is not NO_DIM or keepdim is not None):
        raise TypeError(
            f"gpuad.{name}: gpuad's {name} defaults to ddof=0 (NumPy), PyTorch's to "
            f"correction=1; with dim=/keepdim= say which: ddof=1 (or correction=1) for "
            "PyTorch's result, ddof=0 for NumPy's")
    dim = None if dim is NO_DIM else dim
    axis, keepdims = torch_axis(name, axis, keepdims, dim, keepdim)
    return axis, ddof, keepdims


def softmax_dim(name, axis, dim):
    """The axis of the softmax family from PyTorch's ``dim``. ``dim=None`` is refused: PyTorch
    then picks an axis by the number of dimensions (deprecated), not always the last."""
    if dim is None:
        raise TypeError(f"gpuad.{name}: dim=None is not supported (PyTorch's implicit choice "
                        "of dim is deprecated); pass the axis, e.g. dim=-1")
    return torch_axis(name, axis, False, dim, None)[0]
