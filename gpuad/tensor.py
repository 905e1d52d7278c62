"""The Tensor: a backend array, its device, and its place in the autograd graph.

The floors above add their methods to the class: the recording (:mod:`.autograd.record`)
``_copied_out``, the engine ``backward``, the ops the math, shape and device methods and the
Python operators (:mod:`.ops.methods`, :mod:`.ops.moves`).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .backends import tracing
from .printing import tensor_repr

if TYPE_CHECKING:  # (for annotations only)
    import numpy as np

    from ._tensor_methods import TensorMethods as _Methods
    from .autograd.node import Node
    from .devices import Device
    from .dtypes import DTypeLike, Scalar
else:
    _Methods = object

_T = TypeVar("_T", bound="Tensor")

#: the tensors the user assigned to some ``.grad`` (id -> weak reference, gone when the tensor
#: is): ``x.grad is g`` after ``x.grad = g``, but backward adds into ``g`` out of place, so it
#: never changes the caller's tensor
lent_grads: dict[int, weakref.ref[Tensor]] = {}


def _lend(t):
    """Mark ``t`` as the user's (see ``lent_grads``) while it lives."""
    key = id(t)
    lent_grads[key] = weakref.ref(t, lambda _, key=key, lent=lent_grads: lent.pop(key, None))


