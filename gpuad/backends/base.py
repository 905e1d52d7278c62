"""The Backend interface: every piece of array work an op needs, written once against an
array module ``xp`` (NumPy or CuPy).

Ops in ``gpuad/ops`` call only these methods, never NumPy or CuPy directly. Elementwise ufuncs
are bound straight from ``xp`` (no wrapper on the hot path); composite math (sigmoid, softplus,
gelu, the row-wise softmax family, scatter-add) is written here in numerically stable forms, and
a device backend may override any method with a faster kernel.
"""
import contextlib
import math

from . import kernel_table, tracing
from .axis_math import AxisMath
from .checks import ValueChecks
from .cpu_parallel import MIN_SIZE

# Bound directly from the array module under the same name (and so are the unary ops'
# forwards that the backend does not define: kernel_table.forward_methods).
UFUNCS = (
    "add subtract multiply true_divide power maximum minimum where equal not_equal less "
    "less_equal greater greater_equal logical_not logical_and logical_or logical_xor isnan "
    "isinf isfinite matmul frexp ldexp"
).split()

# Bound directly from the array module: reductions, shape and linear-algebra functions.
FUNCTIONS = (
    "sum mean max min prod any all argmax argmin reshape transpose broadcast_to "
    "concatenate stack flip pad einsum zeros ones full empty zeros_like arange linspace eye "
    "nonzero"
).split()


#: arrays of at least this many elements take the backend's ``large`` methods (ops check the
#: size once, so small arrays pay no wrapper)
LARGE = MIN_SIZE

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


