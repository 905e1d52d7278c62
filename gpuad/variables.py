"""TensorFlow's ``Variable`` and ``constant``, as tensors of the one engine.

As in TensorFlow, a trainable Variable is watched by every gradient tape whose block reads it,
and ops on it outside tapes build no graph (inference keeps no saved values). It does not
require grad: for ``backward()``/``ad.grad``, call ``v.requires_grad_()`` (or use
``ad.tensor(..., requires_grad=True)``). ``assign``, ``assign_add`` and ``assign_sub`` change it
in place, unrecorded, and bump its version, so a gradient whose rule saved the old value raises
instead of using the new one.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .autograd.grad_mode import no_grad
from .convert import mismatch
from .creation import tensor
from .dtypes import infer_dtype
from .ops.casts import clone
from .tensor import Tensor

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    from ._typing import DeviceLike, DTypeLike, TensorLike


class Variable(Tensor):
    """A mutable tensor that gradient tapes watch automatically unless ``trainable=False``.

    ``initial_value`` is anything :func:`gpuad.tensor` takes, or a function returning it.
    Ops on a Variable give plain tensors.

    >>> import gpuad as ad
    >>> v = ad.Variable([1.0, 2.0], name="v")
    >>> v.assign_add([1.0, 1.0])
    <Variable 'v' shape=(2,) dtype=float32, numpy=[2. 3.]>
    """

    __slots__ = ("_trainable", "_name", "_autowatch")

    def __init__(self, initial_value: TensorLike | Callable[[], TensorLike], trainable: bool = True,
                 name: str | None = None, dtype: DTypeLike = None,
                 device: DeviceLike | None = None) -> None:
        if callable(initial_value) and not isinstance(initial_value, Tensor):
            initial_value = initial_value()
        t = tensor(initial_value, dtype=dtype, device=device)
        Tensor.__init__(self, t._a, t._dev)
        self._trainable = bool(trainable)
        self._name = "Variable" if name is None else str(name)
        self._autowatch = self._trainable and t.dtype.kind == "f"

    @property
    def trainable(self) -> bool:
        """Whether gradient tapes watch this Variable when they read it."""
        return self._trainable

    @property
    def name(self) -> str:
        """The name given when made ("Variable" when none was)."""
        return self._name

    def assign(self, value: TensorLike, read_value: bool = True) -> Variable | None:
        """Set the value (same shape; cast to this Variable's dtype, but a float value for an
        integer Variable raises rather than truncating). Returns the Variable."""
        value = self._operand(value, "assign")
        if value.shape != self.shape:
            raise ValueError(
                f"gpuad: Variable.assign of {self._name!r}: the value has shape {value.shape} "
                f"but the Variable has shape {self.shape}; a Variable keeps its shape"
            )
        with no_grad():
            self.copy_(value)
        return self if read_value else None

    def assign_add(self, delta: TensorLike, read_value: bool = True) -> Variable | None:
        """Add ``delta`` (broadcast to this Variable's shape) in place. Returns the Variable."""
        return self._update(delta, "assign_add", lambda v, d: v.add_(d), read_value)

    def assign_sub(self, delta: TensorLike, read_value: bool = True) -> Variable | None:
        """Subtract ``delta`` (broadcast to this Variable's shape) in place."""
        return self._update(delta, "assign_sub", lambda v, d: v.sub_(d), read_value)

    def _update(self, delta: TensorLike, what: str, change: Callable[[Tensor, Tensor], object],
                read_value: bool) -> Variable | None:
        delta = self._operand(delta, what)
        with no_grad():
            try:
                change(self, delta.astype(self.dtype))
            except (RuntimeError, ValueError):
                raise ValueError(
                    f"gpuad: Variable.{what} of {self._name!r}: a delta of shape {delta.shape} "
                    f"does not broadcast to the Variable's shape {self.shape}"
                ) from None
        return self if read_value else None

    def _operand(self, value: TensorLike, what: str) -> Tensor:
        if isinstance(value, Tensor):
            if value._dev is not self._dev:
                raise mismatch(f"Variable.{what}", self._dev, value._dev)
            value = value.detach()
        else:
            kind = infer_dtype(value).kind
            value = tensor(value, dtype=None if kind == "f" and self.dtype.kind != "f" else
                           self.dtype, device=self._dev)  # (an int beyond the dtype raises)
        if value.dtype.kind == "f" and self.dtype.kind != "f":
            raise TypeError(
                f"gpuad: Variable.{what} of {self._name!r}: a {value.dtype} value for a "
                f"{self.dtype} Variable would be truncated; cast it explicitly (ad.cast)"
            )
        return value

    def value(self) -> Tensor:
        """The current value as a tensor (differentiable: it is read through an op)."""
        return clone(self)

    read_value = value

    def __deepcopy__(self, memo: dict[int, Any]) -> Variable:
        out = Variable(self._dev.backend.copy(self._a), self._trainable, self._name,
                       device=self._dev)
        out._rg = self._rg
        return self._copied_into(out, memo)

    def __repr__(self) -> str:
        data = self._dev.backend.to_numpy(self._a)
        device = "" if self._dev.type == "cpu" else f" device={self._dev}"
        return (f"<Variable {self._name!r} shape={self.shape} dtype={self.dtype}{device}, "
                f"numpy={data}>")


def constant(value: TensorLike, dtype: DTypeLike = None, device: DeviceLike | None = None,
             shape: int | Sequence[int] | None = None) -> Tensor:
    """A new tensor that requires nothing (TensorFlow's ``tf.constant``).

    With ``shape``, a scalar ``value`` fills it, and a value of the same size is reshaped.

    >>> ad.constant([1, 2, 3, 4], shape=(2, 2))
    tensor([[1, 2],
            [3, 4]])
    >>> ad.constant(0.0, shape=3)
    tensor([0., 0., 0.])
    """
    if isinstance(value, Tensor):
        value = value.detach()
    t = tensor(value, dtype=dtype, device=device)
    if shape is None:
        return t
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if t.size == 1:
        return Tensor(t._dev.backend.full(shape, t._a.reshape(()), dtype=t.dtype), t._dev)
    size = 1
    for n in shape:
        size *= n
    if t.size != size:
        raise ValueError(f"gpuad.constant: a value of {t.size} elements cannot fill shape "
                         f"{shape}; give a scalar or a value with {size} elements")
    return Tensor(t._a.reshape(shape), t._dev)
