"""Attach the ops to :class:`~gpuad.tensor.Tensor` as methods and Python operators."""
import numpy as np

from ..dtypes import bool_, float16, float32, float64, int32, int64
from ..tensor import Tensor
from . import casts, compare, indexing, inplace, shape
from . import elementwise as ew
from ._args import axis_index, shape_arg, torch_axis
from .registry import METHODS
from .selection import where


def _reflected(fn):
    return lambda self, other: fn(other, self)


def _eq(self, other):
    return NotImplemented if other is None else compare.equal(self, other)


def _ne(self, other):
    return NotImplemented if other is None else compare.not_equal(self, other)


def _logic(fn, name):
    def method(self, other):
        if self.dtype.kind != "b":
            raise TypeError(f"gpuad: {name} needs boolean tensors, got {self.dtype}")
        return fn(self, other)
    return method


def _invert(self):
    if self.dtype.kind != "b":
        raise TypeError(f"gpuad: ~ needs a boolean tensor, got {self.dtype}")
    return compare.logical_not(self)


def _reshape(self, *dims):
    """``x.reshape(2, 3)`` or ``x.reshape((2, 3))``: x's elements, in row-major order, in
    that shape (one length may be -1); a view where the memory allows, else a copy."""
    return shape.reshape(self, *dims)


def _transpose(self, *axes, dim0=None, dim1=None):
    """``x.transpose(dim0, dim1)``, exactly two int axes: swap them, as PyTorch's, at any ndim
    (``x.transpose(0, 1)`` of a matrix is its transpose, ``x.transpose(1, 1)`` is ``x``, negative
    axes count from the end). Otherwise NumPy's: ``x.transpose()`` reverses the axes,
    ``x.transpose(1, 0, 2)`` and ``x.transpose((1, 0, 2))`` permute them."""
    if dim0 is not None or dim1 is not None:
        axes += tuple(d for d in (dim0, dim1) if d is not None)
        if len(axes) != 2:
            raise TypeError("gpuad.transpose: x.transpose(dim0, dim1) takes two axes, got "
                            f"{axes} (and dim0={dim0!r}, dim1={dim1!r})")
    if len(axes) == 2:
        return shape.swapped(self, *axes, "transpose")
    if not axes:
        return shape.permuted(self, None, "transpose")
    if len(axes) == 1 and not hasattr(axes[0], "__index__"):
        axes = axes[0]
    return shape.permuted(self, axes, "transpose")


def _permute(self, *dims):
    """PyTorch's ``x.permute(2, 0, 1)`` (or ``x.permute((2, 0, 1))``): the axes in that order,
    each once (NumPy's ``transpose(x, axes)``)."""
    if len(dims) == 1 and not hasattr(dims[0], "__index__"):
        dims = dims[0]
    return shape.permuted(self, dims, "permute")


def _unsqueeze(self, dim=None, *, axis=None):
    """PyTorch's ``x.unsqueeze(dim)``: a new axis of length 1 at ``dim`` (``expand_dims``)."""
    return shape.inserted(self, torch_axis("unsqueeze", axis, False, dim, None)[0], "unsqueeze")


def _matrix_transpose(self):
    """``x.mT``: the last two axes swapped (a batch of matrices transposed)."""
    if self.ndim < 2:
        raise ValueError(f"gpuad: x.mT transposes matrices (the last two axes), but x has "
                         f"shape {self.shape}; use x.T, or reshape x to 2-D first")
    return shape.swapped(self, -1, -2, "mT")


def _squeeze(self, axis=None, *, dim=None):
    """x without the length-1 axes ``axis`` (all of them when None), as :func:`gpuad.squeeze`;
    with PyTorch's ``dim=``, an axis of another length is kept."""
    return shape.squeeze(self, axis, dim=dim)


class Size(int):
    """``Tensor.size``: the number of elements (an int, as NumPy's ``size``). Called, it is
    PyTorch's ``size()``: the shape, or with an axis, that axis's length."""

    def __call__(self, dim=None):
        if dim is None:
            return self.shape
        return self.shape[axis_index(dim, len(self.shape), "size")]


def _size(self):
    """``x.size``: the number of elements, an int; ``x.size()`` is the shape and
    ``x.size(dim)`` that axis's length, as PyTorch (:class:`Size`)."""
    size = Size(self._a.size)
    size.shape = self._a.shape
    return size


def _view(self, *dims, dtype=None):
    """PyTorch's ``view``: ``reshape`` that refuses to copy. The new shape must be reachable
    by re-striding the same memory, else a RuntimeError says to use ``reshape``. PyTorch's
    ``view(dtype)`` (the same bytes read as another dtype) is refused."""
    if dtype is not None or len(dims) == 1 and _dtype_name(dims[0]):
        name = _dtype_name(dims[0] if dtype is None else dtype) or repr(dtype)
        raise TypeError(
            f"gpuad.view: view takes a shape, got the dtype {name}; PyTorch's x.view(dtype) "
            "reinterprets the bytes as another dtype, which gpuad does not support: use "
            f"x.astype(ad.{name}) to convert the values")
    dims = shape_arg(dims)
    out = shape.reshape(self, dims)
    if out._a.size and not self._dev._backend.xp.may_share_memory(out._a, self._a):
        raise RuntimeError(
            f"gpuad: view{dims} of a tensor of shape {self.shape} would need a copy (its "
            "memory layout, e.g. after a transpose, does not allow it); use x.reshape(...), "
            "which copies when it must")
    return out


