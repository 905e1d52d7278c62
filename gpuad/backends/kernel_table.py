"""The elementwise ops' rows, as the backends read them, and the kernels they name.

The ops register their rows here (:func:`register`; each row is written once, in
``gpuad/ops/elementwise.py``, see :class:`gpuad.ops.define.Unary`), before any backend is made.
A backend binds each row's forward (``row.forward``) from its array module unless it defines
that method, and silences NumPy's warnings on the ``quiet`` ones; the CUDA backend runs the rule
of every row with a ``kernel`` as ``<kernel>_bwd`` of ``kernels/elementwise.cuh``, and its
forward as ``<kernel>_fwd`` where ``kernel_forward`` is set. The header holds exactly the
functions the rows name: tests/test_kernels_host.py compiles it for the host, checks every
function against the NumPy backend and the op's rules, and fails on a function no row names.
"""
import enum
from typing import Any

import numpy as np

#: every unary op's row, in the order the ops define them
UNARY: list[Any] = []


def register(row):
    """Add an op's row (called by ``gpuad.ops.define.unary`` as each op is defined)."""
    UNARY.append(row)


def kernel_rows():
    """The rows whose derivative (and perhaps forward) runs in a kernel of the header."""
    return [row for row in UNARY if row.kernel]


def forward_methods():
    """The backend method names that compute the ops' forwards."""
    return list(dict.fromkeys(row.forward for row in UNARY))


def quiet_methods():
    """The forwards on which NumPy warns where PyTorch is silent."""
    return list(dict.fromkeys(row.forward for row in UNARY if row.quiet))


#: data dtype -> (CuPy's parameter type, the type the math runs in: float16 in float)
TYPES = {
    np.dtype(np.float16): ("float16", "float"),
    np.dtype(np.float32): ("float32", "float"),
    np.dtype(np.float64): ("float64", "double"),
}


def elementwise_spec(function, dtype, n_inputs, n_params=0):
    """``(in_params, out_params, operation, name)`` of the CuPy ElementwiseKernel that applies
    ``gpuad::<function>`` to ``n_inputs`` arrays of ``dtype`` and ``n_params`` scalars."""
    dtype = np.dtype(dtype)
    ctype, acc = TYPES[dtype]
    ins = [f"{ctype} a{i}" for i in range(n_inputs)] + [f"float64 p{j}" for j in range(n_params)]
    args = [f"({acc})a{i}" for i in range(n_inputs)] + [f"({acc})p{j}" for j in range(n_params)]
    return (", ".join(ins), f"{ctype} out",
            f"out = gpuad::{function}<{acc}>({', '.join(args)});",
            f"gpuad_{function}_{dtype.name}")


def launched(row):
    """``(function, n_inputs)`` of the header functions the CUDA backend launches for ``row``:
    its forward where ``kernel_forward`` is set, and its derivative."""
    return ([(f"{row.kernel}_fwd", 1)] if row.kernel_forward else []) + [
        (f"{row.kernel}_bwd", 2)]


def backend_elementwise():
    """``(function, dtype, n_inputs, n_params)`` of every ElementwiseKernel the CUDA backend
    builds (``CupyBackend.warmup`` builds these, tests/test_kernels_nvrtc.py compiles them)."""
    for row in kernel_rows():
        for function, n_inputs in launched(row):
            for dtype in TYPES:
                yield function, dtype, n_inputs, len(row.params)


def kernel_functions():
    """Every function name the table uses from the header: exactly what the backend launches."""
    return [function for row in kernel_rows() for function, _ in launched(row)]


class RowMode(enum.IntEnum):
    """What a kernel of kernels/rowwise.cu computes along each row (its ``mode`` argument,
    ``GPUAD_<name>`` in the source: :func:`row_mode_defines`)."""

    SOFTMAX = 0
    LOG_SOFTMAX = 1
    LOGSUMEXP = 2  # one value per row


def row_mode_defines():
    """The ``#define GPUAD_<MODE> <value>`` lines that kernels/rowwise.cuh is compiled with."""
    return "".join(f"#define GPUAD_{m.name} {m.value}\n" for m in RowMode)


#: the templated kernels of kernels/rowwise.cu and kernels/optim.cu (instantiated per dtype)
ROWWISE = ("softmax_warp", "softmax_block", "softmax_backward_warp", "softmax_backward_block",
           "cross_entropy_warp", "cross_entropy_block")
OPTIM = ("sgd_update", "adam_update")
#: the source file of each kernel module, and its kernels
MODULES = {"rowwise.cu": ROWWISE, "optim.cu": OPTIM}