class Tensor(_Methods):
    """An n-dimensional array on a device, optionally tracked for automatic differentiation.

    The ops that are also methods and operators (``x + y``, ``x.sum()``) are installed by
    :mod:`gpuad.ops.methods`; ``_tensor_methods.pyi`` declares them to type checkers.
    Make tensors with :func:`gpuad.tensor`, :func:`gpuad.zeros` and the like.

    >>> x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = x * 2
    >>> y
    tensor([[2., 4.],
            [6., 8.]], grad_fn=<MulBackward>)
    >>> x.shape, x.dtype, x.device
    ((2, 2), dtype('float32'), device(type='cpu'))
    >>> y.sum().backward()
    >>> x.grad
    tensor([[2., 2.],
            [2., 2.]])
    """

    # (``_tan``, the forward-mode tangents by level, is set only on tensors that have some)
    __slots__ = ("_a", "_dev", "_grad_fn", "_rg", "_grad", "_ver", "_base", "_hooks",
                 "_view_of", "_view_ver", "_tan", "__weakref__")
    __array_priority__ = 1000  # NumPy defers binary operators to us: np_array * tensor -> Tensor
    _autowatch = False  # True on trainable float Variables: tapes watch them when they are read

    def __init__(self, array: Any, device: Device, grad_fn: Node | None = None,
                 requires_grad: bool = False) -> None:
        self._a = array
        self._dev = device
        self._grad_fn = grad_fn
        self._rg = requires_grad
        self._grad: Tensor | None = None
        self._ver = [0]
        self._base: Tensor | None = None
        self._hooks: list[Callable[[Tensor], Tensor | None]] | None = None

    # ---- attributes -------------------------------------------------------------------
    @property
    def array(self) -> Any:
        """The backend array (NumPy or CuPy), not a copy."""
        tracing.host_read(self, ".array", guard=False)
        return self._a

    @property
    def shape(self) -> tuple[int, ...]:
        """The length of each axis."""
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        """The element type (a NumPy dtype, such as ``ad.float32``)."""
        return self._a.dtype

    @property
    def device(self) -> Device:
        """The device the data lives on."""
        return self._dev

    @property
    def ndim(self) -> int:
        """The number of axes."""
        return self._a.ndim

    # (``size``, the number of elements, is an int that PyTorch's ``size()`` can also call:
    # ops/methods.py installs it with the other PyTorch spellings)

    @property
    def grad_fn(self) -> Node | None:
        """The node that made this tensor; None for leaves and for tensors that do not require
        grad (a result only a gradient tape recorded is one of those)."""
        return self._grad_fn if self._rg else None

    @property
    def is_leaf(self) -> bool:
        """Whether backward stops here: made by the user, or not requiring grad."""
        return self._grad_fn is None or not self._rg

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor (set it, or use ``requires_grad_``)."""
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    @property
    def grad(self) -> Tensor | None:
        """The gradient backward passes accumulated (None until one reaches this tensor).
        ``x.grad = g`` keeps ``g`` itself (same shape, dtype and device), but the next backward
        adds out of place and leaves ``g`` unchanged (PyTorch would add into ``g``)."""
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"gpuad: .grad must be a Tensor or None, got {type(value)}")
            if (value.shape != self.shape or value._dev is not self._dev
                    or value.dtype != self.dtype):
                raise RuntimeError(
                    f"gpuad: assigned grad is {value.dtype} {value.shape} on {value._dev}, but "
                    f"the tensor is {self.dtype} {self.shape} on {self._dev}; they must match"
                )
            _lend(value)
        self._grad = value

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's storage, detached from the graph (PyTorch's ``.data``)."""
        return self.detach()

    # ---- autograd -----------------------------------------------------------------------
    def requires_grad_(self, flag: bool = True) -> Tensor:
        """Turn gradient tracking on (or off) for this leaf, in place; returns ``self``."""
        if self._grad_fn is not None and not self._rg:
            if not flag:
                return self
            raise RuntimeError(
                "gpuad: this tensor was computed while a GradientTape recorded it, so it has a "
                "place in the tape's graph; it cannot also become a leaf that requires grad. "
                "Use t.detach().requires_grad_() for a new leaf"
            )
        if self._grad_fn is not None and not flag:
            raise RuntimeError(
                "gpuad: requires_grad can only be turned off on leaf tensors; this one was "
                f"computed by {self._grad_fn.name()}. Use .detach() to get a leaf copy"
            )
        if flag and self._a.dtype.kind not in "fc":
            raise TypeError(
                f"gpuad: only floating-point tensors can require gradients, got {self.dtype}; "
                "convert first, e.g. x.astype(ad.float32).requires_grad_()"
            )
        self._rg = bool(flag)
        return self

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if not self._rg:
            raise RuntimeError("gpuad: retain_grad() on a tensor that does not require grad")
        if self._grad_fn is not None:
            self._grad_fn.retained = weakref.ref(self)

    def register_hook(self, fn: Callable[[Tensor], Tensor | None]) -> _HookHandle:
        """Call ``fn(grad)`` when this tensor's gradient is computed; a non-None return replaces
        the gradient. Returns a handle whose ``remove()`` unregisters it."""
        if not self._rg:
            raise RuntimeError(
                "gpuad: cannot register a hook on a tensor that does not require grad"
            )
        if self._grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            hooks = self._hooks
        else:
            if self._grad_fn.hooks is None:
                self._grad_fn.hooks = []
            hooks = self._grad_fn.hooks
        hooks.append(fn)
        return _HookHandle(hooks, fn)

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's storage and version counter, outside the graph."""
        t = Tensor(self._a, self._dev)
        t._ver = self._ver
        return t

    def detach_(self) -> Tensor:
        """Make this tensor a leaf outside the graph, in place; returns ``self``."""
        if self._base is not None and self._base._rg:
            raise RuntimeError("gpuad: cannot detach_() a view of a tensor that requires grad")
        self._grad_fn = None
        self._rg = False
        return self

    # ---- conversion ---------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A NumPy copy of the data (detached; a device-to-host copy for CUDA tensors).

        Inside a recording gradient tape that watches this tensor, a warning (once per tape)
        says that what is computed from the copy is not recorded."""
        tracing.host_read(self, ".numpy()")
        self._copied_out()
        return self._dev.backend.to_numpy(self._a)

    def item(self) -> int | float | bool:
        """The one element as a Python number (a complex one for a complex tensor)."""
        tracing.host_read(self, ".item()")
        if self._a.size != 1:
            raise RuntimeError(
                f"gpuad: item() needs a tensor with one element, got shape {self.shape}"
            )
        if self._dev.type == "cpu":
            return self._a.reshape(()).item()
        return self._dev.backend.to_numpy(self._a).item()

    def tolist(self) -> Any:
        """The data as nested Python lists of numbers (a number for a 0-d tensor)."""
        tracing.host_read(self, ".tolist()")
        return self._dev.backend.to_numpy(self._a).tolist()

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        tracing.host_read(self, "a conversion to a NumPy array")
        self._copied_out()
        if self._dev.type != "cpu":
            raise TypeError(
                f"gpuad: cannot convert a {self._dev} tensor to a NumPy array implicitly; "
                "call .numpy() (or .cpu()) to copy it to the host explicitly"
            )
        a = self._a if dtype is None else self._a.astype(dtype, copy=False)
        return a.copy() if copy else a

    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._a.__dlpack_device__()

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        if self._dev.type != "cuda":
            raise AttributeError(
                "gpuad: __cuda_array_interface__ exists only on CUDA tensors; this one is on cpu"
            )
        return self._a.__cuda_array_interface__

    if TYPE_CHECKING:  # (installed by the floors above, where no checker sees it)
        def _copied_out(self) -> None:
            """The data leaves the graph as a NumPy array: recording tapes may warn
            (:mod:`.autograd.record`)."""

        def backward(self, gradient: TensorLike | None = None,
                     retain_graph: bool | None = None, create_graph: bool = False,
                     inputs: Tensor | Sequence[Tensor] | None = None) -> None:
            """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (:mod:`.autograd.engine`)."""

    # ---- Python protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        if self._a.ndim == 0:
            raise TypeError("gpuad: len() of a 0-d tensor")
        return self._a.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self._a.ndim == 0:
            raise TypeError("gpuad: iteration over a 0-d tensor")
        return (self[i] for i in range(self._a.shape[0]))

    def __bool__(self) -> bool:
        if self._a.size != 1:
            raise RuntimeError(
                f"gpuad: the truth value of a tensor with {self._a.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._a.dtype.kind not in "iub" or self._a.size != 1:
            raise TypeError("gpuad: only integer tensors of one element can be used as an index")
        return int(self.item())

    __hash__ = object.__hash__

    def __format__(self, spec: str) -> str:
        """One-element tensors format as their number (``f"{loss:.4f}"``)."""
        if self._a.size == 1 and spec:
            return format(self.item(), spec)
        return format(str(self), spec)

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        """A copy with its own storage, as a leaf (only leaves can be copied, as in PyTorch)."""
        if self._grad_fn is not None and self._rg:  # (not a leaf)
            raise RuntimeError(
                f"gpuad: only leaf tensors can be deep-copied; this one was computed by "
                f"{self._grad_fn.name()}. Use .detach().clone() or copy a leaf"
            )
        out = Tensor(self._dev.backend.copy(self._a), self._dev, None, self._rg)
        return self._copied_into(out, memo)

    def _copied_into(self, out: _T, memo: dict[int, Any]) -> _T:
        if self._grad is not None:
            out._grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = out
        return out

    def __copy__(self) -> Tensor:
        return self.__deepcopy__({})

    def __repr__(self) -> str:
        tracing.host_read(self, "printing")
        return tensor_repr(self)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "gpuad: tensors are not pickled (a pickle can run code when loaded); store "
            "t.numpy() and rebuild with ad.tensor(...)"
        )


#: What an op takes as an operand, converted as ``ad.tensor`` does: a tensor, a number, a NumPy
#: array, or nested sequences of these (one shape throughout). (A string: tensor.py does not
#: import NumPy.)
TensorLike: TypeAlias = "Tensor | Scalar | np.ndarray | Sequence[TensorLike]"


class _HookHandle:
    """What ``register_hook`` returns: ``remove()`` unregisters the hook."""

    __slots__ = ("_hooks", "_fn")

    def __init__(self, hooks: list[Callable[[Tensor], Tensor | None]],
                 fn: Callable[[Tensor], Tensor | None]) -> None:
        self._hooks = hooks
        self._fn = fn

    def remove(self) -> None:
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)
