"""The CPU backend: the Backend interface implemented with NumPy."""
import math
import types

import numpy as np

from . import cpu_parallel, cpu_pool, kernel_table
from .axis_math import reduced_size, spread_of
from .base import Backend

_math_erf = np.frompyfunc(math.erf, 1, 1)


_UNLOADED = object()
#: SciPy's erf (fast and exact), imported when erf is first used (importing scipy.special takes
#: ~0.15 s: no start-up pays it); None without SciPy (math.erf per element then)
_scipy_erf = _UNLOADED


def _load_scipy_erf():
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return erf

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
QUIET = ("true_divide power arctan_grad logsumexp log_softmax softmax center var std "
         "vector_norm fused_cross_entropy products_in_range").split()

#: Composite elementwise functions (several NumPy passes each), which large arrays evaluate in
#: cache-sized chunks spread over threads (``cpu_parallel``). Single ufuncs stay bound
#: directly: one pass gains little from chunks, and a wrapper would slow every small op.
_ALL = np.logical_and.reduce
SPLIT = "sigmoid softplus gelu silu rsqrt leaky_relu elu".split()

class _Quiet:
    """``np.errstate(all="ignore")`` by the error-state context variable directly (~0.3 us
    where ``np.errstate`` takes ~2 us), around each backward pass."""

    __slots__ = ("token",)

    def __enter__(self):
        self.token = _fp_state.set(_QUIET)

    def __exit__(self, *exc):
        _fp_state.reset(self.token)


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


#: the integer type of each float type's width (for selects on the bits)
_BITS = {np.dtype(f"f{n}"): np.dtype(f"i{n}") for n in (2, 4, 8)}


def _reshape(a, shape):
    return a.reshape(shape)  # (the array method: np.reshape adds ~0.5 us of Python)


def _transpose(a, axes=None):
    return a.transpose(axes)


def _array(v):
    """``v`` as an array: itself where it is one (of a subclass too: a compiled function's
    tracer follows its arrays), else a 0-d array (a ufunc gives a scalar for 0-d inputs)."""
    return v if isinstance(v, np.ndarray) else np.asarray(v)


def _contiguous(a):
    """``a`` in C order: itself or a copy (as np.ascontiguousarray, which a compiled function's
    tracer cannot follow)."""
    return a if a.flags.c_contiguous else a.copy()


def _sum(a, axis=None, keepdims=False, dtype=None):
    """np.sum without its Python wrapper (the ufunc reduction it calls: the same result)."""
    return np.add.reduce(a, axis=axis, dtype=dtype, keepdims=keepdims)


_CUBED = (np.dtype(np.float32), np.dtype(np.float64))

#: per float dtype, the smallest sum of squares that is computed as exactly as a scaled one
#: (its largest term is far from the subnormals): tiny / eps
_SAFE_LOW = {np.dtype(t): np.finfo(t).tiny / np.finfo(t).eps
             for t in (np.float16, np.float32, np.float64)}


#: the NumPy functions :func:`spread_of` calls, as bare ufunc methods (``np.sum`` goes through
#: a Python wrapper that costs more than the sum of a row of a few hundred)
_BOUND = types.SimpleNamespace(sum=_sum, maximum=np.maximum)


def _plain_var(x, axis, ddof, keepdims):
    """var about NumPy's one-pass mean without scaling, by :func:`spread_of` (so the same bits
    as the base's scaled form wherever neither overflows nor underflows), and without np.var's
    Python wrapper, which takes twice as long as the arithmetic on rows of a few hundred. No
    degrees of freedom (N - ddof <= 0) gives x/0, which :func:`_safe` refuses."""
    n = reduced_size(x.shape, axis)
    return spread_of(_BOUND, x - _sum(x, axis=axis, keepdims=True) / n, axis, n, ddof,
                     keepdims)


def _safe(total):
    """Whether every sum of squares (or powers) in ``total`` is finite and at least
    ``_SAFE_LOW``; zeros fail too (all-zero slices, and those whose squares underflowed)."""
    low = None if total is None else _SAFE_LOW.get(total.dtype)
    return low is not None and bool(_ALL((total >= low) & (total < np.inf), axis=None))


