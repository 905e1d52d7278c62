"""``Module`` and ``Parameter``: parameters and submodules registered by attribute,
train/eval, moves between devices and dtypes, state dicts with strict checking, as in
PyTorch."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..autograd.grad_mode import no_grad
from ..backends import tracing
from ..devices import Device
from ..tensor import Tensor

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    from .._typing import DeviceLike, DTypeLike, TensorLike

_M = TypeVar("_M", bound="Module")


class Parameter(Tensor):
    """A tensor that is a module's parameter: a leaf that requires grad (unless told not to),
    registered by assigning it to a module attribute.

    >>> p = ad.nn.Parameter(ad.zeros(2))
    >>> p
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    >>> m = ad.nn.Module()
    >>> m.scale = p
    >>> [name for name, _ in m.named_parameters()]
    ['scale']
    """

    __slots__ = ()

    def __init__(self, data: Tensor, requires_grad: bool = True) -> None:
        src = data if isinstance(data, Tensor) else Tensor(data.array, data.device)
        super().__init__(src._a, src._dev, None, False)
        if requires_grad:
            self.requires_grad_()

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Parameter:
        out = Parameter(Tensor(self._dev.backend.copy(self._a), self._dev), self._rg)
        return self._copied_into(out, memo)


class Module:
    """Base class of layers and models: subclass it, assign parameters and submodules as
    attributes in ``__init__``, and define ``forward``.

    >>> class Net(ad.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = ad.nn.Linear(2, 1)
    ...     def forward(self, x):
    ...         return self.fc(x).tanh()
    >>> net = Net()
    >>> [name for name, _ in net.named_parameters()]
    ['fc.weight', 'fc.bias']
    >>> net(ad.ones(3, 2)).shape
    (3, 1)
    """

    _parameters: OrderedDict[str, Parameter | None]
    _buffers: OrderedDict[str, Tensor | None]
    _modules: OrderedDict[str, Module]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration -------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"gpuad.nn: call super().__init__() in {type(self).__name__}"
                                 ".__init__ before assigning attributes")
        if name in self._parameters and not isinstance(value, Parameter) and value is not None:
            raise TypeError(f"gpuad.nn: cannot assign a {type(value).__name__} as parameter "
                            f"{name!r} (an ad.nn.Parameter or None is expected)")
        if name in self._buffers and (value is None or isinstance(value, Tensor)):
            self._buffers[name] = value  # a buffer stays a buffer when reassigned
            tracing.changed()
            return
        if any(name in d for d in (self._parameters, self._buffers, self._modules,
                                   self.__dict__)):
            tracing.changed()  # (a compiled function that read the old value traces again)
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter) or (value is None and name in self._parameters):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        for table in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(table)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        tracing.changed()
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None) -> None:
        """A tensor that is part of the state (saved, moved) but not a parameter."""
        tracing.changed()
        self._buffers[name] = tensor

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` as parameter ``name`` (None: a slot that holds no parameter
        yet); the same as assigning a Parameter to the attribute."""
        tracing.changed()
        self._parameters[name] = param

    # ---- traversal -------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, submodule)`` for each direct submodule, in the order assigned."""
        return iter(self._modules.items())

    def children(self) -> Iterator[Module]:
        """The direct submodules, in the order assigned."""
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """``(dotted name, module)`` for this module (named ``prefix``) and every module
        below it, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        """This module and every module below it, depth first."""
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` for each parameter, of the submodules too unless
        ``recurse`` is False; a parameter shared by several modules comes once."""
        seen: set[int] = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, mod in mods:
            for name, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The parameters, as :meth:`named_parameters` without the names (what an optimizer
        takes)."""
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, buffer)`` for each buffer of this module and those below it."""
        for mod_prefix, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    # ---- modes, devices, gradients ------------------------------------------------------------
    def train(self: _M, mode: bool = True) -> _M:
        """Set ``training`` to ``mode`` on this module and every module below it (Dropout
        drops only in training); returns ``self``."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self: _M) -> _M:
        """Evaluation mode: ``train(False)``; returns ``self``."""
        return self.train(False)

    def to(self: _M, device: DeviceLike | DTypeLike = None, dtype: DTypeLike = None) -> _M:
        """Move (and/or cast floating) parameters and buffers in place; returns ``self``.
        Parameters stay the same objects, so optimizers made before keep working."""
        if device is not None and not isinstance(device, (str, Device)):
            device, dtype = None, device  # m.to(ad.float64)
        with no_grad():
            for t in list(self.parameters()) + [b for _, b in self.named_buffers()]:
                moved = t.detach().to(device=device,
                                      dtype=dtype if t.dtype.kind == "f" else None)
                t._a, t._dev = moved._a, moved._dev
                t._ver[0] += 1
                if t._grad is not None:
                    t._grad = t._grad.to(device=device, dtype=moved.dtype)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's ``grad``: None (the default), or with ``set_to_none``
        False, zeros of its shape where it has one."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p._grad is not None:  # zeros (also where it was nan), no graph, not lent
                p._grad = Tensor(p._dev._backend.zeros_like(p._grad._a), p._dev)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation, which calling the module runs: each subclass defines it (here it
        raises NotImplementedError)."""
        raise NotImplementedError(f"gpuad.nn: {type(self).__name__} must define forward()")

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, Tensor]:
        """``{name: tensor}`` of every parameter and buffer (detached, sharing storage)."""
        out: OrderedDict[str, Tensor] = OrderedDict()
        for name, p in self.named_parameters():
            out[name] = p.detach()
        for name, b in self.named_buffers():
            out[name] = b.detach()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True
                        ) -> tuple[list[str], list[str]]:
        """Copy values into the parameters and buffers. Everything is checked before anything
        is written: with ``strict``, missing and unexpected keys raise; a wrong shape always
        raises. Returns ``(missing_keys, unexpected_keys)``."""
        own: dict[str, Tensor] = dict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        values = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            shape = tuple(getattr(v, "shape", ()))
            if shape != t.shape:
                problems.append(f"{k}: the checkpoint has shape {shape}, the model {t.shape}")
                continue
            try:  # converted before anything is written
                values[k] = _converted(v, t)
            except (TypeError, ValueError) as exc:
                problems.append(f"{k}: {exc}")
        if problems:
            raise RuntimeError(f"gpuad: error(s) loading the state dict into "
                               f"{type(self).__name__}: " + "; ".join(problems)
                               + ". Nothing was loaded")
        with no_grad():
            for k, src in values.items():
                t = own[k]
                t._dev._backend.setitem(t._a, Ellipsis, src._a)
                t._ver[0] += 1
        return missing, unexpected

    # ---- printing -------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of the module's repr (its settings); empty here."""
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ")
                 for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _converted(value: TensorLike, like: Tensor) -> Tensor:
    """``value`` as a tensor on ``like``'s device and dtype; a kind of value that would lose
    information (complex into real, text) raises."""
    from ..creation import tensor

    v = value if isinstance(value, Tensor) else tensor(value, device=like.device)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"a {v.dtype} value cannot be loaded into a {like.dtype} tensor")
    if v.dtype.kind == "f" and like.dtype.kind in "iub":
        raise TypeError(f"a {v.dtype} value cannot be loaded into a {like.dtype} tensor")
    return v.detach().to(device=like.device, dtype=like.dtype)
