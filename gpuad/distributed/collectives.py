"""The collectives on gpuad tensors: ``all_reduce``, ``broadcast``, ``all_gather`` and
``barrier``, on CPU and CUDA tensors.

Each public call first checks that every rank passes the same thing (one small all-gather of
the call's signature: what is called, the dtype, the shape, the op, the source rank), so that
mismatched shapes or dtypes end in a :class:`DistributedError` naming each rank's, never in
corrupt data or a hang. The data then goes through the group's communicator for the tensor's
device kind, in place; an array the communicator cannot take as it is (not contiguous, or a
dtype it lacks: float16 and bool through MPI) travels through a staging copy. Like PyTorch's
collectives, they act on the data and are not recorded for autograd; the tensor's version
counter is bumped, so a graph that saved it refuses to use the changed values.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..backends import tracing
from ..errors import DeviceMismatchError, DistributedError
from ..tensor import Tensor
from . import group as groups
from .mpi_comm import MpiCommunicator

OPS = ("sum", "mean", "max", "min")
#: the dtypes MPI's host path computes in, per dtype it lacks
MPI_STAGING = {"float16": np.float32, "bool": np.uint8}
#: signature slots: call, dtype, ndim, op, src, shape hash, then up to MAX_DIMS dimensions
MAX_DIMS = 10
CALLS = ("all_reduce", "broadcast", "all_gather", "barrier")


def _tensor(t: Any, op: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"gpuad.distributed.{op}: expected a gpuad Tensor, got "
                        f"{type(t).__name__}")
    return t


def _comm(group: groups.Group, t: Tensor, op: str) -> Any:
    """The communicator for ``t``'s device kind."""
    kind = t._dev.type
    comm = group.comms.get(kind)
    if comm is None and kind == "cuda":
        comm = group.comms.get("cpu")  # (through the host)
    if comm is None:
        raise DistributedError(
            f"gpuad.distributed.{op}: a {kind} tensor {t.shape} {t.dtype}, but this group "
            f"(backend {group.backend!r}) has no communicator for {kind} tensors: "
            + ("launch with mpiexec, mpirun or srun so that MPI carries CPU tensors, or move "
               "the tensor to the GPU (.cuda())" if kind == "cpu" else "install NCCL"))
    if kind == "cuda" and comm.name == "nccl" and f"cuda:{comm.device}" != str(t._dev):
        raise DeviceMismatchError(
            f"gpuad.distributed.{op}: a tensor on {t._dev}, but this rank's NCCL communicator "
            f"is on cuda:{comm.device} (its local rank's GPU); move it with "
            f".to('cuda:{comm.device}')")
    return comm


def _signature(call: str, a: Any, op: str, src: int) -> np.ndarray:
    shape = tuple(a.shape)
    sig = np.full(6 + MAX_DIMS, -1, np.int64)
    sig[:6] = (CALLS.index(call), a.dtype.num, len(shape), OPS.index(op) if op in OPS else -1,
               src, zlib.crc32(repr(shape).encode()))
    sig[6:6 + min(len(shape), MAX_DIMS)] = shape[:MAX_DIMS]
    return sig


def _describe(sig: np.ndarray) -> str:
    if not 0 <= sig[0] < len(CALLS) or not 0 <= sig[2] <= 64:
        return "something else (not one of gpuad's collectives at this point)"
    if CALLS[int(sig[0])] == "barrier":
        return "barrier()"
    ndim = int(sig[2])
    dims = [int(d) for d in sig[6:6 + min(ndim, MAX_DIMS)]]
    shape = "(" + ", ".join(map(str, dims)) + ("," if ndim == 1 else "") + \
        (", ..." if ndim > MAX_DIMS else "") + ")"
    text = f"{_dtype_name(sig[1])} {shape}"
    if sig[3] >= 0:
        text += f" op={OPS[int(sig[3])]!r}"
    if CALLS[int(sig[0])] == "broadcast":
        text += f" src={int(sig[4])}"
    return text


