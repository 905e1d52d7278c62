"""The Tensor: a backend array, its device, and its place in the autograd graph.

This module also holds the two helpers every op ends with, :func:`record` and
:func:`record1`: they wrap a forward result as a Tensor and, when grad mode is on and an input
requires grad, attach a :class:`~gpuad.autograd.node.Node`. They are the per-op hot path.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from .autograd.grad_mode import active, anomaly, mode
from .autograd.node import Node
from .devices import Device, DeviceLike, resolve
from .dtypes import DTypeLike, Scalar, as_dtype

if TYPE_CHECKING:  # (for annotations only)
    import numpy as np

    from ._tensor_methods import TensorMethods as _Methods
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
    :mod:`gpuad.ops.methods`; ``_tensor_methods.pyi`` declares them to type checkers."""

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

    def backward(self, gradient: TensorLike | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False,
                 inputs: Tensor | Sequence[Tensor] | None = None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (SPEC section 3)."""
        from .autograd.engine import backward

        backward((self,), None if gradient is None else (gradient,), retain_graph,
                 create_graph, inputs)

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
        if active[0] and mode.tapes:
            self._copied_out()
        return self._dev.backend.to_numpy(self._a)

    def _copied_out(self) -> None:
        """The data leaves the graph as a NumPy array: the recording tapes may warn."""
        for tape in mode.tapes:
            tape._on_numpy(self)

    def item(self) -> int | float | bool:
        """The one element as a Python number (a complex one for a complex tensor)."""
        if self._a.size != 1:
            raise RuntimeError(
                f"gpuad: item() needs a tensor with one element, got shape {self.shape}"
            )
        if self._dev.type == "cpu":
            return self._a.reshape(()).item()
        return self._dev.backend.to_numpy(self._a).item()

    def tolist(self) -> Any:
        """The data as nested Python lists of numbers (a number for a 0-d tensor)."""
        return self._dev.backend.to_numpy(self._a).tolist()

    def __array__(self, dtype: DTypeLike = None, copy: bool | None = None) -> np.ndarray:
        if active[0] and mode.tapes:
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

    def to(self, device: DeviceLike | DTypeLike | Tensor = None, dtype: DTypeLike = None
           ) -> Tensor:
        """This tensor on ``device`` and/or as ``dtype``; differentiable; ``self`` if unchanged.

        As in PyTorch, the first argument may also be a dtype (``x.to(ad.float64)``) or a
        tensor whose device and dtype are taken."""
        from .ops.casts import to_device

        if isinstance(device, Tensor):
            dtype = device.dtype if dtype is None else dtype
            device = device._dev
        elif device is not None and not isinstance(device, (str, Device)):
            device, dtype = None, device
        out = self
        if device is not None:
            dev = resolve(device)
            if dev is not self._dev:
                out = to_device(out, dev)
        if dtype is not None and as_dtype(dtype, "to") != out.dtype:
            out = out.astype(dtype)
        return out

    def cpu(self) -> Tensor:
        """This tensor on the CPU (``self`` if it is there)."""
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Tensor:
        """This tensor on a CUDA device: ``cuda:0``, or the one named or numbered."""
        return self.to("cuda" if device is None else
                       (device if isinstance(device, str) else f"cuda:{device}"))

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
        from .printing import tensor_repr

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


# ---- the per-op hot path ----------------------------------------------------------------

def _refresh(view):
    """A view whose storage changed in place since its graph was made gets a fresh graph."""
    from .ops.indexing import refresh_view

    refresh_view(view)


def record1(op, x, a, saved):
    """Wrap the result ``a`` of the one-input op ``op`` applied to tensor ``x``."""
    dev = x._dev
    backend = dev._backend
    if a.__class__ is not backend.array_type:
        a = backend.asarray(a)  # NumPy returns scalars for 0-d results; keep arrays
    if active[0]:
        out = _record_special(op, (x,), a, dev, saved)
        if out is not None:
            return out
    if mode.enabled:
        if x._base is not None and x._view_ver != x._ver[0]:
            _refresh(x)
        if x._rg:
            return _attach(op, (x._grad_fn or x,), a, dev, saved)
    return Tensor(a, dev)


def record(op, inputs, a, dev, saved, jvp_saved=None):
    """Wrap the result ``a`` of ``op`` applied to ``inputs`` (tensors and constants).
    ``jvp_saved``: what the JVP rule reads, when it is more than the node keeps."""
    backend = dev._backend
    if a.__class__ is not backend.array_type:
        a = backend.asarray(a)
    if active[0]:
        out = _record_special(op, inputs, a, dev, saved, jvp_saved)
        if out is not None:
            return out
    if mode.enabled:
        parents = []
        tracked = False
        for t in inputs:  # each input's graph edge, inlined: this loop runs for every op
            if t.__class__ is Tensor or isinstance(t, Tensor):
                if t._base is not None and t._view_ver != t._ver[0]:
                    _refresh(t)
                if t._rg:
                    parents.append(t._grad_fn or t)
                    tracked = True
                    continue
            parents.append(None)
        if tracked:
            return _attach(op, tuple(parents), a, dev, saved)
    return Tensor(a, dev)


def _attach(op, parents, a, dev, saved, rg=True):
    """The output tensor of a recorded op, with its node. Each saved tensor's version (and
    the output's, when the rule reads the output) is noted to catch later in-place changes."""
    out = Tensor(a, dev, None, rg)
    vers = [(s._ver, s._ver[0]) for s in saved if isinstance(s, Tensor)]
    if op.save_out:
        vers.append((out._ver, 0))
        out._grad_fn = Node(op, parents, saved, vers, a, a.shape, a.dtype, dev)
    else:
        out._grad_fn = Node(op, parents, saved, vers, None, a.shape, a.dtype, dev)
    return out


# ---- recording while gradient tapes are active ------------------------------------------

def needs_grad(t, tangents=True):
    """Whether an op must keep what input ``t``'s derivative rules read: ``t`` requires grad,
    a gradient tape now recording watches it, or (with ``tangents``) it carries a
    forward-mode tangent."""
    if not isinstance(t, Tensor):
        return False
    if t._rg:
        return True
    if not active[0]:
        return False
    if tangents and mode.levels and _forward().has_tangent(t):
        return True
    return bool(mode.enabled and mode.tapes and tape_tracked(t))


def tape_tracked(t):
    """Whether a recording tape watches ``t`` (or recorded the op that made it)."""
    key = t._grad_fn or t
    for tape in mode.tapes:
        if tape._tracks(t, key):
            return True
    return False


def _record_taped(op, inputs, a, dev, saved):
    """:func:`record` while tapes record: the node goes on every recording tape that watches
    one of the inputs, and is in the ``requires_grad`` graph when an input requires grad. A
    result only tapes recorded does not require grad: after the tapes it is a constant."""
    tapes = mode.tapes
    parents, taped = [], []
    on = set()
    rg = False
    for t in inputs:
        if t.__class__ is not Tensor and not isinstance(t, Tensor):
            parents.append(None)
            taped.append(None)
            continue
        if t._base is not None and t._view_ver != t._ver[0]:
            _refresh(t)
        node = t._grad_fn
        key = node or t
        hit = t._rg
        marks = node.tapes if node is not None else None
        for tape in tapes:
            # (a result this tape recorded: the common case, checked before the call)
            if (marks is not None and tape._mark in marks) or tape._tracks(t, key):
                hit = True
                on.add(tape)
        parents.append(key if t._rg else None)
        taped.append(key if hit else None)
        rg = rg or t._rg
    if not on:
        if rg:
            return _attach(op, tuple(parents), a, dev, saved)
        return Tensor(a, dev)
    out = _attach(op, tuple(parents), a, dev, saved, rg)
    node = out._grad_fn
    if len(on) == 1:
        (tape,) = on
        node.tapes = (tape._mark,)
        tape._nodes.append(node)
    else:
        on = [tape for tape in tapes if tape in on]  # in the order the tapes started
        node.tapes = tuple(tape._mark for tape in on)
        for tape in on:
            tape._nodes.append(node)
    if taped != parents:
        node.taped = tuple(taped)
    return out


def _record_special(op, inputs, a, dev, saved, jvp_saved=None):
    """The part of :func:`record` that runs only while some tape, custom-gradient collector,
    forward level or the anomaly mode is active (in any thread). None: go on with the plain
    path. The anomaly mode takes every op here: it checks the output and notes the user's line
    on the node (:mod:`.autograd.anomaly`)."""
    settings = anomaly[0]
    if settings is None:
        return _record_active(op, inputs, a, dev, saved, jvp_saved)
    out = _record_active(op, inputs, a, dev, saved, jvp_saved)
    if out is None:  # the plain path, which recording for no tape is
        out = _record_taped(op, inputs, a, dev, saved)
    if out._grad_fn is None and not settings.check_forward:
        return out
    return settings.on_op(op, inputs, out)


def _record_active(op, inputs, a, dev, saved, jvp_saved):
    """Note the reads, record on this thread's tapes, push forward-mode tangents. None: go on
    with the plain path."""
    if mode.watchers:
        _note_reads(inputs)
    if mode.levels:  # forward mode runs whatever the grad mode
        if mode.enabled:
            out = _record_taped(op, inputs, a, dev, saved)
        else:
            for t in inputs:  # (recording refreshes stale views itself)
                if isinstance(t, Tensor) and t._base is not None and t._view_ver != t._ver[0]:
                    _refresh(t)
            out = Tensor(a, dev)
        _forward().push(op, inputs, out, saved if jvp_saved is None else jvp_saved)
        return out
    if not mode.enabled:
        return Tensor(a, dev)
    if mode.tapes:
        return _record_taped(op, inputs, a, dev, saved)
    return None


def _forward():
    """The forward-mode module (imported on first use: it imports this module)."""
    global _forward_module
    if _forward_module is None:
        from .autograd import forward

        _forward_module = forward
    return _forward_module


_forward_module = None


def _note_reads(inputs):
    """Tell the active collectors which leaves that require grad (trainable Variables, say)
    an op read: ``custom_gradient`` finds the variables its function uses this way."""
    for t in inputs:
        if isinstance(t, Tensor) and t._grad_fn is None and (t._rg or t._autowatch):
            for seen in mode.watchers:
                seen.setdefault(id(t), t)
