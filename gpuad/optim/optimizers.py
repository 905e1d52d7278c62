"""SGD (momentum, Nesterov, weight decay), Adam and AdamW, updating parameters in place with
the same formulas, in the same order, as PyTorch's (so results agree to rounding)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias

from ..backends import tracing
from ..tensor import Tensor
from .flat import FlatGroup
from .settings import betas_pair, numbers_of, setting, state_copy

if TYPE_CHECKING:
    from .._typing import Array

#: What an optimizer updates: a tensor, tensors, or parameter groups (dicts with a "params"
#: list and settings of their own).
Params: TypeAlias = "Tensor | Iterable[Tensor] | Iterable[dict[str, Any]]"


class Optimizer:
    """Holds parameter groups (``[{"params": [...], "lr": ..., ...}]``) and per-parameter
    state; subclasses define ``_update(p, g, xp, group, state)`` on backend arrays.

    >>> a, b = ad.ones(2, requires_grad=True), ad.ones(1, requires_grad=True)
    >>> opt = ad.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    >>> (a.sum() + b.sum()).backward()  # every gradient 1
    >>> opt.step()
    >>> a, b  # p - lr, each group with its own lr
    (tensor([0.9000, 0.9000], requires_grad=True), tensor([0.5000], requires_grad=True))
    """

    _update: Callable[[Array, Array, ModuleType, dict[str, Any], dict[str, Any]], None]

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        items: list[Any] = [params] if isinstance(params, Tensor) else list(params)
        if not items:
            raise ValueError("gpuad.optim: the optimizer got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        # group index -> its FlatGroups (the fused CUDA path)
        self._flat: dict[int, list[FlatGroup]] = {}
        for group in items if isinstance(items[0], dict) else [{"params": items}]:
            self.add_param_group(group)
        self._built = True

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (``{"params": [...], "lr": ..., ...}``; settings it leaves out take the
        optimizer's defaults), checking its settings and that no parameter is already held."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError("gpuad.optim: a parameter group is a dict with a 'params' list, "
                            f"got {param_group!r}")
        self._refuse(param_group)
        ps = param_group["params"]
        group = numbers_of(type(self).__name__, {**self.defaults, **param_group,
                                                "params": [ps] if isinstance(ps, Tensor)
                                                else list(ps)})
        self._check(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if not isinstance(p, Tensor) or p.grad_fn is not None or p.dtype.kind != "f":
                raise ValueError("gpuad.optim: parameters must be floating leaf tensors "
                                 "(e.g. a module's .parameters())")
            if id(p) in seen:
                raise ValueError("gpuad.optim: some parameters appear more than once (in "
                                 "one group or in several); give each parameter once")
            seen.add(id(p))
        self.param_groups.append(group)
        self._fuse(len(self.param_groups) - 1)
        if getattr(self, "_built", False):  # (a group added to a working optimizer:
            tracing.changed()  # compiled steps of it trace again)

    def _fuse(self, gi: int) -> None:
        """Put group ``gi``'s parameters on the fused path where the backend has one."""
        by_kind: dict[tuple[Any, Any], list[Tensor]] = {}
        for p in self.param_groups[gi]["params"]:  # (frozen ones stay out: no gradient)
            if p.requires_grad and p._dev._backend.fused_optimizer_step is not None:
                by_kind.setdefault((p._dev, p.dtype), []).append(p)
        if by_kind and self.kind is not None:
            self._flat[gi] = [FlatGroup(ps, self.kind) for ps in by_kind.values()]

    def _check(self, group: dict[str, Any]) -> None:
        """Refuse a group's invalid settings (ValueError, naming the setting): subclasses."""

    #: PyTorch's options that change the update and that gpuad does not have, with the hint
    #: the refusal gives (each is refused unless off).
    unsupported: dict[str, str] = {"maximize": "minimize the negated loss instead",
                   "differentiable": "an optimizer step is not recorded for autograd"}

    def _refuse(self, options: dict[str, Any]) -> None:
        """Refuse PyTorch options (constructor arguments or group keys) that gpuad's
        optimizer does not have, naming the optimizer and the option."""
        for key, hint in self.unsupported.items():
            if options.get(key):
                name = type(self).__name__
                raise ValueError(f"gpuad.optim.{name}: {key}={options[key]!r} is not supported "
                                 f"(gpuad's {name} is PyTorch's with {key}=False); {hint}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (None), or with ``set_to_none=False`` set them to zero (on the
        fused CUDA path: one fill of the flat gradient buffer, which backward then
        accumulates into in place)."""
        for gi, group in enumerate(self.param_groups):
            flat: set[int] = set()
            if not set_to_none and gi in self._flat:
                for f in self._flat[gi]:
                    f.zero_grad()
                    flat.update(id(p) for p in f.params)
            for p in group["params"]:
                if id(p) in flat:
                    continue
                if set_to_none:
                    p.grad = None
                elif p._grad is not None:  # in place, as PyTorch: detached, then zeroed
                    g = p._grad  # (a graph that saved it then sees the change and refuses)
                    g._grad_fn, g._rg = None, False
                    g._a[...] = 0
                    g._ver[0] += 1

    kind: str | None = None  # the fused kernel's name (kernels/optim.cu), where there is one
    decoupled = False

    def step(self) -> None:
        """One update of every parameter that has a gradient (not recorded). On CUDA, one
        fused launch per group and dtype."""
        if tracing.active is not None:  # (a compiled step replays while the groups are these)
            tracing.state(self, "_layout")
        for gi, group in enumerate(self.param_groups):
            flats = self._flat.get(gi)
            done: set[int] = set()
            if flats is not None:
                if all(f.intact() for f in flats) and all(f.ready() for f in flats):
                    for f in flats:
                        f.step(group, self.decoupled)
                        done.update(id(p) for p in f.params)
                else:  # a parameter without gradient, or moved: one by one from now on
                    tracing.opaque(self._leave_flat, gi)  # (a CUDA graph cannot: eager)
            for p in group["params"]:
                if p._grad is None or id(p) in done:
                    continue
                # (one step of a compiled function: a replay runs this Python again, finding
                # the group and the state as they are then: a loaded state_dict included)
                tracing.opaque(_apply, self, gi, id(p), p._a, p._grad._a, p._dev.backend,
                               p._ver)

    @property
    def _layout(self) -> tuple[tuple[int, ...], ...]:
        """Which parameters each group holds, by identity."""
        return tuple(tuple(map(id, g["params"])) for g in self.param_groups)

    def _leave_flat(self, gi: int) -> None:
        """Continue group ``gi`` parameter by parameter, from the flat state."""
        tracing.changed()  # (compiled steps of the fused path trace again)
        for f in self._flat.pop(gi):
            f.fused = False
            for i, p in enumerate(f.params):
                state = f.param_state(i)
                if state:
                    self.state[id(p)] = state

    def _flat_states(self) -> dict[int, dict[str, Any]]:
        """``{id(p): state}`` of the parameters on the fused path (copies)."""
        out: dict[int, dict[str, Any]] = {}
        for flats in self._flat.values():
            for f in flats:
                for i, p in enumerate(f.params):
                    state = f.param_state(i)
                    if state:
                        out[id(p)] = state
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, with
        parameters numbered in group order (as PyTorch)."""
        index: dict[int, int] = {}
        groups: list[dict[str, Any]] = []
        state: dict[int, dict[str, Any]] = {}
        states = {**self.state, **self._flat_states()}
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
                if id(p) in states:
                    state[index[id(p)]] = dict(states[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict`, after checking that it fits (the
        same groups and sizes, state shaped like the parameters): nothing changes otherwise."""
        params = [p for group in self.param_groups for p in group["params"]]
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"])
                for s, g in zip(saved_groups, self.param_groups)):
            raise ValueError("gpuad.optim: the state dict's parameter groups do not match this "
                             "optimizer's (number of groups or of parameters per group)")
        for i, s in state_dict["state"].items():
            if int(i) >= len(params):
                raise ValueError(f"gpuad.optim: the state dict has state for parameter {i}, "
                                 f"but this optimizer has {len(params)}")
            for k, v in s.items():
                if hasattr(v, "shape") and tuple(v.shape) != params[int(i)].shape:
                    raise ValueError(f"gpuad.optim: state {k!r} of parameter {i} has shape "
                                     f"{tuple(v.shape)}, the parameter "
                                     f"{params[int(i)].shape}")
        saved_groups = [numbers_of(type(self).__name__, dict(saved)) for saved in saved_groups]
        for group, saved in zip(self.param_groups, saved_groups):
            self._refuse(saved)
            self._check({**group, **saved})
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {id(params[int(i)]): state_copy(params[int(i)], s)
                      for i, s in state_dict["state"].items()}
        for gi in list(self._flat):  # the fused path keeps its state in flat buffers
            flats = self._flat[gi]
            steps = {self.state.get(id(p), {}).get("step", bool(self.state.get(id(p))))
                     for f in flats for p in f.params}
            if len(steps) > 1 or any(not f.intact() for f in flats):
                del self._flat[gi]  # parameters at different steps: one by one
                tracing.changed()
                for f in flats:
                    f.fused = False
                continue
            for f in flats:
                for i, p in enumerate(f.params):
                    f.load_param_state(i, self.state.pop(id(p), {}))

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


class SGD(Optimizer):
    """p -= lr * d, d = g + wd p, or with momentum the buffer b = m b + (1 - dampening) d
    (d itself at the first step), and with Nesterov d + m b.

    >>> w = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = ad.optim.SGD([w], lr=0.1)
    >>> (w * w).sum().backward()  # g = 2 w
    >>> opt.step()
    >>> w  # w - 0.1 g
    tensor([0.8000, 1.6000], requires_grad=True)
    """

    kind = "sgd"

    def __init__(self, params: Params, lr: float | Tensor = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        """As PyTorch's; ``foreach`` and ``fused`` pick PyTorch's implementation, not the
        update, so they are accepted and ignored (gpuad fuses on CUDA by itself);
        ``maximize`` and ``differentiable`` are refused unless False."""
        self._refuse(dict(maximize=maximize, differentiable=differentiable))
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check(self, group: dict[str, Any]) -> None:
        """PyTorch's rules: lr, momentum and weight_decay >= 0; Nesterov needs momentum > 0
        and dampening 0. (Also: each a finite number, so nan and inf are refused.)"""
        for name in ("lr", "momentum", "dampening", "weight_decay"):
            setting("SGD", name, group[name])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("gpuad.optim.SGD: Nesterov momentum needs momentum > 0 and "
                             f"dampening 0, got momentum={group['momentum']!r} and "
                             f"dampening={group['dampening']!r}")

    def _update(self, p: Array, g: Array, xp: ModuleType, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        wd, m = group["weight_decay"], group["momentum"]
        d = g + wd * p if wd else g
        if m:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= m
                buf += (1 - group["dampening"]) * d
            d = d + m * buf if group["nesterov"] else buf
        p -= group["lr"] * d


class Adam(Optimizer):
    """Adam (Kingma and Ba) with bias correction; ``weight_decay`` adds wd p to the gradient
    (L2), as PyTorch's Adam. At step t: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, and
    p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).

    >>> w = ad.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = ad.optim.Adam([w], lr=0.1)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w  # the first step moves each element by about lr, against its gradient
    tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    kind = "adam"

    unsupported = {**Optimizer.unsupported, "amsgrad": "there is no AMSGrad variant",
                   "capturable": "gpuad does not capture CUDA graphs"}

    def __init__(self, params: Params, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        """As PyTorch's; ``decoupled_weight_decay=True`` is AdamW's update; ``foreach`` and
        ``fused`` are accepted and ignored (see :class:`SGD`); ``amsgrad``, ``maximize``,
        ``capturable`` and ``differentiable`` are refused unless False."""
        self._refuse(dict(amsgrad=amsgrad, maximize=maximize, capturable=capturable,
                          differentiable=differentiable))
        if decoupled_weight_decay:
            self.decoupled = True
        super().__init__(params, dict(lr=lr, betas=betas_pair(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _check(self, group: dict[str, Any]) -> None:
        """PyTorch's rules: lr, eps and weight_decay >= 0, each beta in [0, 1) (and each a
        finite number, so nan and inf are refused)."""
        name = type(self).__name__
        for key in ("lr", "eps", "weight_decay"):
            setting(name, key, group[key])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"gpuad.optim.{name}: betas is a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            setting(name, f"betas[{i}]", beta, upper=1)

    def _update(self, p: Array, g: Array, xp: ModuleType, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd and self.decoupled:
            p *= 1 - lr * wd
        elif wd:
            g = g + wd * p
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(p), exp_avg_sq=xp.zeros_like(p))
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if g.flags.c_contiguous != p.flags.c_contiguous:  # one copy, not a dozen strided passes
            g = xp.ascontiguousarray(g) if p.flags.c_contiguous else g.copy(order="K")
        # in place through two scratch arrays, in the order of PyTorch's operations (made as
        # arrays: a 0-d parameter's would be NumPy scalars, which take no out=)
        a = xp.empty_like(p)
        xp.subtract(g, m, out=a)
        a *= 1 - b1
        m += a  # m += (1 - b1) (g - m): a lerp towards g
        v *= b2
        xp.multiply(g, 1 - b2, out=a)
        a *= g
        v += a  # v = b2 v + (1 - b2) g²
        xp.sqrt(v, out=a)
        a /= math.sqrt(1 - b2 ** t)
        a += eps  # denom = sqrt(v) / sqrt(1 - b2^t) + eps
        b = xp.empty_like(p)
        xp.multiply(m, lr / (1 - b1 ** t), out=b)
        b /= a
        p -= b  # p -= lr / (1 - b1^t) m / denom


def _apply(optimizer: Optimizer, gi: int, key: int, p: Array, g: Array, backend: Any,
           version: list[int]) -> None:
    """Update one parameter's array ``p`` (of group ``gi``, its state under ``key``) from its
    gradient ``g`` on ``backend``'s device, and count the change in its ``version``."""
    state = optimizer.state.setdefault(key, {})
    with backend.on_device():  # (state made by xp lands on p's device)
        optimizer._update(p, g, backend.xp, optimizer.param_groups[gi], state)
    version[0] += 1


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): p *= 1 - lr wd first.

    >>> w = ad.tensor([1.0, -2.0], requires_grad=True)
    >>> opt = ad.optim.AdamW([w], lr=0.1, weight_decay=0.5)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w  # w (1 - 0.1 * 0.5), then Adam's first step of about 0.1
    tensor([ 0.8500, -1.8000], requires_grad=True)
    """

    decoupled = True

    def __init__(self, params: Params, lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         capturable=capturable, differentiable=differentiable)