#: the two-input elementwise forwards (the binary ops' methods) that large arrays split
_BINARY = "add subtract multiply true_divide power maximum minimum".split()


class _Large:
    """The CPU backend's methods for arrays of at least ``LARGE`` elements: each elementwise
    forward and derivative rule evaluated in cache-sized chunks over threads
    (:func:`cpu_parallel.elementwise`: the same bits as one call); anything else is the
    backend's own."""

    def __init__(self, backend):
        self._backend = backend
        for name in _BINARY + kernel_table.forward_methods():
            if name not in SPLIT:  # (those split already)
                setattr(self, name, cpu_parallel.elementwise(getattr(backend, name)))

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def fused_unary_grad(self, row, g, s, params):
        """The backend's fast rule, chunk by chunk: its temporaries stay in cache."""
        backend = self._backend
        if not backend._fast_rule_applies(row, g, s):
            return None  # (the composed rule runs)
        return cpu_parallel.elementwise(lambda g, s, *p: row.fast(backend, g, s, *p))(
            g, s, *params)


class NumpyBackend(Backend):
    name = "numpy"
    #: the fused rules save only Python per op here: used when nothing records
    fused_grad_nodes = False

    def __init__(self):
        super().__init__(np)
        cpu_pool.keep_freed_memory()
        self._rng = np.random.default_rng()
        self.power = self._power
        self.reshape = _reshape
        self.transpose = _transpose
        self.sum = _sum
        for name in SPLIT:
            setattr(self, name, cpu_parallel.elementwise(getattr(self, name)))
        for name in QUIET + kernel_table.quiet_methods():
            setattr(self, name, _quiet(getattr(self, name)))
        self.large = _Large(self)

    def _power(self, a, b, out=None):
        """a ** b (bound as ``power``; ``out`` as the ufunc's, for ``pow_``). A float32 or
        float64 array cubed is a * a * a, as PyTorch computes it: NumPy's pow takes some 50
        times longer on negative bases (the C library's slow path). (float16 keeps pow's
        single rounding, as PyTorch.)"""
        if b.__class__ in (int, float) and b == 3 and a.dtype in _CUBED:
            return np.multiply(a * a, a, out=out)
        return np.power(a, b, out=out)

    def relu_grad(self, g, y):
        """where(y <= 0, 0, g), the relu rule (a relu output is >= 0 or nan, so y <= 0 is
        y == 0): g's bits and'ed with all ones where y != 0 and with 0 elsewhere. A select, so
        an inf or nan g where y == 0 gives 0 (not 0 * inf = nan), at a multiply's speed
        (np.where takes several times as long on the random masks of relu)."""
        bits = _BITS[g.dtype]
        keep = (y != 0).astype(bits)
        if keep.ndim:
            np.negative(keep, out=keep)  # 1 -> -1: every bit set
            return np.bitwise_and(g.view(bits), keep, out=keep).view(g.dtype)
        return np.bitwise_and(g.view(bits), -keep).view(g.dtype)  # (0-d: NumPy scalars)

    def fused_cross_entropy(self, logits, labels, ignore_index, smoothing):
        """The CUDA kernel's contract in NumPy: ``(loss, dlogits)`` for (N, C) float32/float64
        ``logits`` and int ``labels`` (N,), with q = (1 - e) onehot + e / C the per-row loss
        log sum exp z - (1 - e) z[label] - e mean(z) (z = x - max x) and dlogits = softmax - q;
        rows labelled ``ignore_index`` give 0 and 0. One node instead of a dozen composed ops;
        None where it does not apply."""
        if (logits.dtype.kind != "f" or logits.dtype.itemsize < 4 or logits.ndim != 2
                or logits.size == 0 or labels.shape != logits.shape[:1]):
            return None
        rows = np.arange(logits.shape[0])
        ignored = labels == ignore_index
        some_ignored = ignored.any()
        safe = np.where(ignored, 0, labels) if some_ignored else labels
        # (quiet, as every name in QUIET: inf logits give nan, as the composed path)
        # With few classes the rows are reduced as columns of the transpose: NumPy reduces a
        # short contiguous axis several times slower than it adds rows together.
        across = logits.shape[1] <= 32
        x, axis = (_contiguous(logits.T), 0) if across else (logits, 1)
        at = (safe, rows) if across else (rows, safe)
        z = x - x.max(axis=axis, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=axis, keepdims=True)
        loss = np.log(total.reshape(-1)) - (1 - smoothing) * z[at]
        if smoothing:
            loss -= smoothing * z.mean(axis=axis)
        e /= total  # softmax
        e[at] -= 1 - smoothing
        if smoothing:
            e -= smoothing / logits.shape[1]
        if across:
            e = _contiguous(e.T)
        if some_ignored:
            loss[ignored] = 0
            e[ignored] = 0
        return loss.astype(logits.dtype, copy=False), e

    # ---- var, std, norms: the plain formulas where they are safe ------------------------------
    def vector_norm(self, x, p, axis, keepdims):
        """(sum |x|^p)^(1/p) as it is where the sum is safely inside the float range (the
        usual case, at the cost of one test of the small result), else the base's scaled form
        (for p = 2 the same bits where both are finite)."""
        x = self._floats(x)
        total = _sum(x * x if p == 2 else self.power(np.abs(x), p), axis=axis, keepdims=keepdims)
        if _safe(total):
            return np.sqrt(total) if p == 2 else self.power(total, 1.0 / p)
        return super().vector_norm(x, p, axis, keepdims)

    def center(self, x, axis):
        """x - mean(x) with the mean refined once, as the base's (:func:`refined`), unscaled
        where every mean and refinement is finite (the usual case, at the cost of testing
        those two small arrays), else the base's scaled form (a sum or x - mean overflowed)."""
        x = self._floats(x)
        n = reduced_size(x.shape, axis)
        if n:
            m = _sum(x, axis=axis, keepdims=True) / n
            if _ALL(np.isfinite(m), axis=None):
                d = x - m
                r = _sum(d, axis=axis, keepdims=True) / n
                if _ALL(np.isfinite(r), axis=None):
                    d -= r
                    return d
        return super().center(x, axis)

    def var(self, x, axis=None, ddof=0, keepdims=False):
        """NumPy's var where it is safely inside the float range, else the base's scaled form
        (where the mean or the squares overflow, or the squares underflow)."""
        if x.dtype.kind == "c":  # (NumPy's own, by the base)
            return super().var(x, axis, ddof, keepdims)
        x = self._floats(x)
        out = _plain_var(x, axis, ddof, keepdims)
        return out if _safe(out) else super().var(x, axis, ddof, keepdims)

    def std(self, x, axis=None, ddof=0, keepdims=False):
        if x.dtype.kind == "c":
            return super().std(x, axis, ddof, keepdims)
        x = self._floats(x)
        out = _plain_var(x, axis, ddof, keepdims)
        return np.sqrt(out) if _safe(out) else super().std(x, axis, ddof, keepdims)

    def to_numpy(self, a):
        return np.array(a, copy=True)

    def all_finite(self, a):
        """The base's test as one ufunc reduction (``ndarray.all`` goes through a Python
        wrapper): it runs after every derivative rule in the anomaly mode."""
        return a.dtype.kind not in "fc" or bool(_ALL(np.isfinite(a), axis=None))

    def errstate(self):
        return _Quiet() if _fp_state is not None else np.errstate(all="ignore")

    def _erf(self, x):
        global _scipy_erf
        if _scipy_erf is _UNLOADED:
            _scipy_erf = _load_scipy_erf()
        if _scipy_erf is not None and x.dtype in (np.float32, np.float64):  # (its loops)
            return _array(_scipy_erf(x)).astype(x.dtype, copy=False)
        out = _array(_math_erf(x.astype(np.float64)))
        return out.astype(np.float64).astype(x.dtype, copy=False)

    def check_indices(self, index, size, axis):
        """NumPy raises IndexError for out-of-range indices by itself."""

    def _scatter_add(self, out, index, values):
        np.add.at(out, index, values)