def _dtype_name(arg):
    """The name of the dtype ``arg`` stands for (a dtype, a type such as ``np.int32`` or
    ``float``, a name), else None (a shape, or something else)."""
    if arg is None or isinstance(arg, (tuple, list)) or (
            hasattr(arg, "__index__") and not isinstance(arg, type)):
        return None
    try:
        return np.dtype(arg).name
    except TypeError:
        return None


def _cast(name, dtype):
    """PyTorch's cast method ``x.<name>()``: ``x.astype(dtype)``."""
    def cast(self):
        return casts.astype(self, dtype)

    cast.__name__, cast.__qualname__ = name, f"Tensor.{name}"
    cast.__doc__ = (f"x converted to {dtype} (``x.astype('{dtype}')``), as PyTorch's "
                    f"``x.{name}()``: x itself if it is {dtype} already; differentiable "
                    "between floating dtypes.")
    return cast


def _where(self, condition, other):
    """PyTorch's ``x.where(condition, other)``: x where ``condition`` is true, else ``other``
    (``where(condition, x, other)``, all three broadcast together)."""
    return where(condition, self, other)


def _transposed(self):
    """``x.T``: x with its axes reversed (the transpose of a matrix; a 1-D x unchanged)."""
    return shape.transpose(self)


def _numel(self):
    """PyTorch's ``x.numel()``: the number of elements, an int (``x.size``)."""
    return int(self._a.size)


def _dim(self):
    """PyTorch's ``x.dim()``: the number of axes, an int (``x.ndim``)."""
    return self._a.ndim


def _is_contiguous(self):
    """Whether x's elements lie in row-major (C) order in memory with no gaps."""
    return bool(self._a.flags.c_contiguous)


def _contiguous(self):
    """x itself if it is contiguous (:meth:`is_contiguous`), else a row-major copy
    (differentiable, as :func:`gpuad.clone`)."""
    return self if self._a.flags.c_contiguous else casts.clone(self)



def install():
    """Every op registered as a method (:data:`.registry.METHODS`), then the operators and the
    methods whose signature differs from the op's."""
    T = Tensor
    for name, fn in METHODS.items():
        setattr(T, name, fn)
    T.__neg__ = ew.neg
    T.__abs__ = ew.abs
    T.__pos__ = lambda self: self
    for op, fn in (("add", ew.add), ("sub", ew.sub), ("mul", ew.mul), ("truediv", ew.div),
                   ("pow", ew.pow), ("matmul", T.matmul)):
        setattr(T, f"__{op}__", fn)
        setattr(T, f"__r{op}__", _reflected(fn))
    T.__lt__ = compare.less
    T.__le__ = compare.less_equal
    T.__gt__ = compare.greater
    T.__ge__ = compare.greater_equal
    T.__eq__ = _eq
    T.__ne__ = _ne
    T.__and__ = T.__rand__ = _logic(compare.logical_and, "&")
    T.__or__ = T.__ror__ = _logic(compare.logical_or, "|")
    T.__xor__ = T.__rxor__ = _logic(compare.logical_xor, "^")
    T.__invert__ = _invert
    T.__getitem__ = indexing.getitem
    T.__setitem__ = inplace.setitem
    T.reshape = _reshape
    T.transpose = _transpose
    T.squeeze = _squeeze
    T.unsqueeze = _unsqueeze  # PyTorch's names
    T.permute = _permute
    T.T = property(_transposed)
    T.mT = property(_matrix_transpose)
    T.where = _where
    _install_torch_names(T)
    for name in "add_ sub_ mul_ div_ pow_ fill_ zero_ copy_".split():
        setattr(T, name, getattr(inplace, name))
    T.__iadd__, T.__isub__ = inplace.add_, inplace.sub_
    T.__imul__, T.__itruediv__, T.__ipow__ = inplace.mul_, inplace.div_, inplace.pow_


def _install_torch_names(T):
    """PyTorch's spellings that mean exactly what gpuad's do (README, "Coming from PyTorch")."""
    T.size = property(_size)
    T.numel = _numel
    T.dim = _dim
    T.view = _view
    T.is_contiguous = _is_contiguous
    T.contiguous = _contiguous
    for name, dtype in (("float", float32), ("double", float64), ("half", float16),
                        ("int", int32), ("long", int64), ("bool", bool_)):
        setattr(T, name, _cast(name, dtype))
