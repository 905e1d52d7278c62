"""The Tensor methods that move data between devices and dtypes: ``to``, ``cpu``, ``cuda``.

They are ops (differentiable: the gradient flows back to the source device and dtype), so this
floor adds them to :class:`~gpuad.tensor.Tensor`, as :mod:`.methods` adds the others.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..devices import Device, resolve
from ..dtypes import as_dtype
from ..tensor import Tensor
from .casts import astype, to_device

if TYPE_CHECKING:
    from .._typing import DeviceLike, DTypeLike


def to(self: Tensor, device: DeviceLike | DTypeLike | Tensor = None, dtype: DTypeLike = None
       ) -> Tensor:
    """This tensor on ``device`` and/or as ``dtype``; differentiable; ``self`` if unchanged.

    As in PyTorch, the first argument may also be a dtype (``x.to(ad.float64)``) or a
    tensor whose device and dtype are taken."""
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
        out = astype(out, dtype)
    return out


def cpu(self: Tensor) -> Tensor:
    """This tensor on the CPU (itself when it is there)."""
    return to(self, "cpu")


def cuda(self: Tensor, device: int | str | None = None) -> Tensor:
    """This tensor on a CUDA device: the current one, or ``device`` (an index or a name)."""
    return to(self, "cuda" if device is None else
              (device if isinstance(device, str) else f"cuda:{device}"))


for _method in (to, cpu, cuda):
    setattr(Tensor, _method.__name__, _method)
