"""``DistributedDataParallel``: one model replica per process, its gradients averaged across the
ranks after every ``backward()``, so that every rank takes the same optimizer step.

At construction the ranks check that they wrap the same model (names, shapes, dtypes) and
rank 0's parameters and buffers are broadcast to all. During a ``backward()`` pass, the first
parameter gradient computed queues one averaging for the end of the pass
(:mod:`gpuad.autograd.callbacks`); it then all-reduces the gradients, one call per bucket (the
parameters of one device and dtype):

- where the gradients already are consecutive views of one flat buffer (on CUDA, the fused
  optimizer's, after ``zero_grad(set_to_none=False)``), that buffer is reduced in place;
- otherwise they are copied into the bucket's own flat buffer, reduced, and copied back.

The average is ``sum / world_size`` (NCCL's average on CUDA). A parameter without a gradient
on this rank counts as zeros, so that every rank ends with the same gradient. Inside
``ad.compile`` the averaging is one recorded step that every replay runs again on the CPU; on
CUDA with NCCL, its copies and ``ncclAllReduce`` are kernels that the step's CUDA graph
captures.
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
        self.sizes = [p.size for p in params]
        with self.backend.on_device():
            self.flat = self.backend.xp.empty(sum(self.sizes), first.dtype)

    def _shared_base(self, grads: tuple[Any, ...]) -> Any:
        """The one flat buffer whose consecutive views ``grads`` are, or None."""
        base = grads[0].base
        if base is None or base.ndim != 1 or not base.flags.c_contiguous:
            return None
        if base.size != sum(self.sizes):
            return None
        off = 0
        address = base.__array_interface__["data"][0] if isinstance(base, np.ndarray) \
            else base.data.ptr
        for g, size in zip(grads, self.sizes):
            here = g.__array_interface__["data"][0] if isinstance(g, np.ndarray) \
                else g.data.ptr
            if g.base is not base or not g.flags.c_contiguous or \
                    here != address + off * base.itemsize:
                return None
            off += size
        return base

    def _through_flat(self, arrays: tuple[Any, ...], work: Any, read: bool = True) -> None:
        """``work`` on the flat buffer holding ``arrays`` one after another (the arrays
        themselves, where they are consecutive views of one buffer), then back into them."""
        with self.backend.on_device():
            base = self._shared_base(arrays)
            if base is not None:
                collectives._run(self.comm, base, self.backend, work)
                return
            off = 0
            for a, size in zip(arrays, self.sizes):
                if read:
                    self.flat[off:off + size] = a.reshape(-1)
                off += size
            collectives._run(self.comm, self.flat, self.backend, work)
            off = 0
            for a, size in zip(arrays, self.sizes):
                a[...] = self.flat[off:off + size].reshape(a.shape)
                off += size

    def reduce(self, *grads: Any) -> None:
        """Average ``grads`` (this bucket's gradients) across the ranks, in place: one
        all-reduce."""
        self._through_flat(grads, lambda a: self.comm.all_reduce(a, "mean"))

    def broadcast(self, *arrays: Any) -> None:
        """Rank 0's ``arrays`` (this bucket's tensors) into every rank's: one broadcast."""
        self._through_flat(arrays, lambda a: self.comm.broadcast(a, 0))


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
        object.__setattr__(self, "_pending", False)
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
        """A parameter's gradient was computed: average them all when the pass ends."""
        if self._sync and not self._pending and queue_callback(self._average):
            object.__setattr__(self, "_pending", True)

    def _average(self) -> None:
        object.__setattr__(self, "_pending", False)
        for bucket in self._buckets:
            for p in bucket.params:
                if p._grad is None:  # (unused here: zeros, so every rank ends the same)
                    with bucket.backend.on_device():
                        zeros = bucket.backend.xp.zeros(p.shape, p.dtype)
                    p._grad = Tensor(zeros, p._dev)
            grads = [p._grad._a for p in bucket.params]
            if bucket.comm.name == "nccl":  # (device work: a CUDA graph captures it)
                bucket.reduce(*grads)
            else:  # (host work: ad.compile replays the call)
                tracing.opaque(bucket.reduce, *grads)

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