class Backend(ValueChecks, AxisMath):
    """Array operations for one device kind, implemented with the array module ``xp``."""

    name = "generic"
    #: whether a fused derivative is worth a graph node of its own when the backward pass
    #: records (create_graph, tapes, forward mode): yes for a kernel launch saved (CUDA)
    fused_grad_nodes = True
    #: ``fused_softmax_grad(mode, g, y, x, axes)``: the softmax family's derivative rules in
    #: one kernel (the CUDA backend); None here
    fused_softmax_grad = None
    #: ``fused_optimizer_step(kind, arrays, hyper)``: an optimizer update of flat buffers in
    #: one kernel (the CUDA backend); None here: parameters are updated one by one
    fused_optimizer_step = None
    #: ``fused_cross_entropy(logits, labels, ignore_index, smoothing)``: ``(loss, dlogits)``
    #: of softmax cross-entropy in one pass, or None where it does not apply; None here
    fused_cross_entropy = None
    #: ``synchronize()``: wait for the device's queued work, raising a failed queued check;
    #: ``warmup()``: build every kernel the ops launch, returning how many (the CUDA backend,
    #: for ``ad.cuda``); None here: the CPU queues nothing and builds no kernels
    synchronize = None
    warmup = None

    def __init__(self, xp):
        self.xp = xp
        self.array_type = xp.ndarray
        for fname in UFUNCS + FUNCTIONS:
            setattr(self, fname, getattr(xp, fname))
        for fname in kernel_table.forward_methods():
            if not hasattr(self, fname):
                setattr(self, fname, getattr(xp, fname))
        #: the methods for arrays of at least ``LARGE`` elements (the CPU's split them over
        #: threads); the same ones here
        self.large = self

    @classmethod
    def array_methods(cls):
        """The names of the backend's array work: the array module's functions it binds and
        every public method (a device backend runs each on its own device)."""
        return UFUNCS + FUNCTIONS + kernel_table.forward_methods() + sorted(
            name for klass in reversed(Backend.__mro__) for name, value in vars(klass).items()
            if not name.startswith("_") and callable(value) and name != "array_methods"
            and klass is not object)

    def fused_unary_grad(self, row, g, s, params):
        """The rule of the elementwise op ``row`` (a :class:`gpuad.ops.define.Unary`) on the raw
        arrays ``g`` (the output gradient) and ``s`` (what the rule reads): ``row.fast`` where
        the row has it and both are floats of one dtype; None otherwise (the rule then runs
        as composed ops). A device backend runs the row's kernel instead."""
        if not self._fast_rule_applies(row, g, s):
            return None
        return row.fast(self, g, s, *params)

    @staticmethod
    def _fast_rule_applies(row, g, s):
        """Whether ``row.fast`` (the raw-array rule) runs on ``g`` and ``s``: the row has one
        and both are floats of one dtype."""
        return row.fast is not None and g.dtype == s.dtype and g.dtype.kind == "f"

    # ---- conversion -------------------------------------------------------------------
    def asarray(self, data, dtype=None):
        return self.xp.asarray(data, dtype=dtype)

    def copy(self, a):
        return a.copy()

    def astype(self, a, dtype):
        return a.astype(dtype, copy=False)

    def to_numpy(self, a):
        """A NumPy copy of ``a`` (a device-to-host transfer for device arrays)."""
        raise NotImplementedError

    def from_dlpack(self, obj):
        return self.xp.from_dlpack(obj)

    def all_finite(self, a):
        """Whether no value of ``a`` is nan or ±inf, as a host bool (the anomaly mode's check of
        every derivative rule's result): an elementwise test and an all-reduction."""
        if a.dtype.kind not in "fc":
            return True
        return bool(self.xp.isfinite(a).all())

    def errstate(self):
        """A context that silences floating-point warnings (used around backward passes)."""
        raise NotImplementedError

    def on_device(self):
        """A context in which ``xp`` used directly allocates and launches on this backend's
        device (code outside the backend that calls ``xp``, the optimizers: CuPy works on
        the current device); nothing to do where there is one device."""
        return contextlib.nullcontext()

    # ---- random -------------------------------------------------------------------------
    def seed(self, n):
        """Restart this device's generator (``xp``'s default one) from the seed ``n`` (in a
        compiled function, a step that each replay takes again)."""
        tracing.opaque(self._seed, n)

    def _seed(self, n):
        self._rng = self.xp.random.default_rng(n % 2**64)

    def rand(self, shape, dtype):
        """Uniform samples in [0, 1), drawn in float64 and rounded to ``dtype``."""
        return tracing.draw(self._draw, "random", shape, dtype)

    def randn(self, shape, dtype):
        """Standard normal samples, drawn in float64 and rounded to ``dtype``."""
        return tracing.draw(self._draw, "standard_normal", shape, dtype)

    def _draw(self, method, shape, dtype):
        """The generator's ``method`` (a distribution) in float64, rounded to ``dtype`` (a
        compiled step draws again through here on each replay)."""
        return getattr(self._rng, method)(shape, dtype=self.xp.float64).astype(dtype, copy=False)

    # ---- undoing broadcasting -------------------------------------------------------------
    def sum_to(self, a, shape):
        """``a``, a broadcast of ``shape`` (of another shape), summed down to it: over its
        leading axes and over the axes where ``shape`` has 1 and ``a`` more; a new array, in
        the dtype the sum op gives (float16 summed in float32 and cast back, as there). The
        calls are the backend's, so they run on the array's device."""
        lead = a.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, s in enumerate(shape) if s == 1 and a.shape[lead + i] != 1)
        if a.dtype == self.xp.float16:
            return self.reshape(self.astype(self.sum(a, axis=axes, dtype=self.xp.float32),
                                            a.dtype), shape)
        return self.reshape(self.sum(a, axis=axes), shape)

    # ---- stable composite elementwise math ----------------------------------------------
    def sigmoid(self, x):
        """1 / (1 + exp(-x)), evaluated through e = exp(-|x|) so it never overflows: r = 1 / (1 + e)
        where x >= 0, else e r. The choice is the product r max(e, [x >= 0]) (e <= 1), which
        is branch-free and several times faster than a masked select on random signs."""
        xp = self.xp
        if x.dtype.kind in "biu":  # in the float type NumPy's exp gives (-|x| wraps unsigned)
            x = x.astype(xp.result_type(x.dtype, xp.float16))
        if not x.ndim:  # (NumPy makes scalars of 0-d results, which take no out=)
            return Backend.sigmoid(self, x.reshape(1)).reshape(())  # (this formula's bits)
        e = xp.abs(x)  # (each step in place where it can: two new arrays, not seven)
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        r = xp.add(e, 1)
        xp.true_divide(1, r, out=r)
        xp.maximum(e, xp.greater_equal(x, 0), out=e)
        return xp.multiply(r, e, out=r)

    def relu(self, x):
        return self.xp.maximum(x, 0)

    def relu_grad(self, g, y):
        """The relu rule on raw arrays: g where the output y > 0 (or nan), else 0, selected
        (an inf or nan g where y == 0 gives 0)."""
        return self.xp.where(y <= 0, 0, g)

    def softsign(self, x):
        """x / (1 + |x|)."""
        return x / (self.xp.abs(x) + 1)

    def step(self, x):
        """1 where x > 0, else 0, in x's dtype."""
        return (x > 0).astype(x.dtype)

    def reciprocal(self, x):
        """1 / x; integer and boolean inputs give floats, as PyTorch (not NumPy's 1 // x)."""
        if x.dtype.kind in "biu":
            return self.xp.true_divide(1, x)
        return self.xp.reciprocal(x)

    def softplus(self, x, beta, threshold):
        """log(1 + exp(beta x)) / beta as max(bx, 0) + log1p(exp(-|bx|)); linear past threshold."""
        xp = self.xp
        bx = x * beta
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta
        return xp.where(bx > threshold, x, soft)

    def erf(self, x):
        """The error function, in floating point: float16 is computed in float32 and
        integers give float64."""
        if x.dtype.kind in "biu":
            return self._erf(x.astype("float64"))
        if x.dtype == "float16":
            return self._erf(x.astype("float32")).astype("float16")
        return self._erf(x)

    def _erf(self, x):
        """erf of a float32 or float64 array, in the same dtype."""
        raise NotImplementedError

    def clip(self, x, lo, hi):
        """min(max(x, lo), hi): where lo > hi the result is hi, as NumPy and PyTorch."""
        xp = self.xp
        if lo is not None:
            x = xp.maximum(x, lo)
        if hi is not None:
            x = xp.minimum(x, hi)
        return x

    def gelu(self, x, approximate):
        """x Phi(x) with Phi the normal CDF (erf form), or PyTorch's tanh approximation
        (float16 computed in float32, where x^3 cannot overflow)."""
        if x.dtype == "float16":
            return self.gelu(x.astype("float32"), approximate).astype(x.dtype)
        if approximate == "tanh":  # (tanh has saturated past |x| = 100, where x^3 overflows)
            c = self.xp.clip(x, -100.0, 100.0)
            u = _SQRT_2_OVER_PI * (c + 0.044715 * c * c * c)
            return 0.5 * x * (1 + self.xp.tanh(u))
        return 0.5 * x * (1 + self.erf(x * _INV_SQRT_2))

    # ---- indexing -------------------------------------------------------------------------
    def getitem(self, a, index):
        return a[index]

    def index_add(self, shape, dtype, index, values, advanced):
        """zeros(shape) with ``values`` added at ``index``; repeated (advanced) indices
        accumulate. A basic index (slices and ints) cannot repeat, so it is a plain store."""
        out = self.xp.zeros(shape, dtype=dtype)
        if advanced:
            self._scatter_add(out, index, values)
        else:
            out[index] = values
        return out

    def _scatter_add(self, out, index, values):
        raise NotImplementedError

    def setitem(self, a, index, value):
        a[index] = value

    # ---- activations with parameters (kept here so a device backend can fuse them) ------
    def rsqrt(self, x):
        return self.xp.reciprocal(self.xp.sqrt(x))

    def silu(self, x):
        return x * self.sigmoid(x)

    def leaky_relu(self, x, slope):
        return self.xp.where(x > 0, x, x * slope)

    def elu(self, x, alpha):
        xp = self.xp
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))
