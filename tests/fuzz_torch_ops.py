"""The op table and the lockstep runner of the differential fuzz against PyTorch
(tests/test_fuzz_*.py).

A program is a list of steps; every step applies one op to a gpuad value and to the matching
PyTorch value, so both frameworks run the same program side by side. Each op is spelled once
for each framework here, translating NumPy's names (``axis``, ``keepdims``, ``ddof=0``) into
PyTorch's (``dim``, ``keepdim``, ``correction``), so naming differences never show up as
discrepancies. ``Step.src`` renders a step as plain gpuad Python for a reproducer.
"""
import os
import warnings

import numpy as np
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st

import gpuad as ad

torch = None  # set by use_torch(); the test module imports torch with pytest.importorskip


def use_torch(module):
    global torch, F
    torch = module
    import torch.nn.functional as F  # noqa: F401  (module global for the table below)


F = None

def ad_tensor(arr, requires_grad=False):
    return ad.tensor(np.array(arr), requires_grad=requires_grad)


def torch_tensor(arr, requires_grad=False):
    return torch.tensor(np.array(arr)).requires_grad_(requires_grad)


# ---- elementwise ops: name -> (gpuad function, torch function) --------------------------------

def _unary():
    return {
        "abs": (ad.abs, torch.abs),
        "arctan": (ad.arctan, torch.atan),
        "ceil": (ad.ceil, torch.ceil),
        "cos": (ad.cos, torch.cos),
        "cosh": (ad.cosh, torch.cosh),
        "elu": (ad.elu, F.elu),
        "erf": (ad.erf, torch.erf),
        "exp": (ad.exp, torch.exp),
        "expm1": (ad.expm1, torch.expm1),
        "floor": (ad.floor, torch.floor),
        "gelu": (ad.gelu, F.gelu),
        "gelu_tanh": (lambda x: ad.gelu(x, approximate="tanh"),
                      lambda x: F.gelu(x, approximate="tanh")),
        "leaky_relu": (ad.leaky_relu, F.leaky_relu),
        "log": (ad.log, torch.log),
        "log1p": (ad.log1p, torch.log1p),
        "neg": (ad.neg, torch.neg),
        "reciprocal": (ad.reciprocal, torch.reciprocal),
        "relu": (ad.relu, torch.relu),
        "round": (ad.round, torch.round),
        "rsqrt": (ad.rsqrt, torch.rsqrt),
        "sigmoid": (ad.sigmoid, torch.sigmoid),
        "sign": (ad.sign, torch.sign),
        "silu": (ad.silu, F.silu),
        "sin": (ad.sin, torch.sin),
        "sinh": (ad.sinh, torch.sinh),
        "softplus": (ad.softplus, F.softplus),
        "sqrt": (ad.sqrt, torch.sqrt),
        "square": (ad.square, torch.square),
        "tan": (ad.tan, torch.tan),
        "tanh": (ad.tanh, torch.tanh),
    }


def _binary():
    return {
        "add": (ad.add, torch.add),
        "sub": (ad.sub, torch.sub),
        "mul": (ad.mul, torch.mul),
        "div": (ad.div, torch.div),
        "pow": (ad.pow, torch.pow),
        "maximum": (ad.maximum, torch.maximum),
        "minimum": (ad.minimum, torch.minimum),
    }


# ---- reductions: (gpuad, torch) taking (x, axis, keepdims, **extra) ---------------------------

