"""The CUDA backend: the Backend interface implemented with CuPy.

This module is imported only when a CUDA tensor is made. The composite activations and the
derivatives of the elementwise ops run in one kernel each, built from ``kernels/`` (see
:mod:`.cupy_kernels`); other dtypes fall back to the generic array code.
"""
import contextlib

import cupy
import cupyx
import numpy as np
from cupyx.scipy import special as _special

from . import cupy_kernels
from .base import FUNCTIONS, METHODS, UFUNCS, Backend
from .kernel_table import TYPES, UNARY


def _on(device, fn):
    """``fn`` run with ``device`` as CuPy's current device, where kernels launch and arrays
    are allocated (so cuda:1 tensors stay on GPU 1 whatever device is current)."""

    def call(*args, **kwargs):
        with device:
            return fn(*args, **kwargs)

    call.__name__ = getattr(fn, "__name__", "call")
    return call


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, index):
        super().__init__(cupy)
        self.index = index
        self.cuda_device = cupy.cuda.Device(index)
        for name in UFUNCS + FUNCTIONS + METHODS + ["rand", "randn", "seed"]:
            setattr(self, name, _on(self.cuda_device, getattr(self, name)))
        with self.cuda_device:
            self._rng = cupy.random.default_rng()
        self.kernels = cupy_kernels.Kernels()

    # ---- fused elementwise kernels (kernels/elementwise.cuh) --------------------------------
    def _fused(self, op, x, params=()):
        """``op``'s forward in one kernel; None where no kernel applies (not a float dtype)."""
        row = cupy_kernels.row_of(op, params)
        if row is None or x.dtype not in TYPES:
            return None
        nums = cupy_kernels.numeric(row, params)
        return self.kernels.elementwise(f"{row.kernel}_fwd", x.dtype, 1, len(nums))(x, *nums)

    def fused_unary_grad(self, op, g, s, params):
        """The derivative rule of unary ``op`` applied to the output gradient ``g`` and the
        saved ``s`` (input or output) in one kernel; None where no kernel applies."""
        row = cupy_kernels.row_of(op, params)
        if row is None or row.reads is None or g.dtype != s.dtype \
                or g.dtype not in TYPES:
            return None
        nums = cupy_kernels.numeric(row, params)
        with self.cuda_device:
            return self.kernels.elementwise(f"{row.kernel}_bwd", g.dtype, 2, len(nums))(
                g, s, *nums)

    def warmup(self):
        """Build (compile, or load from CuPy's cache) every elementwise kernel for every
        dtype; returns how many."""
        count = 0
        with self.cuda_device:
            for row in UNARY:
                nums = (1.0,) * sum(1 for p in row.params if "=" not in p)
                for dtype in TYPES:
                    one = cupy.zeros(1, dtype=dtype)
                    self.kernels.elementwise(f"{row.kernel}_fwd", dtype, 1, len(nums))(
                        one, *nums)
                    count += 1
                    if row.reads:
                        self.kernels.elementwise(f"{row.kernel}_bwd", dtype, 2, len(nums))(
                            one, one, *nums)
                        count += 1
        return count

    def sigmoid(self, x):
        out = self._fused("sigmoid", x)
        return super().sigmoid(x) if out is None else out

    def silu(self, x):
        out = self._fused("silu", x)
        return super().silu(x) if out is None else out

    def softplus(self, x, beta, threshold):
        out = self._fused("softplus", x, (beta, threshold))
        return super().softplus(x, beta, threshold) if out is None else out

    def gelu(self, x, approximate):
        out = self._fused("gelu", x, (approximate,))
        return super().gelu(x, approximate) if out is None else out

    def elu(self, x, alpha):
        out = self._fused("elu", x, (alpha,))
        return super().elu(x, alpha) if out is None else out

    def leaky_relu(self, x, slope):
        out = self._fused("leaky_relu", x, (slope,))
        return super().leaky_relu(x, slope) if out is None else out

    def rsqrt(self, x):
        out = self._fused("rsqrt", x)
        return super().rsqrt(x) if out is None else out

    def to_numpy(self, a):
        return cupy.asnumpy(a)

    def errstate(self):
        return contextlib.nullcontext()

    def seed(self, n):
        self._rng = cupy.random.default_rng(n % 2**64)

    def rand(self, shape, dtype):
        return self._rng.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def randn(self, shape, dtype):
        return self._rng.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)

    def _erf(self, x):
        return _special.erf(x)

    def _scatter_add(self, out, index, values):
        cupyx.scatter_add(out, index, values)
