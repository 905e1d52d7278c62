"""``nvmath.bindings.cublas`` in the stand-in: the few cuBLAS calls gpuad makes while capturing
(gpuad/backends/capture_blas.py), checked as cuBLAS checks them, on the stand-in's memory.

A handle launches on the stream it was bound to (``set_stream``), not on CuPy's current one: a
gemm is recorded into that stream's capture where it captures, and runs at once otherwise (as
a real handle bound to the wrong stream would run outside the graph). ``set_stream`` drops the
workspace, as cuBLAS does; a gemm on a capturing stream without one is refused (cuBLAS would
allocate inside the capture). A gemm reads and writes through raw device pointers with
column-major leading dimensions and batch strides, so wrong arithmetic there shows as wrong
numbers or as a read outside the operands' memory.
"""
import ctypes
import enum
import types
import weakref

import numpy as np

from . import capture, cuda
from .stats import stats


class Operation(enum.IntEnum):
    N = 0
    T = 1
    C = 2


class ComputeType(enum.IntEnum):
    COMPUTE_32F = 68
    COMPUTE_64F = 70


class GemmAlgo(enum.IntEnum):
    DFALT = -1


class cuBLASError(RuntimeError):  # noqa: N801 (nvmath's name)
    pass


_TYPES = {0: np.float32, 1: np.float64}  # cudaDataType
_COMPUTE = {0: ComputeType.COMPUTE_32F, 1: ComputeType.COMPUTE_64F}
_streams = weakref.WeakValueDictionary()  # pointer -> stand-in stream
_handles = {}  # handle -> {"stream": pointer, "workspace": (pointer, bytes) or None}


def register(stream):
    """Make ``stream`` findable by its pointer (called by the stand-in's ``Stream.ptr``)."""
    _streams[stream._ptr] = stream


def create():
    handle = 1 + len(_handles)
    _handles[handle] = {"stream": 0, "workspace": None}
    return handle


def destroy(handle):
    _handles.pop(handle)


def set_stream(handle, stream):
    _handles[handle].update(stream=stream, workspace=None)


def set_workspace(handle, workspace, size):
    if size <= 0 or not workspace:
        raise cuBLASError("CUBLAS_STATUS_INVALID_VALUE: empty workspace")
    _handles[handle]["workspace"] = (workspace, size)


def _matrix(pointer, dtype, rows, cols, ld, stride, count):
    """The ``count`` column-major ``rows`` x ``cols`` matrices at ``pointer`` (leading dimension
    ``ld``, ``stride`` elements apart) as a NumPy view of that memory, (count, rows, cols)."""
    item = np.dtype(dtype).itemsize
    if ld < max(1, rows):
        raise cuBLASError(f"CUBLAS_STATUS_INVALID_VALUE: ld {ld} < rows {rows}")
    span = ((count - 1) * stride + (cols - 1) * ld + rows) * item
    raw = (ctypes.c_char * span).from_address(pointer)
    buf = np.frombuffer(raw, dtype=np.uint8)
    return np.lib.stride_tricks.as_strided(buf.view(dtype), (count, rows, cols),
                                           (stride * item, item, ld * item))


def gemm_strided_batched_ex(handle, transa, transb, m, n, k, alpha, a, atype, lda, stride_a,
                            b, btype, ldb, stride_b, beta, c, ctype, ldc, stride_c, count,
                            compute_type, algo):
    """C = alpha op(A) op(B) + beta C, column-major, ``count`` times (cublasGemmStridedBatchedEx
    with host-pointer scalars)."""
    state = _handles[handle]
    if not atype == btype == ctype or compute_type != _COMPUTE.get(atype):
        raise cuBLASError("CUBLAS_STATUS_NOT_SUPPORTED: types "
                          f"{atype}, {btype}, {ctype}, compute {compute_type}")
    dtype = _TYPES[atype]
    scalars = [np.frombuffer((ctypes.c_char * np.dtype(dtype).itemsize).from_address(p),
                             dtype)[0] for p in (alpha, beta)]
    shape_a = (m, k) if transa == Operation.N else (k, m)
    shape_b = (k, n) if transb == Operation.N else (n, k)
    A = _matrix(a, dtype, *shape_a, lda, stride_a, count)
    B = _matrix(b, dtype, *shape_b, ldb, stride_b, count)
    C = _matrix(c, dtype, m, n, ldc, stride_c, count)

    def run():
        opa = A if transa == Operation.N else A.transpose(0, 2, 1)
        opb = B if transb == Operation.N else B.transpose(0, 2, 1)
        product = np.matmul(opa, opb)
        C[...] = scalars[0] * product + (scalars[1] * C if scalars[1] else 0)

    stream = _streams.get(state["stream"], cuda.Stream.null)
    c_ = capture.launching(stream)
    if c_ is None:
        stats.launches += 1
        run()
    else:
        if state["workspace"] is None:
            raise cuBLASError("a gemm while capturing without a workspace set after set_stream "
                              "(cuBLAS would allocate one inside the capture)")
        capture.record(c_, run)


def modules():
    """``{module name: module}``: ``nvmath``, ``nvmath.bindings``, ``nvmath.bindings.cublas``."""
    cublas = types.ModuleType("nvmath.bindings.cublas")
    for name in ("Operation", "ComputeType", "GemmAlgo", "cuBLASError", "create", "destroy",
                 "set_stream", "set_workspace", "gemm_strided_batched_ex"):
        setattr(cublas, name, globals()[name])
    bindings = types.ModuleType("nvmath.bindings")
    bindings.cublas = cublas
    root = types.ModuleType("nvmath")
    root.bindings = bindings
    root.__version__ = "1.0.1+standin"
    return {"nvmath": root, "nvmath.bindings": bindings, "nvmath.bindings.cublas": cublas}
