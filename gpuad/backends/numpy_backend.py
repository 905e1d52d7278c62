"""The CPU backend: the Backend interface implemented with NumPy."""
import math

import numpy as np

from . import cpu_parallel
from .base import Backend

try:  # SciPy's erf is fast and exact; without SciPy, math.erf is applied per element.
    from scipy.special import erf as _scipy_erf
except ImportError:  # pragma: no cover - depends on the environment
    _scipy_erf = None

_math_erf = np.frompyfunc(math.erf, 1, 1)

try:  # NumPy 2 keeps its floating-point error state in a context variable: setting it directly
    # silences an op for ~0.3 us, where np.errstate costs ~2 us.
    from numpy._core._ufunc_config import _extobj_contextvar as _fp_state

    with np.errstate(all="ignore"):
        _QUIET = _fp_state.get()
except ImportError:  # pragma: no cover - other NumPy versions
    _fp_state = None

#: Ops that routinely turn finite inputs into inf or nan (log(0), 1/0, exp overflow, ...).
#: They run without NumPy's RuntimeWarnings, as PyTorch and CuPy do; plain arithmetic
#: (add, multiply, ...) keeps NumPy's warnings for overflow.
QUIET = ("log log1p sqrt rsqrt reciprocal true_divide power exp expm1 sinh cosh "
         "logsumexp log_softmax softmax var std").split()

#: Composite elementwise functions (several NumPy passes each), which large arrays evaluate in
#: cache-sized chunks spread over threads (``cpu_parallel``). Single ufuncs stay bound
#: directly: one pass gains little from chunks, and a wrapper would slow every small op.
SPLIT = "sigmoid softplus gelu silu rsqrt leaky_relu elu".split()

def _quiet(fn):
    if _fp_state is None:  # pragma: no cover
        def call(*args, **kwargs):
            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
    else:
        def call(*args, **kwargs):
            token = _fp_state.set(_QUIET)
            try:
                return fn(*args, **kwargs)
            finally:
                _fp_state.reset(token)
    call.__name__ = getattr(fn, "__name__", "call")
    return call


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        super().__init__(np)
        self._rng = np.random.default_rng()
        self.power = self._power
        for name in SPLIT:
            setattr(self, name, cpu_parallel.elementwise(getattr(self, name)))
        for name in QUIET:
            setattr(self, name, _quiet(getattr(self, name)))

    def _power(self, a, b):
        """a ** b (bound as ``power``). A float array cubed is a * a * a, as PyTorch computes
        it: NumPy's pow takes some 50 times longer on negative bases (the C library's slow
        path)."""
        if b.__class__ is int and b == 3 and a.dtype.kind == "f":
            return a * a * a
        return np.power(a, b)

    def to_numpy(self, a):
        return np.array(a, copy=True)

    def errstate(self):
        return np.errstate(all="ignore")

    def seed(self, n):
        self._rng = np.random.default_rng(n % 2**64)

    def rand(self, shape, dtype):
        return self._rng.random(shape, dtype=np.float64).astype(dtype, copy=False)

    def randn(self, shape, dtype):
        return self._rng.standard_normal(shape, dtype=np.float64).astype(dtype, copy=False)

    def _erf(self, x):
        if _scipy_erf is not None:
            return np.asarray(_scipy_erf(x)).astype(x.dtype, copy=False)
        out = _math_erf(x.astype(np.float64))
        return np.asarray(out, dtype=np.float64).astype(x.dtype, copy=False)

    def check_indices(self, index, size, axis):
        """NumPy raises IndexError for out-of-range indices by itself."""

    def _scatter_add(self, out, index, values):
        np.add.at(out, index, values)
