"""Matrix products inside a CUDA-graph capture, through a cuBLAS handle of gpuad's own.

CuPy 14 refuses cuBLAS while a stream captures (its handle's ``setStream`` raises), so
``matmul``, ``@``, ``dot``, ``tensordot`` and ``nn.Linear`` could not be captured. gpuad keeps
one handle per device and capture stream, made with NVIDIA's Python bindings (nvmath-python,
the ``capture`` extra, imported only here, when a capture begins), bound to that stream before
the capture begins and given a workspace that outlives every graph (cuBLAS then allocates
nothing while capturing; it drops the workspace on every ``set_stream``, so it is set again
after it).

The product. For row-major ``A`` (m, k) and ``B`` (k, n), cuBLAS (column-major) sees each
C-contiguous matrix as its transpose, so ``C = A B`` is ``Cᵀ = Bᵀ Aᵀ``: one gemm with ``B``
first, ``op = N`` and the row length as leading dimension; an F-contiguous operand (a
transposed view, ``W.T`` in ``nn.Linear``) is the matrix itself, taken with ``op = T``, with no
copy. Batches (NumPy's broadcasting of the leading axes) are one strided-batched gemm, an
operand without batch axes having stride 0; 1-D operands are promoted as NumPy does. float32
and float64 only, computed in their own precision (``COMPUTE_32F``, ``COMPUTE_64F``: no TF32).
"""
import math
import threading

import numpy as np

from .probe import install_hint

#: bytes of each handle's workspace: cuBLAS's recommendation for Hopper (32 MiB)
WORKSPACE = 32 * 2**20

#: the state of a warm-up block: products prepared as a capture prepares them, then CuPy's
WARMUP = "warm-up"


class _Now(threading.local):
    handle = None  # (bindings, handle, workspace) of this thread's capture, an error, WARMUP


_now = _Now()
_handles: dict = {}  # (device index, stream pointer) -> (bindings, handle, workspace)
_SCALARS = {np.dtype(t): (np.ones(1, t), np.zeros(1, t)) for t in (np.float32, np.float64)}


def capturing():
    """Whether a capture on this thread routes matrix products here."""
    return _now.handle is not None


def warm_up():
    """A warm-up block begins on this thread: products allocate what a capture will (the
    same operand copies and result), so that the capture finds that memory in the pool."""
    _now.handle = WARMUP


def begin(cupy, index, stream):
    """Before ``stream`` (on device ``index``, current) begins to capture: this thread's matrix
    products go to the handle bound to it (made now, at the first capture on it). Without the
    bindings, they raise, naming the extra."""
    key = (index, stream.ptr)
    if key not in _handles:
        try:
            from nvmath.bindings import cublas
        except ImportError as exc:
            _now.handle = exc
            return
        handle = cublas.create()
        workspace = cupy.empty(WORKSPACE, dtype=np.uint8)
        cublas.set_stream(handle, stream.ptr)
        cublas.set_workspace(handle, workspace.data.ptr, WORKSPACE)
        _handles[key] = (cublas, handle, workspace)
    _now.handle = _handles[key]


def end():
    """The capture or warm-up on this thread has ended."""
    _now.handle = None


def matmul(cupy, a, b):
    """``cupy.matmul(a, b)`` (NumPy's rules) through gpuad's handle while capturing; other
    dtypes than float32/float64 go to CuPy (integers use no cuBLAS there)."""
    if _now.handle is None:
        return cupy.matmul(a, b)
    dtype = np.result_type(a.dtype, b.dtype)
    if dtype.char not in "fd":
        return cupy.matmul(a, b)
    if isinstance(_now.handle, ImportError):
        raise NotImplementedError(
            f"calling cuBLAS (matmul of {a.shape} and {b.shape}) while a stream captures needs "
            "gpuad's own handle, which needs NVIDIA's bindings: "
            + install_hint("capture")) from _now.handle
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if vector_a else a
    b = b[:, None] if vector_b else b
    (m, k), n = a.shape[-2:], b.shape[-1]
    if b.shape[-2] != k:
        raise ValueError(f"matmul: {a.shape} @ {b.shape}: inner sizes differ")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    out = cupy.empty(batch + (m, n), dtype)
    if out.size and not k:
        out.fill(0)
    elif out.size:
        _gemm(cupy, a, b, out, batch)
    return out.reshape(batch + (() if vector_a else (m,)) + (() if vector_b else (n,)))


def _operand(cupy, x, batch):
    """``(x, op, leading dimension, batch stride)``: ``x`` (..., r, c) as cuBLAS takes it,
    copied only where its layout has no such description."""
    if x.ndim > 2 and x.shape[:-2] != batch:
        x = cupy.ascontiguousarray(cupy.broadcast_to(x, batch + x.shape[-2:]))
    layout = _layout(x)
    if layout is None:
        x = x.copy(order="C")  # (fresh strides: a size-1 view may count as contiguous as is)
        layout = _layout(x)
    return (x, *layout)


def _layout(x):
    """``(op, leading dimension, batch stride)`` of ``x`` (..., r, c) in elements, or None.
    The stride of an axis of size 1 is never read, so it does not count."""
    r, c = x.shape[-2:]
    item = x.itemsize
    s0, s1 = x.strides[-2:]
    stride = _batch_stride(x, item)
    if stride is None:
        return None
    if (s1 == item or c == 1) and (r == 1 or (s0 % item == 0 and s0 // item >= max(c, 1))):
        return "N", s0 // item if r > 1 else max(c, 1), stride
    if (s0 == item or r == 1) and (c == 1 or (s1 % item == 0 and s1 // item >= max(r, 1))):
        return "T", s1 // item if c > 1 else max(r, 1), stride
    return None


def _batch_stride(x, item):
    """The elements between consecutive matrices of ``x``'s batch (0 without batch axes), or
    None where the batch axes are not one uniform stride."""
    if x.ndim == 2:
        return 0
    dims = [(n, s) for n, s in zip(x.shape[:-2], x.strides[:-2]) if n != 1]
    if not dims:
        return 0
    for (_, s), (n_next, s_next) in zip(dims, dims[1:]):
        if s != s_next * n_next:
            return None
    s = dims[-1][1]
    return s // item if s % item == 0 and s > 0 else None


def _gemm(cupy, a, b, out, batch):
    """``out = a @ b`` as one strided-batched gemm: ``outᵀ = bᵀ aᵀ`` in cuBLAS's terms (in a
    warm-up, CuPy's product of the same operands)."""
    (m, k), n = a.shape[-2:], b.shape[-1]
    a, op_a, ld_a, stride_a = _operand(cupy, a, batch)
    b, op_b, ld_b, stride_b = _operand(cupy, b, batch)
    if _now.handle is WARMUP:
        cupy.matmul(a, b, out=out)
        return
    cublas, handle, _ = _now.handle
    one, zero = _SCALARS[out.dtype]
    kind = 0 if out.dtype == np.float32 else 1  # cudaDataType: CUDA_R_32F, CUDA_R_64F
    compute = cublas.ComputeType.COMPUTE_32F if kind == 0 else cublas.ComputeType.COMPUTE_64F
    cublas.gemm_strided_batched_ex(
        handle, getattr(cublas.Operation, op_b), getattr(cublas.Operation, op_a), n, m, k,
        one.ctypes.data, b.data.ptr, kind, ld_b, stride_b, a.data.ptr, kind, ld_a, stride_a,
        zero.ctypes.data, out.data.ptr, kind, n, m * n, math.prod(batch), compute,
        cublas.GemmAlgo.DFALT)