def _dims(axis, ndim):
    """NumPy's axis (None, int or tuple) as a tuple of non-negative dims."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes)


def _t_full(fn):
    """A torch reduction whose dim must be given: None becomes every dim."""
    def run(x, axis, keepdims, **kw):
        if x.ndim == 0:
            return fn(x, dim=0, keepdim=keepdims, **kw)
        return fn(x, dim=_dims(axis, x.ndim), keepdim=keepdims, **kw)
    return run


def _t_extremum(fn):
    """torch's amax/amin, with its gradient a select: where(x == y, g / count, 0). torch's own
    rule multiplies g by the mask, so an inf or nan g gives the other elements nan; gpuad
    selects there, as relu and torch's own clamp do (README: deliberate differences). Where
    the result is nan, the nans share the gradient, as in torch.max() over all elements
    (amax's mask x == nan would give every element 0)."""
    class Select(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, dims, keepdim):
            y = fn(x, dim=dims, keepdim=keepdim)
            ctx.save_for_backward(x, y)
            ctx.dims, ctx.keepdim = dims, keepdim
            return y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            if not ctx.keepdim:
                for d in sorted(ctx.dims):
                    y, g = y.unsqueeze(d), g.unsqueeze(d)
            hit = (x == y) | torch.isnan(x)  # (a nan in a slice makes its result nan)
            count = hit.sum(ctx.dims, keepdim=True).to(g.dtype)
            return torch.where(hit, g / count, torch.zeros_like(x)), None, None

    def run(x, axis, keepdims):
        if x.ndim == 0:
            return Select.apply(x.reshape(1), (0,), True).reshape(())
        return Select.apply(x, _dims(axis, x.ndim), keepdims)
    return run


def _t_prod(x, axis, keepdims):
    dims = _dims(axis, x.ndim)
    if x.ndim == 0 or axis is None:
        out = torch.prod(x)
        return out.reshape((1,) * x.ndim) if keepdims else out
    out = x  # one dim at a time (edge values go through axis None or one axis only)
    for d in sorted(dims, reverse=True):
        out = torch.prod(out, dim=d, keepdim=keepdims)
    return out


def _others(x, dim):
    """The product of the other elements along ``dim``: exclusive prefix times exclusive suffix
    products, and exactly 0 where another element is 0 and the rest are finite (where the
    prefix or suffix alone overflows, inf * 0 would be nan); in float64, rounded once."""
    n = x.shape[dim]
    if n == 0:
        return x
    if x.dtype != torch.float64:
        return _others(x.double(), dim).to(x.dtype)
    ones = torch.ones_like(x.narrow(dim, 0, 1))
    left = torch.cat([ones, torch.cumprod(x.narrow(dim, 0, n - 1), dim)], dim)
    tail = torch.flip(x.narrow(dim, 1, n - 1), [dim])
    right = torch.cat([torch.flip(torch.cumprod(tail, dim), [dim]), ones], dim)
    zeros = (x == 0).sum(dim, keepdim=True) - (x == 0).to(torch.int64)
    odd = (~torch.isfinite(x)).sum(dim, keepdim=True) - (~torch.isfinite(x)).to(torch.int64)
    return torch.where((zeros > 0) & (odd == 0), torch.zeros_like(x), left * right)


def _t_prod_exact():
    """prod over ``axis`` None or one axis (the edge-value family's) whose gradient is the
    product of the others (gpuad's where the product is not a normal number; torch's prod / x
    is inf or 0 there where the exact value is finite: [1, 1e300, 1e300] gives [inf, 1e300,
    1e300])."""
    class ProdOfOthers(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, dim):
            ctx.save_for_backward(x)
            ctx.dim = dim
            return torch.prod(x) if dim is None else torch.prod(x, dim=dim)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            if ctx.dim is None:
                return (g * _others(x.reshape(-1), 0)).reshape(x.shape), None
            return g.unsqueeze(ctx.dim) * _others(x, ctx.dim), None

    def run(x, axis, keepdims):
        assert not keepdims and (axis is None or isinstance(axis, int))
        return ProdOfOthers.apply(x, None if axis is None or x.ndim == 0 else axis % x.ndim)
    return run


def _t_var(fn):
    def run(x, axis, keepdims, ddof=0):
        if x.ndim == 0:
            return fn(x, correction=ddof)
        return fn(x, dim=_dims(axis, x.ndim), correction=ddof, keepdim=keepdims)
    return run


def _t_norm(x, axis, keepdims, ord=2):
    dims = None if axis is None else _dims(axis, x.ndim)
    return torch.linalg.vector_norm(x, ord=ord, dim=dims, keepdim=keepdims)


def _scaled(fn, degree):
    """The reduction ``fn(x, axis, keepdims, **kw)``, positively homogeneous of ``degree``
    (norms and std 1, var 2), evaluated as fn(x / c) c^degree with c a power of two near
    max|x| per slice (an exact scaling). torch's float64 kernels square x as it is, so there
    norm([1e300, 1e300]), std([1e154, -1e154]) and var([1e154, -1e154]) are inf and
    std([1e-300, 0]) is 0; gpuad scales, and the edge-value family accepts this evaluation of
    the same function too."""
    def run(x, axis, keepdims, **kw):
        if x.numel() == 0:
            return fn(x, axis, keepdims, **kw)
        dims = _dims(axis, x.ndim)
        m = x.detach().abs().amax(dim=dims, keepdim=True) if x.ndim else x.detach().abs()
        m = torch.where(torch.isfinite(m) & (m > 0), m, torch.ones_like(m))
        c = torch.ldexp(torch.ones_like(m), torch.frexp(m).exponent - 1)
        out = fn(x / c, axis, keepdims, **kw)
        c = c if keepdims or not x.ndim else c.squeeze(dims)
        for _ in range(degree):
            out = out * c
        return out
    return run


def _reductions():
    return {
        "sum": (ad.sum, _t_full(torch.sum)),
        "mean": (ad.mean, _t_full(torch.mean)),
        "max": (ad.max, _t_extremum(torch.amax)),
        "min": (ad.min, _t_extremum(torch.amin)),
        "prod": (ad.prod, _t_prod),
        "logsumexp": (ad.logsumexp, _t_full(torch.logsumexp)),
        "var": (ad.var, _t_var(torch.var)),
        "std": (ad.std, _t_var(torch.std)),
        "norm": (ad.norm, _t_norm),
    }


class Table:
    """The op tables, built once torch is imported."""

    def __init__(self):
        self.unary = _unary()
        self.binary = _binary()
        self.reductions = _reductions()
        #: a second torch evaluation of the reductions where gpuad is more exact than torch:
        #: those that square (see _scaled) and prod's gradient (see _ProdOfOthers)
        self.exact = {"var": _scaled(_t_var(torch.var), 2), "std": _scaled(_t_var(torch.std), 1),
                      "norm": _scaled(_t_norm, 1), "prod": _t_prod_exact()}


# ---- comparison -------------------------------------------------------------------------------

TOL = {  # (rtol, atol) for forward values; gradients get GRAD_SCALE times more
    "float64": (1e-7, 1e-12),
    "float32": (2e-4, 1e-6),
    "float16": (4e-3, 1e-4),
}
GRAD_SCALE = {"float64": 10.0, "float32": 10.0, "float16": 4.0}


class Mismatch(AssertionError):
    pass


def to_numpy(v):
    if v is None:
        return None
    if isinstance(v, ad.Tensor):
        return np.asarray(v.numpy())
    return v.detach().cpu().numpy()


def compare(what, a, t, scale=1.0, zero_sign=False):
    """Raise Mismatch unless the gpuad value ``a`` matches the torch value ``t``: same
    presence, shape and dtype, nan in the same places, infinities equal, finite values
    within the dtype's tolerance (times ``scale``), and with ``zero_sign`` the same signed
    zeros."""
    if (a is None) != (t is None):
        raise Mismatch(f"{what}: gpuad {'None' if a is None else 'a value'}, "
                       f"torch {'None' if t is None else 'a value'}")
    if a is None:
        return
    x, y = to_numpy(a), to_numpy(t)
    if x.shape != y.shape or x.dtype != y.dtype:
        raise Mismatch(f"{what}: gpuad {x.dtype}{x.shape}, torch {y.dtype}{y.shape}")
    rtol, atol = TOL.get(str(x.dtype), (0, 0))
    rtol, atol = rtol * scale, atol * scale
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(all="ignore"):
        bad = _differs(xf, yf, rtol, atol, zero_sign)
    if bad.any():
        raise Mismatch(f"{what}: differs at {np.argwhere(bad)[:4].tolist()}\n"
                       f"  gpuad {x.tolist()}\n  torch {y.tolist()}")


def _differs(xf, yf, rtol, atol, zero_sign):
    bad = np.isnan(xf) != np.isnan(yf)
    inf = np.isinf(xf) | np.isinf(yf)
    bad |= inf & (xf != yf) & ~(np.isnan(xf) & np.isnan(yf))
    fin = np.isfinite(xf) & np.isfinite(yf)
    bad |= fin & (np.abs(xf - yf) > atol + rtol * np.maximum(np.abs(xf), np.abs(yf)))
    if zero_sign:
        bad |= (xf == 0) & (yf == 0) & (np.signbit(xf) != np.signbit(yf))
    return bad


def both_raise_or_neither(what, run_ad, run_torch):
    """Run both sides; return (gpuad result, torch result), or (None, None) when both raise.
    Warnings (NumPy's overflow warnings, torch's degrees-of-freedom warning) are ignored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _run_both(what, run_ad, run_torch)


def _run_both(what, run_ad, run_torch):
    try:
        t = run_torch()
    except (RuntimeError, ValueError, IndexError, TypeError, ZeroDivisionError) as exc:
        t_exc = exc
    else:
        t_exc = None
    try:
        a = run_ad()
    except Exception as exc:  # noqa: BLE001  (any gpuad error counts as raising)
        a_exc = exc
    else:
        a_exc = None
    if t_exc is not None and a_exc is None:
        raise Mismatch(f"{what}: torch raised {type(t_exc).__name__}: {t_exc}; gpuad did not")
    if a_exc is not None and t_exc is None:
        raise Mismatch(f"{what}: gpuad raised {type(a_exc).__name__}: {a_exc}; torch did not")
    if a_exc is not None:
        return None, None
    return a, t


# Deliberate differences, not compared: gpuad follows NumPy, where sign(nan) is nan (torch:
# 0), so abs'(nan) and the gradients of norm(ord=1) and norm(ord=inf) at nan are nan too
# (torch: 0). Op chains keep nan away from sign, abs and those norms; test_edge_values covers
# sign and abs without nan (tests/test_torch_differences.py pins the difference).
PIECEWISE = {"sign", "abs"}
# relu(-0) and elu(-0) are +0 (NumPy's maximum(-0, 0), the same on every platform; torch: -0):
# op chains keep -0 away from them, where 1 / relu(-0) would be +inf against torch's -inf
SIGNED_ZERO = {"relu", "elu"}
# Second derivatives that differ by design, so a program with such a step (Lockstep's
# first_order_only) compares first derivatives only: gpuad's rules select where torch's multiply
# a zero mask by inf, so for std and norm where the result is 0 (their masked rules;
# tests/test_torch_differences.py), gpuad's are 0 and torch's nan; var with no degrees of
# freedom is 0/0, and torch's second derivative of that nan is 0 (an accident of the order of
# its operations), gpuad's nan.
# ZERO_BASE: pow's exponent gradient at a zero base is 0 by a where (0 ** b is constant for
# b > 0), selected in gpuad, multiplied in torch, so an inf arriving there (1 / 0 ** b) gives 0
# against nan, at every order: op chains keep zero bases away from pow (test_edge_values and
# tests/test_torch_differences.py cover them).
# the ops that choose among tied zeros of either sign (see unsigned_zero)
ZERO_SIGN_FREE = {"max", "min", "maximum", "minimum"}

SCALE = max(1, int(os.environ.get("GPUAD_FUZZ_EXAMPLES", "1")))


def fuzz(n):
    return settings(max_examples=n * SCALE, derandomize=True, deadline=None, database=None,
                    print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# ---- lockstep values ----------------------------------------------------------------------------

def _fmt(arr):
    """An array as a Python literal (the reproducer imports ``inf`` and ``nan``)."""
    return repr(np.asarray(arr).tolist())


class Lockstep:
    """Values held in both frameworks, with the gpuad source of every step for a reproducer."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.vals = []  # (gpuad, torch, name)
        self.leaves = []
        self.lines = ["import numpy as np", "import gpuad as ad", "from math import inf, nan"]
        self.first_order_only = False  # set by a step whose second derivatives differ by design

    def _name(self):
        return f"v{len(self.vals)}"

    def leaf(self, arr, rg):
        arr = np.asarray(arr, dtype=self.dtype)
        name = self._name()
        a = ad.tensor(arr.copy(), requires_grad=rg)
        t = torch.tensor(arr.copy(), requires_grad=rg)
        data = _fmt(arr) if arr.size else f"np.zeros({arr.shape!r})"
        self.lines.append(f"{name} = ad.tensor({data}, dtype=ad.{self.dtype}, "
                          f"requires_grad={rg})")
        self.vals.append((a, t, name))
        if rg:
            self.leaves.append((a, t, name))
        return len(self.vals) - 1

    def apply(self, src, fa, ft, *idx):
        """Run one op on values ``idx`` (or on ready-made operand triples); compare; keep the
        result. ``src`` formats the gpuad source with the operands' names."""
        ops = [self.vals[i] if isinstance(i, int) else i for i in idx]
        line = src.format(*[o[2] for o in ops])
        self.lines.append(f"{self._name()} = {line}")
        note("\n".join(self.lines))
        a, t = both_raise_or_neither(line, lambda: fa(*[o[0] for o in ops]),
                                     lambda: ft(*[o[1] for o in ops]))
        if a is None:
            self.lines[-1] = f"# raises in both: {line}"
            return None
        compare(line, a, t)
        self.vals.append((a, t, self._name()))
        return len(self.vals) - 1


def _broadcast_partner(draw, shape):
    """A shape that broadcasts against ``shape``: a suffix of it with some dims set to 1."""
    k = draw(st.integers(0, len(shape)))
    part = list(shape[len(shape) - k:])
    return tuple(1 if draw(st.booleans()) and d else d for d in part)


def _check_no_sharing(named):
    """No two gradients (or a gradient and a caller's tensor) share storage. (The results of
    one ``ad.grad`` call, named ``g[i]``, may share among themselves, as in PyTorch.)"""
    arrs = [(n, to_np_array(v)) for n, v in named if v is not None]
    for i, (n1, a1) in enumerate(arrs):
        for n2, a2 in arrs[i + 1:]:
            if n1[:2] == n2[:2] == "g[":
                continue
            if np.shares_memory(a1, a2):
                raise Mismatch(f"{n1} and {n2} share storage")


def _called(fn, *args):
    """fn(*args), or True where it returns None (a backward pass, an in-place op)."""
    out = fn(*args)
    return True if out is None else out


def to_np_array(v):
    return v.array if isinstance(v, ad.Tensor) else v
