"""The CUDA backend: the Backend interface implemented with CuPy.

This module is imported only when a CUDA tensor is made. Hot methods are overridden here; the
custom kernels from ``kernels/`` replace them in their own layer.
"""
import contextlib

import cupy
import cupyx
import numpy as np
from cupyx.scipy import special as _special

from .base import FUNCTIONS, METHODS, UFUNCS, Backend


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