def _dtype_name(num: Any) -> str:
    for name in ("float16", "float32", "float64", "int32", "int64", "bool", "uint8", "int8",
                 "int16", "uint16", "uint32", "uint64", "complex64", "complex128"):
        if np.dtype(name).num == int(num):
            return name
    return f"dtype#{int(num)}"


def agree(comm: Any, call: str, a: Any, op: str = "", src: int = -1) -> None:
    """Raise a DistributedError unless every rank calls ``call`` with an array like ``a``."""
    if comm.size == 1:
        return
    sig = _signature(call, a, op, src)
    rows = np.zeros((comm.size, sig.size), np.int64)
    what = f"{call} of {_describe(sig)} (its check that the ranks agree)"
    if comm.name == "nccl":
        with comm.cupy.cuda.Device(comm.device):
            device_rows = comm.cupy.zeros(rows.shape, rows.dtype)
            comm.all_gather(comm.cupy.asarray(sig), device_rows, what)
            rows = device_rows.get()
    else:
        comm.all_gather(sig, rows, what)
    if (rows == rows[0]).all():
        return
    called = {int(r[0]) for r in rows}

    def named(row: np.ndarray) -> str:
        known = 0 <= row[0] < len(CALLS) and CALLS[int(row[0])] != "barrier"
        return CALLS[int(row[0])] + " " if len(called) > 1 and known else ""

    ranks = "; ".join(f"rank {r}: {named(row)}{_describe(row)}" for r, row in enumerate(rows))
    raise DistributedError(
        f"gpuad.distributed.{call}: the ranks disagree ({ranks}); every rank must make the "
        "same call with a tensor of the same shape and dtype (and the same op and source)")


def _run(comm: Any, a: Any, backend: Any, work: Any) -> None:
    """``work(buffer)`` on ``a`` in place, through a staging copy where ``comm`` cannot take
    ``a`` as it is."""
    if isinstance(comm, MpiCommunicator):
        host = a if isinstance(a, np.ndarray) else backend.to_numpy(a)
        staged = MPI_STAGING.get(host.dtype.name, host.dtype)
        buffer = np.ascontiguousarray(host, dtype=staged)
        work(buffer)
        if buffer is not a:
            a[...] = buffer if host is a else backend.asarray(buffer.astype(a.dtype))
        return
    buffer = a if a.flags.c_contiguous else backend.xp.ascontiguousarray(a)
    work(buffer)
    if buffer is not a:
        a[...] = buffer


