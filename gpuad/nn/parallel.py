"""``DistributedDataParallel``: one model replica per process, its gradients averaged across the
ranks after every ``backward()``, so that every rank takes the same optimizer step.

At construction the ranks check that they wrap the same model (names, shapes, dtypes) and
rank 0's parameters and buffers are broadcast to all. During a ``backward()`` pass, the first
parameter gradient computed queues one averaging for the end of the pass
(:mod:`gpuad.autograd.callbacks`); it then all-reduces the gradients, one call per bucket (the
parameters of one device and dtype): they are copied into the bucket's flat buffer, followed by
one flag per parameter (1 where this rank has its gradient), reduced, and copied back.

The average is ``sum / world_size`` (NCCL's average on CUDA), the mean of each rank's
gradient: with equal shares of the batch on every rank, the gradient of the whole batch's mean
loss, as PyTorch's DDP. A parameter that has no gradient on this rank counts as zeros where
another rank has one (so every rank ends with the same gradient), and keeps ``None`` where no
rank has one (as on a single process). Inside ``ad.compile`` the averaging is one recorded step
that every replay runs again on the CPU; on CUDA with NCCL, its copies and ``ncclAllReduce``
are kernels that the step's CUDA graph captures.
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..autograd.callbacks import queue_callback
from ..backends import tracing
from ..distributed import collectives
from ..distributed import group as groups
from ..errors import DistributedError
from ..tensor import Tensor
from .module import Module, Parameter

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Tensors of one device and dtype (the parameters, or their gradients), and a flat buffer
    that holds them all for one collective."""

    def __init__(self, params: list[Tensor], comm: Any) -> None:
        self.params, self.comm = params, comm
        first = params[0]
        self.backend = first._dev._backend
        offsets = np.cumsum([0, *(p.size for p in params)]).tolist()
        self.spans = list(zip(offsets[:-1], offsets[1:]))  # (each tensor's place in flat)
        self.total = offsets[-1]
        with self.backend.on_device():  # (the values, then a flag per tensor)
            self.flat = self.backend.xp.empty(self.total + len(params), first.dtype)
            self.ones = self.backend.xp.ones(len(params), first.dtype)

    def _pack(self, arrays: Any, spans: list[tuple[int, int]]) -> None:
        for a, (lo, hi) in zip(arrays, spans):
            self.flat[lo:hi] = a.reshape(-1)

    def _unpack(self, arrays: Any, spans: list[tuple[int, int]]) -> None:
        for a, (lo, hi) in zip(arrays, spans):
            a[...] = self.flat[lo:hi].reshape(a.shape)

    def broadcast(self, *arrays: Any) -> None:
        """Rank 0's ``arrays`` (this bucket's tensors) into every rank's: one broadcast."""
        with self.backend.on_device():
            self._pack(arrays, self.spans)
            collectives._run(self.comm, self.flat[:self.total], self.backend,
                             lambda b: self.comm.broadcast(b, 0))
            self._unpack(arrays, self.spans)

    def reduce(self, present: tuple[bool, ...], *grads: Any) -> list[tuple[int, Any]]:
        """Average the gradients across the ranks, in place: ``grads`` are those of the
        parameters ``present`` marks (this rank has them). One all-reduce of the flat buffer
        and the flags. Returns ``(i, average)`` for each parameter ``i`` absent here that
        another rank has (read back only when some parameter is absent)."""
        spans = [span for span, here in zip(self.spans, present) if here]
        all_here = len(spans) == len(self.spans)
        with self.backend.on_device():
            if all_here:
                self.flat[self.total:] = self.ones
            else:  # (zeros for the absent ones, and their flags)
                self.flat.fill(0)
                self.flat[self.total:] = self.backend.xp.asarray(
                    np.array(present, self.flat.dtype))
            self._pack(grads, spans)
            collectives._run(self.comm, self.flat, self.backend,
                             lambda b: self.comm.all_reduce(b, "mean"))
            self._unpack(grads, spans)
            if all_here:
                return []
            used = self.backend.to_numpy(self.flat[self.total:]) > 0
            return [(i, self.flat[lo:hi].copy()) for i, ((lo, hi), here)
                    in enumerate(zip(self.spans, present)) if not here and used[i]]


def _by_kind(tensors: list[Tensor]) -> list[list[Tensor]]:
    """``tensors`` grouped by device and dtype, in order."""
    kinds: dict[tuple[str, Any], list[Tensor]] = {}
    for t in tensors:
        kinds.setdefault((str(t._dev), t.dtype), []).append(t)
    return list(kinds.values())


