"""Flat buffers for the fused CUDA updates: the parameters of one group and dtype become views
into one buffer, their gradients views into another, and the optimizer state lives in flat
buffers too, so a step is one kernel launch. The learning rate and the step count sit in a
small device array: a step needs no host synchronisation (the array is rewritten only when a
hyper-parameter changes, and the step count is incremented on the device).

A step where some parameter has no gradient cannot skip it inside the launch, so from then on
the group is updated parameter by parameter (exactly as PyTorch would), from the same state.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..backends import tracing
from ..tensor import Tensor

if TYPE_CHECKING:
    from .._typing import Array

_R = TypeVar("_R")


def _on_its_device(method: Callable[..., _R]) -> Callable[..., _R]:
    """``method`` run with the group's device current: CuPy allocates and launches on the
    current device, so a group on cuda:1 would otherwise get buffers on cuda:0."""

    @functools.wraps(method)
    def run(self: FlatGroup, *args: Any) -> _R:
        with self.backend.on_device():
            return method(self, *args)

    return run


#: per kind: the state buffers, the hyper-parameter layout, and where the step count is
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "sgd": (("momentum_buffer",), ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
            5),
    "adam": (("exp_avg", "exp_avg_sq"), ("lr", "betas0", "betas1", "eps", "weight_decay",
                                          "decoupled"), 6),
}


class FlatGroup:
    """The parameters of one group, device and dtype, in flat buffers."""

    def __init__(self, params: list[Tensor], kind: str) -> None:
        self.kind = kind
        self.params = params
        self.backend = params[0]._dev._backend
        with self.backend.on_device():
            self._build()

    def _build(self) -> None:
        """The flat buffers, with the parameters (and gradients) moved into them."""
        params, first = self.params, self.params[0]
        xp = self.backend.xp
        n = sum(p.size for p in params)
        self.data = xp.empty(n, dtype=first.dtype)
        self.grad = xp.zeros(n, dtype=first.dtype)
        self.views: list[tuple[int, int, Array]] = []
        off = 0
        for p in params:
            view = self.data[off:off + p.size]
            view[...] = p._a.reshape(-1)
            p._a = view.reshape(p.shape)
            p._ver[0] += 1
            grad = self.grad[off:off + p.size].reshape(p.shape)
            if p._grad is not None:
                grad[...] = p._grad._a
                p._grad = Tensor(grad, p._dev)
            self.views.append((off, p.size, grad))
            off += p.size
        names, _, _ = KINDS[self.kind]
        self.state = {name: xp.zeros(n, dtype=first.dtype) for name in names}
        self.hyper = xp.zeros(8, dtype=np.float64)
        self.written: list[float] | None = None  # the hyper-parameters the device array holds
        self.steps = 0
        self.fused = True

    def intact(self) -> bool:
        """Whether every parameter still lives in the flat buffer (``Module.to`` after the
        optimizer was made gives parameters new storage)."""
        return self.fused and all(p._a.base is self.data and p._dev._backend is self.backend
                                  for p in self.params)

    @_on_its_device
    def zero_grad(self) -> None:
        """Zero the flat gradient buffer; gradients that exist become its views again (a
        parameter without one keeps None, as on the CPU)."""
        self.grad.fill(0)
        for p, (_, _, grad) in zip(self.params, self.views):
            if p._grad is not None:
                p._grad = Tensor(grad, p._dev)

    @_on_its_device
    def ready(self) -> bool:
        """Make every gradient its view of the flat buffer; False when one is missing."""
        for p, (_, _, grad) in zip(self.params, self.views):
            if p._grad is None:
                return False
            if p._grad._a is not grad:
                grad[...] = p._grad._a
                p._grad = Tensor(grad, p._dev)
        return True

    @_on_its_device
    def step(self, group: dict[str, Any], decoupled: bool) -> None:
        """One fused update of every parameter, with ``group``'s settings (written to the
        device only when they changed: in a CUDA graph, before each replay launches)."""
        tracing.host(self._settings, group, decoupled)
        self.hyper[KINDS[self.kind][2]] += 1  # the step count, on the device
        arrays = [self.data, self.grad] + [self.state[n] for n in KINDS[self.kind][0]]
        self.backend.fused_optimizer_step(self.kind, arrays, self.hyper)

    @_on_its_device
    def _settings(self, group: dict[str, Any], decoupled: bool) -> None:
        """The host's part of a step: ``group``'s settings to the device where they changed,
        and the step and the parameters' versions counted."""
        values = [float(group["betas"][int(k[-1])]) if k.startswith("betas")
                  else float(decoupled) if k == "decoupled" else float(group[k])
                  for k in KINDS[self.kind][1]]
        if values != self.written:
            self.hyper[:len(values)] = self.backend.xp.asarray(np.array(values))
            self.written = values
        self.steps += 1
        for p in self.params:
            p._ver[0] += 1

    @_on_its_device
    def param_state(self, i: int) -> dict[str, Any]:
        """Parameter ``i``'s state as the one-by-one path keeps it (copies)."""
        if not self.steps:
            return {}
        off, size, _ = self.views[i]
        shape = self.params[i].shape
        state = {n: self.state[n][off:off + size].reshape(shape).copy()
                 for n in KINDS[self.kind][0]}
        return state if self.kind == "sgd" else {"step": self.steps, **state}

    @_on_its_device
    def load_param_state(self, i: int, state: dict[str, Any]) -> None:
        """Parameter ``i``'s ``state`` (as :meth:`param_state` gives it) into the flat buffers."""
        off, size, _ = self.views[i]
        xp = self.backend.xp
        for n in KINDS[self.kind][0]:  # absent state starts from zero, as a fresh optimizer
            value = state.get(n)
            self.state[n][off:off + size] = 0 if value is None else xp.asarray(
                value).reshape(-1)
        steps = int(state.get("step", 1 if state else 0))
        self.steps = steps
        self.hyper[KINDS[self.kind][2]] = steps