def _in_place(t: Tensor, call: str, op: str, src: int, work: Any) -> None:
    group = groups.require(call)
    comm = _comm(group, t, call)
    comm.check_usable()
    backend = t._dev._backend

    def run(a: Any) -> None:
        agree(comm, call, a, op, src)
        with backend.on_device():
            _run(comm, a, backend, lambda buffer: work(comm, buffer))

    tracing.opaque(run, t._a)  # (ad.compile: each replay communicates again)
    t._ver[0] += 1


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """Combine ``tensor`` across ranks, in place: the elementwise sum, mean, max or min of
    every rank's tensor (the same shape and dtype on every rank). Returns ``tensor``.

    >>> ad.distributed.init_process_group()  # (here: a world of one, which changes nothing)
    >>> t = ad.tensor([1.0, 2.0])
    >>> ad.distributed.all_reduce(t, op="sum")  # under mpiexec -n 2: [2., 4.]
    tensor([1., 2.])
    >>> ad.distributed.destroy_process_group()
    """
    t = _tensor(tensor, "all_reduce")
    if op not in OPS:
        raise ValueError(f"gpuad.distributed.all_reduce: op={op!r}; choose one of "
                         f"{', '.join(map(repr, OPS))}")
    if op == "mean" and t.dtype.kind != "f":
        raise TypeError(f"gpuad.distributed.all_reduce: op='mean' needs a floating tensor, got "
                        f"{t.dtype}; reduce with op='sum' and divide, or cast first")
    if t.dtype.kind == "b" and op in ("sum", "mean"):
        raise TypeError(f"gpuad.distributed.all_reduce: op={op!r} on a bool tensor; use "
                        "op='max' (any rank True) or 'min' (every rank True)")
    _in_place(t, "all_reduce", op, -1, lambda comm, a: comm.all_reduce(a, op))
    return t


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Rank ``src``'s ``tensor`` into every rank's ``tensor``, in place. Returns ``tensor``.

    >>> ad.distributed.init_process_group()
    >>> ad.distributed.broadcast(ad.tensor([3.0]), src=0)
    tensor([3.])
    >>> ad.distributed.destroy_process_group()
    """
    t = _tensor(tensor, "broadcast")
    size = groups.require("broadcast").world_size
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < size:
        raise ValueError(f"gpuad.distributed.broadcast: src={src!r}; give a rank in "
                         f"[0, {size})")
    _in_place(t, "broadcast", "", src, lambda comm, a: comm.broadcast(a, src))
    return t


def all_gather(*args: Any) -> Tensor | list[Tensor]:
    """Every rank's tensor, on every rank. ``all_gather(t)`` returns them stacked, shape
    ``(world_size, *t.shape)``; PyTorch's ``all_gather(tensor_list, t)`` fills
    ``tensor_list`` (one tensor per rank) and returns it.

    >>> ad.distributed.init_process_group()
    >>> ad.distributed.all_gather(ad.tensor([1.0, 2.0]))  # one row per rank
    tensor([[1., 2.]])
    >>> ad.distributed.destroy_process_group()
    """
    if len(args) == 2:
        out_list, tensor = args
        gathered = all_gather(tensor)
        assert isinstance(gathered, Tensor)
        if not isinstance(out_list, list) or len(out_list) != gathered.shape[0]:
            raise ValueError(f"gpuad.distributed.all_gather: tensor_list must be a list of "
                             f"{gathered.shape[0]} tensors (one per rank)")
        for target, value in zip(out_list, gathered._a):
            _tensor(target, "all_gather")
            if target._dev != gathered._dev or target.shape != tensor.shape \
                    or target.dtype != tensor.dtype:
                raise ValueError(
                    f"gpuad.distributed.all_gather: tensor_list holds a {target.dtype} "
                    f"{target.shape} tensor on {target._dev}; each must be like the tensor "
                    f"gathered ({tensor.dtype} {tensor.shape} on {tensor._dev})")
            with target._dev._backend.on_device():
                target._a[...] = value
            target._ver[0] += 1
        return out_list
    if len(args) != 1:
        raise TypeError("gpuad.distributed.all_gather: call all_gather(tensor) or "
                        "all_gather(tensor_list, tensor)")
    t = _tensor(args[0], "all_gather")
    group = groups.require("all_gather")
    comm = _comm(group, t, "all_gather")
    comm.check_usable()
    backend = t._dev._backend
    with backend.on_device():
        out = backend.xp.empty((group.world_size, *t.shape), t.dtype)

    def run(a: Any, out: Any) -> None:
        agree(comm, "all_gather", a)
        with backend.on_device():
            if isinstance(comm, MpiCommunicator):
                host = a if isinstance(a, np.ndarray) else backend.to_numpy(a)
                staged = MPI_STAGING.get(a.dtype.name, a.dtype)
                host_out = np.empty(out.shape, staged)
                comm.all_gather(np.ascontiguousarray(host, dtype=staged), host_out)
                out[...] = host_out if isinstance(out, np.ndarray) else backend.asarray(
                    host_out.astype(out.dtype))
            else:
                comm.all_gather(backend.xp.ascontiguousarray(a), out)

    tracing.opaque(run, t._a, out)
    return Tensor(out, t._dev)


def barrier() -> None:
    """Return when every rank has called ``barrier()``.

    >>> ad.distributed.init_process_group()
    >>> ad.distributed.barrier()
    >>> ad.distributed.destroy_process_group()
    """
    group = groups.require("barrier")
    comm = group.comms.get("cpu") or group.comms["cuda"]
    comm.check_usable()
    agree(comm, "barrier", np.zeros(0, np.int64))
    comm.barrier()