class DistributedDataParallel(Module):
    """``module`` trained data-parallel: wrap it after ``init_process_group()``, then train as
    usual. ``parameters()``, ``state_dict()`` (without a ``module.`` prefix) and calling it
    behave as ``module``; ``no_sync()`` skips the averaging (gradient accumulation).

    >>> ad.distributed.init_process_group()
    >>> model = ad.nn.parallel.DistributedDataParallel(ad.nn.Linear(2, 1))
    >>> model(ad.ones(3, 2)).sum().backward()
    >>> model.module.weight.grad.shape
    (1, 2)
    >>> ad.distributed.destroy_process_group()
    """

    def __init__(self, module: Module, *, broadcast_buffers: bool = True) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"gpuad.nn.parallel.DistributedDataParallel: expected an "
                            f"ad.nn.Module, got {type(module).__name__}")
        group = groups.require("nn.parallel.DistributedDataParallel")
        self.module = module
        object.__setattr__(self, "_sync", True)
        object.__setattr__(self, "_group", group)
        named = list(module.named_parameters())
        buffers = list(module.named_buffers()) if broadcast_buffers else []
        self._check_same_model(named + buffers, group)
        for tensors in _by_kind([t for _, t in named + buffers]):  # rank 0's values
            _Bucket(tensors, self._comm(group, tensors[0])).broadcast(*[t._a for t in tensors])
            for t in tensors:
                t._ver[0] += 1
        trained = _by_kind([p for _, p in named if p.requires_grad])
        object.__setattr__(self, "_buckets", [_Bucket(ps, self._comm(group, ps[0]))
                                              for ps in trained])
        object.__setattr__(self, "_trained", {id(p) for ps in trained for p in ps})
        for ps in trained:
            for p in ps:
                p.register_hook(self._on_gradient)

    @staticmethod
    def _comm(group: groups.Group, t: Tensor) -> Any:
        return collectives._comm(group, t, "nn.parallel.DistributedDataParallel")

    @staticmethod
    def _check_same_model(named: list[tuple[str, Tensor]], group: groups.Group) -> None:
        """Every rank wraps a model of the same parameters and buffers (names, shapes,
        dtypes, device kinds)."""
        layout = repr([(n, p.shape, str(p.dtype), p._dev.type, p.requires_grad)
                       for n, p in named])
        mine = np.array([zlib.crc32(layout.encode()), len(named)], np.int64)
        from ..creation import tensor

        where = "cpu" if "cpu" in group.comms else group.device
        gathered = collectives.all_gather(tensor(mine, device=where))
        assert isinstance(gathered, Tensor)
        seen = gathered.numpy()
        if (seen != seen[0]).any():
            raise DistributedError(
                "gpuad.nn.parallel.DistributedDataParallel: the ranks wrap different models "
                f"(rank {group.rank} has {len(named)} parameters: {layout[:300]}); build the "
                "same model, with the same dtypes and devices, on every rank")

    def _on_gradient(self, grad: Tensor) -> None:
        """A parameter's gradient was computed: average them all when the pass ends (once per
        pass; not inside ``no_sync()``, which a compiled step checks on each replay; not once
        the group this wrapper was made in is gone)."""
        if groups.current is self._group and tracing.state(self, "_sync"):
            queue_callback(self._average, key=self)

    def _average(self) -> None:
        self._check_trained()
        for bucket in self._buckets:
            present = tuple(p._grad is not None for p in bucket.params)
            grads = [p._grad for p in bucket.params if p._grad is not None]
            if any(g._grad_fn is not None for g in grads):
                raise RuntimeError(
                    "gpuad.nn.parallel.DistributedDataParallel: backward(create_graph=True) "
                    "made gradients with a graph; the average across ranks is data, so the "
                    "graph of an averaged gradient would be this rank's alone (its derivatives "
                    "wrong). Take higher derivatives outside DDP (its .module), or average "
                    "with ad.distributed.all_reduce yourself")
            arrays = [g._a for g in grads]
            if bucket.comm.name == "nccl":  # (device work: a CUDA graph captures it)
                elsewhere = bucket.reduce(present, *arrays)
            else:  # (host work: ad.compile replays the call)
                elsewhere = tracing.opaque(bucket.reduce, present, *arrays)
            for i, average in elsewhere:  # (absent here, present on another rank)
                p = bucket.params[i]
                p._grad = Tensor(average.reshape(p.shape), p._dev)

    def _check_trained(self) -> None:
        """Refuse a parameter that requires grad now but did not at wrapping: no bucket
        averages it, so the ranks would drift apart."""
        for name, p in self.module.named_parameters():
            if p.requires_grad and id(p) not in self._trained:
                raise DistributedError(
                    f"gpuad.nn.parallel.DistributedDataParallel: parameter {name!r} requires "
                    "grad but did not when the model was wrapped, so its gradient would not "
                    "be averaged; set requires_grad before wrapping (wrap the model again)")

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, ``backward()`` only accumulates gradients locally; the first ``backward()``
        after it averages the sum of them all."""
        prev = self._sync
        object.__setattr__(self, "_sync", False)
        try:
            yield
        finally:
            object.__setattr__(self, "_sync", prev)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: the averaging is set up for the devices and dtypes the parameters had when
        the model was wrapped. Move the module first, then wrap it."""
        raise RuntimeError("gpuad.nn.parallel.DistributedDataParallel.to: move or cast the "
                           "module before wrapping it (model.to(device) first, then "
                           "DistributedDataParallel(model)); its gradients' buffers and "
                           "communicators were chosen for the devices and dtypes it had")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped module's forward."""
        return self.module(*args, **kwargs)

    def named_parameters(self, prefix: str = "", recurse: bool = True
                         ) -> Iterator[tuple[str, Parameter]]:
        """The wrapped module's parameters, named as it names them (no ``module.`` prefix)."""
        return self.module.named_parameters(prefix, recurse)

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """The wrapped module's buffers, named as it names them."""
        return self.module.named_buffers(prefix)

    def state_dict(self) -> Any:
        """The wrapped module's state dict: a checkpoint that a bare model loads."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        """``module``'s ``load_state_dict``; keys of a PyTorch DDP checkpoint (``module.``
        prefixed) are accepted too."""
        if state_dict and all(k.startswith("module.") for k in state_dict):
            state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
        return self.module.load_state_dict(state_dict, strict)
