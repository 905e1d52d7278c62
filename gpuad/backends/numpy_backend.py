"""The CPU backend: the Backend interface implemented with NumPy."""
import math

import numpy as np

from .base import Backend

try:  # SciPy's erf is fast and exact; without SciPy, math.erf is applied per element.
    from scipy.special import erf as _scipy_erf
except ImportError:  # pragma: no cover - depends on the environment
    _scipy_erf = None

_math_erf = np.frompyfunc(math.erf, 1, 1)


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        super().__init__(np)
        self._rng = np.random.default_rng()

    def to_numpy(self, a):
        return np.array(a, copy=True)

    def errstate(self):
        return np.errstate(all="ignore")

    def seed(self, n):
        self._rng = np.random.default_rng(n)

    def rand(self, shape, dtype):
        return self._rng.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def randn(self, shape, dtype):
        return self._rng.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)

    def erf(self, x):
        x = np.asarray(x)
        if _scipy_erf is not None:
            return np.asarray(_scipy_erf(x)).astype(x.dtype, copy=False)
        out = _math_erf(x.astype(np.float64))
        return np.asarray(out, dtype=np.float64).astype(x.dtype, copy=False)

    def _scatter_add(self, out, index, values):
        np.add.at(out, index, values)
