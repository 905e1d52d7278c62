"""Differential fuzz against PyTorch: random programs run in lockstep in gpuad and torch (CPU).

Four families, each a hypothesis test with a fixed, derandomized example count:

- ``test_op_chains``: elementwise, reduction, linear-algebra and shape ops chained on random
  shapes (0-d and zero-length axes included, with broadcasting); forward values, ``.grad`` of
  leaves, retained non-leaf gradients, ``ad.grad`` and second derivatives are compared.
- ``test_inplace_through_views``: in-place ops through chains of views (slices, element views
  ``w[0, 1]`` and ``w[1][2]``, transposes), then backward; the version-counter errors must
  agree ("modified by an in-place operation").
- ``test_create_graph_mixes``: backward passes with and without ``create_graph``, with caller
  seeds and retained non-leaves, accumulating into the same leaves; no two ``.grad`` share
  storage and the caller's tensors stay unchanged.
- ``test_edge_values``: nan, ±inf, ±0, huge and tiny values and the float16 range through
  every op's forward and backward.

Where torch raises, gpuad must raise too (and the reverse). Every failure prints the program
as plain gpuad code. ``PINNED`` keeps one reproducer for each family of bugs this fuzz or
issue 15 found (sections 1-3), run against PyTorch by ``test_pinned_reproducer``.
``PIECEWISE`` notes the deliberate differences (NumPy's sign(nan) = nan).
``GPUAD_FUZZ_EXAMPLES=<n>`` multiplies the example counts for a long local run; the default
run takes about 15 s on 2 cores.
"""
import contextlib
import os
import warnings
from functools import partial

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import gpuad as ad

torch = pytest.importorskip("torch")

from fuzz_torch_ops import (  # noqa: E402  (needs torch first)
    GRAD_SCALE,
    Mismatch,
    Table,
    both_raise_or_neither,
    compare,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()

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


# ---- family (a): op chains ----------------------------------------------------------------------

SHAPE = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)


def _values(rng, shape, dtype):
    """Values in [-2, 2], a third of them on a grid of quarters (zeros, ties, kinks)."""
    x = rng.uniform(-2, 2, shape)
    grid = rng.random(shape) < 0.33
    return np.where(grid, np.round(x * 4) / 4, x).astype(dtype)


def _broadcast_partner(draw, shape):
    """A shape that broadcasts against ``shape``: a suffix of it with some dims set to 1."""
    k = draw(st.integers(0, len(shape)))
    part = list(shape[len(shape) - k:])
    return tuple(1 if draw(st.booleans()) and d else d for d in part)


def _axis(draw, ndim, many=True):
    if ndim == 0:
        return None
    kinds = ["none", "int", "tuple"] if many else ["int"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(axes)


def _nan(p, *idx):
    return any(bool(torch.isnan(p.vals[i][1]).any()) for i in idx)


def _negative_zero(p, i):
    v = p.vals[i][1].detach()
    return bool(((v == 0) & torch.signbit(v)).any())


def step_unary(draw, p, i):
    name = draw(st.sampled_from(sorted(T.unary)))
    if name in PIECEWISE and _nan(p, i):
        name = "neg"
    if name in SIGNED_ZERO and _negative_zero(p, i):
        name = "leaky_relu"
    fa, ft = T.unary[name]
    return p.apply(f"ad.{name}({{}})" if name != "gelu_tanh" else
                   "ad.gelu({}, approximate='tanh')", fa, ft, i)


_OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def step_binary(draw, p, i, rng):
    names = sorted(T.binary)
    name = draw(st.sampled_from(names))
    fa, ft = T.binary[name]
    a = p.vals[i][0]
    kind = draw(st.sampled_from(["scalar", "leaf", "value"]))
    if kind == "scalar" and name in _OPERATORS:
        s = draw(st.sampled_from([2.0, 3.0, 0.5, -1.0, 0.0, 1.5, -2.5]))
        sym = _OPERATORS[name]
        if draw(st.booleans()):
            return p.apply(f"{{}} {sym} {s!r}", lambda x: fa(x, s), lambda x: ft(x, s), i)
        if name == "pow" and s == 0.0:
            s = 0.5  # (0 ** x: see ZERO_BASE)
        return p.apply(f"{s!r} {sym} {{}}", lambda x: fa(s, x),
                       lambda x: ft(torch.tensor(s, dtype=x.dtype), x), i)
    if kind == "value":
        j = draw(st.integers(0, len(p.vals) - 1))
        try:
            np.broadcast_shapes(a.shape, p.vals[j][0].shape)
        except ValueError:
            kind = "leaf"
    if kind != "value":
        shape = _broadcast_partner(draw, a.shape)
        j = p.leaf(_values(rng, shape, p.dtype), draw(st.booleans()))
    if name in PIECEWISE and _nan(p, i, j):
        name, fa, ft = "add", *T.binary["add"]
    if draw(st.booleans()):
        i, j = j, i
    if name == "pow" and bool((p.vals[i][1] == 0).any()):
        name, fa, ft = "mul", *T.binary["mul"]  # (see ZERO_BASE)
    k = p.apply(f"ad.{name}({{}}, {{}})", fa, ft, i, j)
    return unsigned_zero(p, k) if name in ZERO_SIGN_FREE else k


def step_reduce(draw, p, i):
    name = draw(st.sampled_from(sorted(T.reductions)))
    if name in PIECEWISE and _nan(p, i):
        name = "sum"
    fa, ft = T.reductions[name]
    shape = p.vals[i][0].shape
    axis = _axis(draw, len(shape))
    keep = draw(st.booleans())
    kw = {}
    if name == "prod" and not bool(torch.isfinite(p.vals[i][1]).all()):
        # the gradient is the product of the others, finite at a nan or inf element where
        # torch's prod / x is nan: test_edge_values compares it with that exact reference
        name = "sum"
        fa, ft = T.reductions[name]
    if name in ("var", "std"):
        kw["ddof"] = draw(st.sampled_from([0, 1]))
        p.first_order_only |= _reduced_count(shape, axis) <= kw["ddof"]
    if name == "norm":
        kw["ord"] = draw(st.sampled_from([2] if _nan(p, i) else [1, 2, float("inf")]))
    if name in ("std", "norm"):
        p.first_order_only |= _zero_result(ft, p.vals[i][1], axis, keep, kw)
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    k = p.apply(f"ad.{name}({{}}, axis={axis!r}, keepdims={keep}{extra})",
                lambda x: fa(x, axis=axis, keepdims=keep, **kw),
                lambda x: ft(x, axis, keep, **kw), i)
    return unsigned_zero(p, k) if name in ZERO_SIGN_FREE else k


def _zero_result(ft, t, axis, keep, kw):
    """Whether torch's ``ft`` gives a zero anywhere (False where it raises: compared then)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool((ft(t, axis, keep, **kw) == 0).any())
        except (RuntimeError, ValueError, IndexError):
            return False


def unsigned_zero(p, k):
    """Value ``k``, followed by ``+ 0.0`` (+0 in both) where it holds a zero: the sign of a zero
    that a sum of products (NumPy's einsum and matmul of one term: +0, torch's: -0) or a
    choice among tied +0 and -0 (max, min, maximum, minimum, clip) gives is the library's, and
    a later 1 / x would turn it into inf against -inf."""
    if k is not None and bool((p.vals[k][1] == 0).any()):
        return p.apply("{} + 0.0", lambda x: x + 0.0, lambda x: x + 0.0, k)
    return k


def _reduced_count(shape, axis):
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
    return int(np.prod([shape[a] for a in axes]))


def step_softmax(draw, p, i):
    shape = p.vals[i][0].shape
    if not shape:
        return None
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    log = draw(st.booleans())
    fa = ad.log_softmax if log else ad.softmax
    ft = torch.log_softmax if log else torch.softmax
    return p.apply(f"ad.{fa.__name__}({{}}, axis={axis})", lambda x: fa(x, axis=axis),
                   lambda x: ft(x, dim=axis), i)


def step_shape(draw, p, i, rng):
    shape = p.vals[i][0].shape
    nd = len(shape)
    kind = draw(st.sampled_from(["reshape", "transpose", "swapaxes", "flip", "expand_dims",
                                 "squeeze", "broadcast_to", "slice", "index", "concat",
                                 "stack", "where", "clip"]))
    if kind == "reshape":
        new = tuple(draw(st.permutations(shape))) if draw(st.booleans()) else (-1,)
        if -1 in new and 0 in shape:
            new = (0,)
        return p.apply(f"ad.reshape({{}}, {new!r})", lambda x: ad.reshape(x, new),
                       lambda x: torch.reshape(x, new), i)
    if kind == "transpose" and nd:
        perm = tuple(draw(st.permutations(range(nd))))
        return p.apply(f"ad.transpose({{}}, {perm!r})", lambda x: ad.transpose(x, perm),
                       lambda x: x.permute(perm), i)
    if kind == "swapaxes" and nd:
        a, b = draw(st.integers(0, nd - 1)), draw(st.integers(-nd, nd - 1))
        return p.apply(f"ad.swapaxes({{}}, {a}, {b})", lambda x: ad.swapaxes(x, a, b),
                       lambda x: torch.swapaxes(x, a, b), i)
    if kind == "flip" and nd:
        ax = draw(st.integers(0, nd - 1))
        return p.apply(f"ad.flip({{}}, axis={ax})", lambda x: ad.flip(x, axis=ax),
                       lambda x: torch.flip(x, (ax,)), i)
    if kind == "expand_dims":
        ax = draw(st.integers(-nd - 1, nd))
        return p.apply(f"ad.expand_dims({{}}, {ax})", lambda x: ad.expand_dims(x, ax),
                       lambda x: torch.unsqueeze(x, ax), i)
    if kind == "squeeze" and 1 in shape:
        ax = shape.index(1)
        return p.apply(f"ad.squeeze({{}}, axis={ax})", lambda x: ad.squeeze(x, axis=ax),
                       lambda x: torch.squeeze(x, ax), i)
    if kind == "broadcast_to":
        new = (draw(st.integers(0, 2)),) + tuple(
            draw(st.sampled_from([1, 2])) if d == 1 else d for d in shape)
        return p.apply(f"ad.broadcast_to({{}}, {new!r})", lambda x: ad.broadcast_to(x, new),
                       lambda x: torch.broadcast_to(x, new), i)
    if kind == "slice" and nd:
        ax = draw(st.integers(0, nd - 1))
        lo, hi = draw(st.integers(-4, 4)), draw(st.integers(-4, 4))
        step = draw(st.integers(1, 2))
        idx = (slice(None),) * ax + (slice(lo, hi, step),)
        src = "{}[" + ":, " * ax + f"{lo}:{hi}:{step}]"
        return p.apply(src, lambda x: x[idx], lambda x: x[idx], i)
    if kind == "index" and nd and shape[0]:
        k = draw(st.integers(-shape[0], shape[0] - 1))
        return p.apply(f"{{}}[{k}]", lambda x: x[k], lambda x: x[k], i)
    if kind in ("concat", "stack") and nd:
        j = p.leaf(_values(rng, shape, p.dtype), draw(st.booleans()))
        ax = draw(st.integers(0, nd - 1))
        if kind == "concat":
            return p.apply(f"ad.concatenate([{{}}, {{}}], axis={ax})",
                           lambda x, y: ad.concatenate([x, y], axis=ax),
                           lambda x, y: torch.cat([x, y], dim=ax), i, j)
        return p.apply(f"ad.stack([{{}}, {{}}], axis={ax})",
                       lambda x, y: ad.stack([x, y], axis=ax),
                       lambda x, y: torch.stack([x, y], dim=ax), i, j)
    if kind == "where":
        j = p.leaf(_values(rng, shape, p.dtype), draw(st.booleans()))
        cond = rng.random(shape) < 0.5
        return p.apply(f"ad.where(ad.tensor({cond.tolist()!r}), {{}}, {{}})",
                       lambda x, y: ad.where(ad.tensor(cond), x, y),
                       lambda x, y: torch.where(torch.tensor(cond), x, y), i, j)
    if kind == "clip":
        lo = draw(st.sampled_from([-1.0, 0.0, 0.5]))
        hi = draw(st.sampled_from([0.0, 1.0, 2.0]))
        return unsigned_zero(p, p.apply(f"ad.clip({{}}, {lo}, {hi})",
                                        lambda x: ad.clip(x, lo, hi),
                                        lambda x: torch.clamp(x, lo, hi), i))
    return None


def step_linalg(draw, p, i, rng):
    """A product (matmul, tensordot, einsum, outer) of value ``i`` and a new leaf (a zero
    sum of products has the library's sign: see :func:`unsigned_zero`)."""
    return unsigned_zero(p, _product(draw, p, i, rng))


def _product(draw, p, i, rng):
    shape = p.vals[i][0].shape
    nd = len(shape)
    kind = draw(st.sampled_from(["matmul", "rmatmul", "tensordot", "einsum", "outer"]))
    k = draw(st.integers(0, 3))
    if kind == "matmul" and nd:
        other = (shape[-1], k) if draw(st.booleans()) else (shape[-1],)
        j = p.leaf(_values(rng, other, p.dtype), draw(st.booleans()))
        return p.apply("ad.matmul({}, {})", ad.matmul, torch.matmul, i, j)
    if kind == "rmatmul" and nd:
        other = (k, shape[-2] if nd >= 2 else shape[-1])
        if nd == 1:
            other = (shape[0],) if draw(st.booleans()) else (k, shape[0])
            j = p.leaf(_values(rng, other, p.dtype), draw(st.booleans()))
            return p.apply("ad.matmul({}, {})", ad.matmul, torch.matmul, j, i)
        j = p.leaf(_values(rng, other, p.dtype), draw(st.booleans()))
        return p.apply("ad.matmul({}, {})", ad.matmul, torch.matmul, j, i)
    if kind == "tensordot" and nd:
        other = (shape[-1], k)
        j = p.leaf(_values(rng, other, p.dtype), draw(st.booleans()))
        ax = ([nd - 1], [0])
        return p.apply(f"ad.tensordot({{}}, {{}}, axes={ax!r})",
                       lambda x, y: ad.tensordot(x, y, axes=ax),
                       lambda x, y: torch.tensordot(x, y, dims=ax), i, j)
    if kind == "einsum" and nd:
        j = p.leaf(_values(rng, (shape[-1],), p.dtype), draw(st.booleans()))
        return p.apply("ad.einsum('...i,i->...', {}, {})",
                       lambda x, y: ad.einsum("...i,i->...", x, y),
                       lambda x, y: torch.einsum("...i,i->...", x, y), i, j)
    if kind == "outer" and nd == 1:
        j = p.leaf(_values(rng, (k,), p.dtype), draw(st.booleans()))
        return p.apply("ad.outer({}, {})", ad.outer, torch.outer, i, j)
    return None


def run_chain(data, steps=5):
    """Draw and run one random program of family (a); compare every gradient."""
    draw = data.draw
    dtype = draw(st.sampled_from(["float64", "float64", "float32"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = Lockstep(dtype)
    p.leaf(_values(rng, draw(SHAPE), dtype), True)
    for _ in range(draw(st.integers(1, steps))):
        i = draw(st.integers(max(0, len(p.vals) - 3), len(p.vals) - 1))
        kind = draw(st.sampled_from(["unary", "unary", "binary", "binary", "reduce",
                                     "softmax", "shape", "shape", "linalg"]))
        if kind == "unary":
            step_unary(draw, p, i)
        elif kind == "binary":
            step_binary(draw, p, i, rng)
        elif kind == "reduce":
            step_reduce(draw, p, i)
        elif kind == "softmax":
            step_softmax(draw, p, i)
        elif kind == "shape":
            step_shape(draw, p, i, rng)
        else:
            step_linalg(draw, p, i, rng)
    check_gradients(draw, p, rng)


def _loss(p, rng, which):
    """sum(v * W) over the chosen values, W fixed random weights, in both frameworks."""
    la, lt, src = 0, 0, []
    for i in which:
        a, t, name = p.vals[i]
        w = rng.uniform(0.5, 1.5, a.shape).astype(p.dtype)
        la = la + (a * ad.tensor(w)).sum()
        lt = lt + (t * torch.tensor(w)).sum()
        src.append(f"({name} * ad.tensor({w.tolist()!r}, dtype=ad.{p.dtype})).sum()")
    return la, lt, " + ".join(src)


def check_gradients(draw, p, rng):
    live = [i for i, (a, t, _) in enumerate(p.vals) if t.requires_grad]
    if not live or not p.leaves:
        return
    which = sorted(set(draw(st.lists(st.sampled_from(live), min_size=1, max_size=2))))
    retained = [i for i in live if p.vals[i][1].grad_fn is not None and draw(st.booleans())]
    for i in retained:
        p.vals[i][0].retain_grad()
        p.vals[i][1].retain_grad()
        p.lines.append(f"{p.vals[i][2]}.retain_grad()")
    la, lt, src = _loss(p, rng, which)
    p.lines.append(f"loss = {src}")
    scale = GRAD_SCALE[p.dtype]
    mode = draw(st.sampled_from(["backward", "grad"] + ["second"] * (not p.first_order_only)))
    leaves_a = [a for a, _, _ in p.leaves]
    leaves_t = [t for _, t, _ in p.leaves]
    names = ", ".join(n for _, _, n in p.leaves)
    if mode == "backward":
        p.lines.append("loss.backward()")
        note("\n".join(p.lines))
        ok = both_raise_or_neither("backward", lambda: la.backward() or 1,
                                   lambda: lt.backward() or 1)
        if ok[0] is None:
            return
        for a, t, name in p.leaves + [p.vals[i] for i in retained]:
            compare(f"{name}.grad", a.grad, t.grad, scale)
        return
    p.lines.append(f"g = ad.grad(loss, [{names}], allow_unused=True, "
                   f"create_graph={mode == 'second'})")
    note("\n".join(p.lines))
    ga, gt = both_raise_or_neither(
        "ad.grad", lambda: ad.grad(la, leaves_a, allow_unused=True,
                                   create_graph=mode == "second"),
        lambda: torch.autograd.grad(lt, leaves_t, allow_unused=True,
                                    create_graph=mode == "second"))
    if ga is None:
        return
    for (_, _, name), x, y in zip(p.leaves, ga, gt):
        compare(f"ad.grad wrt {name}", x, y, scale)
    if mode != "second":
        return
    # grad of sum(g_i * W_i) + 0 * sum(leaf^2): the zero term keeps every leaf connected
    sa = sum((x * x).sum() for x in leaves_a) * 0
    st_ = sum((x * x).sum() for x in leaves_t) * 0
    for x, y in zip(ga, gt):
        if y is not None:
            w = rng.uniform(0.5, 1.5, y.shape).astype(p.dtype)
            sa = sa + (x * ad.tensor(w)).sum()
            st_ = st_ + (y * torch.tensor(w)).sum()
    p.lines.append("second = ad.grad(sum((gi * W).sum() for gi in g) + 0 * ..., leaves)")
    note("\n".join(p.lines))
    ha, ht = both_raise_or_neither(
        "second derivative", lambda: ad.grad(sa, leaves_a, allow_unused=True),
        lambda: torch.autograd.grad(st_, leaves_t, allow_unused=True))
    if ha is None:
        return
    for (_, _, name), x, y in zip(p.leaves, ha, ht):
        compare(f"second derivative wrt {name}", x, y, scale * 10)


@fuzz(1000)
@given(st.data())
def test_op_chains(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_chain(data)


# ---- family (b): in-place ops through views -----------------------------------------------------

def _view_step(draw, va, vt):
    """One view op for the views ``va`` (gpuad) and ``vt`` (torch): (gpuad source suffix,
    function) or None. Reshape only where both are contiguous (a view in both then)."""
    shape = tuple(va.shape)
    nd = len(shape)
    kinds = ["slice", "row", "T", "swap"]
    if va.array.flags.c_contiguous and vt.is_contiguous() and va.size:
        kinds.append("reshape")
    if nd >= 1 and all(shape):
        kinds += ["element", "element_chain"]
    kind = draw(st.sampled_from(kinds))
    if nd == 0:
        return None
    if kind == "slice":
        ax = draw(st.integers(0, nd - 1))
        lo, hi, step = draw(st.integers(-3, 3)), draw(st.integers(-3, 4)), draw(
            st.integers(1, 2))
        idx = (slice(None),) * ax + (slice(lo, hi, step),)
        return "[" + ":, " * ax + f"{lo}:{hi}:{step}]", lambda x: x[idx]
    if kind == "row" and shape[0] and nd >= 2:
        k = draw(st.integers(-shape[0], shape[0] - 1))
        return f"[{k}]", lambda x: x[k]
    if kind == "T" and nd >= 2:
        return ".T", lambda x: x.T if isinstance(x, ad.Tensor) else x.permute(
            *reversed(range(x.ndim)))
    if kind == "swap" and nd >= 2:
        return ".swapaxes(0, 1)", lambda x: x.swapaxes(0, 1)
    if kind == "reshape":
        new = (-1,) if nd > 1 else (1, -1)
        return f".reshape{new!r}", lambda x: x.reshape(new)
    if kind == "element":
        ks = tuple(draw(st.integers(-d, d - 1)) for d in shape)
        return f"[{', '.join(map(str, ks))}]", lambda x: x[ks]
    if kind == "element_chain":
        ks = [draw(st.integers(-d, d - 1)) for d in shape]
        return "".join(f"[{k}]" for k in ks), lambda x: _chain_index(x, ks)
    return None


def _chain_index(x, ks):
    for k in ks:
        x = x[k]
    return x


_INPLACE = ["add_", "sub_", "mul_", "div_", "pow_", "fill_", "zero_", "copy_", "setitem",
            "iadd"]


def _inplace_step(draw, rng, dtype, shape, operand_leaves):
    """Draw one in-place op for a view of ``shape``: (gpuad source with the view as ``v``,
    function of the gpuad view, function of the torch view)."""
    op = draw(st.sampled_from(_INPLACE))
    if op in ("fill_", "zero_"):
        arg = () if op == "zero_" else (draw(st.sampled_from([0.0, 7.0, -2.5])),)
        return (f"v.{op}({', '.join(map(repr, arg))})", lambda v: getattr(v, op)(*arg),
                lambda v: getattr(v, op)(*arg))
    if (draw(st.booleans()) or op == "copy_") and op != "pow_":
        part = shape[len(shape) - draw(st.integers(0, len(shape))):]
        w = rng.uniform(0.5, 2.0, part).astype(dtype)
        rg = draw(st.booleans())
        name = f"u{len(operand_leaves)}"
        ua = ad.tensor(w.copy(), requires_grad=rg)
        ut = torch.tensor(w.copy(), requires_grad=rg)
        if rg:
            operand_leaves.append((ua, ut, name))
        src = f"({name} * 1)"  # a non-leaf operand, so the leaf's gradient is checked
        pre = f"{name} = ad.tensor({w.tolist()!r}, dtype=ad.{dtype}, requires_grad={rg})\n"

        def oa():
            return ua * 1

        def ot():
            return ut * 1
    else:
        s = draw(st.sampled_from([2.0, -1.5, 0.5, 3.0]))
        src, pre = repr(s), ""

        def oa():
            return s
        ot = oa
    if op == "setitem":
        return f"{pre}v[...] = {src}", lambda v: v.__setitem__(Ellipsis, oa()), \
            lambda v: v.__setitem__(Ellipsis, ot())
    if op == "iadd":
        return f"{pre}v += {src}", lambda v: v.__iadd__(oa()), lambda v: v.__iadd__(ot())
    return (f"{pre}v.{op}({src})", lambda v: getattr(v, op)(oa()),
            lambda v: getattr(v, op)(ot()))


def run_inplace(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["float64", "float32"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
    mode = draw(st.sampled_from(["graph", "graph", "nograd", "leaf_nograd", "leaf_grad"]))
    arr = rng.uniform(0.5, 2.0, shape).astype(dtype)
    xa = ad.tensor(arr.copy(), requires_grad=mode != "nograd")
    xt = torch.tensor(arr.copy(), requires_grad=mode != "nograd")
    lines = ["import gpuad as ad",
             f"x = ad.tensor({arr.tolist()!r}, dtype=ad.{dtype}, requires_grad={mode != 'nograd'})"]
    if mode == "graph":
        ya, yt = xa * 1, xt * 1
        lines.append("y = x * 1")
    else:
        ya, yt = xa, xt
        lines.append("y = x")
    saved, operands = [], []
    off = mode in ("nograd", "leaf_nograd")
    for _ in range(draw(st.integers(1, 4))):
        va, vt, src = ya, yt, "y"
        for _ in range(draw(st.integers(0, 3))):
            step = _view_step(draw, va, vt)
            if step is None:
                continue
            suffix, fn = step
            va, vt, src = fn(va), fn(vt), src + suffix
        lines.append(f"v = {src}")
        if draw(st.booleans()) and not off:
            kind = draw(st.sampled_from(["square", "exp", "double"]))
            fa = {"square": ad.square, "exp": ad.exp, "double": lambda v: v * 2}[kind]
            ft = {"square": torch.square, "exp": torch.exp, "double": lambda v: v * 2}[kind]
            saved.append((fa(va), ft(vt), f"s{len(saved)}"))
            lines.append(f"s{len(saved) - 1} = {kind}(v)")
        note("\n".join(lines))
        src, fa, ft = _inplace_step(draw, rng, dtype, tuple(va.shape), operands)
        lines.append(src if not off else "with ad.no_grad(): " + src)
        note("\n".join(lines))
        with ad.no_grad() if off else contextlib.nullcontext(), \
                torch.no_grad() if off else contextlib.nullcontext():
            done = both_raise_or_neither(src, partial(_called, fa, va), partial(_called, ft, vt))
        if done[0] is None:
            return
        compare("y after the in-place step", ya, yt)
    if off:
        return
    loss_a = (ya * 1.0).sum() + sum((s[0] * 1.0).sum() for s in saved)
    loss_t = (yt * 1.0).sum() + sum((s[1] * 1.0).sum() for s in saved)
    lines.append("(y.sum() + sum(s.sum() for s in saved)).backward()")
    note("\n".join(lines))
    ok = both_raise_or_neither("backward", lambda: loss_a.backward() or 1,
                               lambda: loss_t.backward() or 1)
    if ok[0] is None:
        return
    for ua, ut, name in [(xa, xt, "x")] + operands:
        compare(f"{name}.grad", ua.grad, ut.grad, 10)


@fuzz(800)
@given(st.data())
def test_inplace_through_views(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_inplace(data)


# ---- family (c): create_graph mixes -------------------------------------------------------------

_EXPRS = {  # name -> function of (a, b, c, framework module) giving (hidden, output)
    "(a + b) * c": lambda a, b, c, m: (a + b, (a + b) * c),
    "sin(a) * b * b": lambda a, b, c, m: (m.sin(a), m.sin(a) * b * b),
    "exp(a * b) + a * a": lambda a, b, c, m: (a * b, m.exp(a * b) + a * a),
    "a.clone() * 1": lambda a, b, c, m: (a.clone(), a.clone() * 1 + b * 0),
    "tanh(a) * (b * c).sum()": lambda a, b, c, m: (m.tanh(a), m.tanh(a) * (b * c).sum()),
}


def _grads(xs):
    return [x.grad for x in xs]


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


def _grad_pass(lines, rng, la, lt, ya, yt, cg):
    """ad.grad of y.sum() (which accumulates nothing), and with create_graph the grad of
    its first result; False where both frameworks raised."""
    lines.append(f"g = ad.grad(y.sum(), [a, b], retain_graph=True, create_graph={cg})")
    note("\n".join(lines))
    ga, gt = both_raise_or_neither(
        "ad.grad", lambda: ad.grad(ya.sum(), la[:2], retain_graph=True, create_graph=cg),
        lambda: torch.autograd.grad(yt.sum(), lt[:2], retain_graph=True, create_graph=cg))
    if ga is None:
        return False
    for name, x, y in zip("ab", ga, gt):
        compare(f"ad.grad wrt {name}", x, y)
    _check_no_sharing([("g[0]", ga[0]), ("g[1]", ga[1])] + [
        (f"{k}.grad", g) for k, g in zip("ab", _grads(la[:2]))])
    if not (cg and gt[0].requires_grad):
        return True
    w = rng.uniform(0.5, 1.5, tuple(gt[0].shape))
    lines.append("ad.grad((g[0] * W).sum(), [a, b], allow_unused=True)")
    note("\n".join(lines))
    sa, st2 = both_raise_or_neither(
        "grad of grad",
        lambda: ad.grad((ga[0] * ad.tensor(w)).sum(), la[:2], allow_unused=True,
                        retain_graph=True),
        lambda: torch.autograd.grad((gt[0] * torch.tensor(w)).sum(), lt[:2],
                                    allow_unused=True, retain_graph=True))
    for name, x, y in zip("ab", sa or (), st2 or ()):
        compare(f"grad of grad wrt {name}", x, y)
    return True


def run_create_graph(data):
    draw = data.draw
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    bshape = _broadcast_partner(draw, shape)
    expr = draw(st.sampled_from(sorted(_EXPRS)))
    arrs = [rng.uniform(-1.5, 1.5, s) for s in (shape, bshape, shape)]
    la = [ad.tensor(x.copy(), requires_grad=k < 2) for k, x in enumerate(arrs)]
    lt = [torch.tensor(x.copy(), requires_grad=k < 2) for k, x in enumerate(arrs)]
    lines = ["import gpuad as ad"] + [
        f"{n} = ad.tensor({x.tolist()!r}, dtype=ad.float64, requires_grad={k < 2})"
        for k, (n, x) in enumerate(zip("abc", arrs))]
    seeds = []  # (gpuad seed, its values at creation)

    def forward():
        ha, ya = _EXPRS[expr](*la, ad)
        ht, yt = _EXPRS[expr](*lt, torch)
        return ha, ya, ht, yt

    ha, ya, ht, yt = forward()
    lines.append(f"h, y = <{expr}>")
    retain = draw(st.booleans())
    if retain:
        ha.retain_grad()
        ht.retain_grad()
        lines.append("h.retain_grad()")
    for n in range(draw(st.integers(1, 4))):
        if draw(st.booleans()) and n:
            ha, ya, ht, yt = forward()
            lines.append(f"h, y = <{expr}>  # again")
            if retain:
                ha.retain_grad()
                ht.retain_grad()
        kind = draw(st.sampled_from(["backward", "seed", "grad", "inputs"]))
        cg = draw(st.booleans())
        if kind == "grad":
            if not _grad_pass(lines, rng, la, lt, ya, yt, cg):
                return
            continue
        if kind == "seed":
            g = rng.uniform(-1, 1, ya.shape)
            seed_a, seed_t = ad.tensor(g.copy()), torch.tensor(g.copy())
            seeds.append((seed_a, g))
            lines.append(f"G{len(seeds) - 1} = ad.tensor({g.tolist()!r}, dtype=ad.float64)")
            lines.append(f"y.backward(G{len(seeds) - 1}, retain_graph=True, create_graph={cg})")
            run_a = lambda: ya.backward(seed_a, retain_graph=True, create_graph=cg)  # noqa: B023
            run_t = lambda: yt.backward(seed_t, retain_graph=True, create_graph=cg)  # noqa: B023
        elif kind == "inputs":
            lines.append(f"y.sum().backward(inputs=[a], retain_graph=True, create_graph={cg})")
            run_a = lambda: ya.sum().backward(inputs=[la[0]], retain_graph=True,  # noqa: B023
                                              create_graph=cg)  # noqa: B023
            run_t = lambda: yt.sum().backward(inputs=[lt[0]], retain_graph=True,  # noqa: B023
                                              create_graph=cg)  # noqa: B023
        else:
            lines.append(f"y.sum().backward(retain_graph=True, create_graph={cg})")
            run_a = lambda: ya.sum().backward(retain_graph=True, create_graph=cg)  # noqa: B023
            run_t = lambda: yt.sum().backward(retain_graph=True, create_graph=cg)  # noqa: B023
        note("\n".join(lines))
        ok = both_raise_or_neither(lines[-1], partial(_called, run_a), partial(_called, run_t))
        if ok[0] is None:
            return
        for name, x, y in zip("ab", la, lt):
            compare(f"{name}.grad", x.grad, y.grad)
        if retain:
            compare("h.grad", ha.grad, ht.grad)
        for k, (s, g) in enumerate(seeds):
            compare(f"caller's G{k}", s, torch.tensor(g))
        _check_no_sharing([(f"{k}.grad", x.grad) for k, x in zip("ab", la)] +
                          [("h.grad", ha.grad if retain else None)] +
                          [(f"G{k}", s) for k, (s, _) in enumerate(seeds)] +
                          [(k, x) for k, x in zip("abc", la)])


@fuzz(500)
@given(st.data())
def test_create_graph_mixes(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_create_graph(data)


# ---- family (d): edge values ---------------------------------------------------------------------

_INF, _NAN = float("inf"), float("nan")
EDGES = {
    "float64": [1e300, -1e300, 1e154, 1e-170, 1e-300, 5e-324, 30.0, -40.0, 710.0],
    "float32": [3e38, -3e38, 1e20, 1e-23, 1e-38, 1e-45, 30.0, -40.0, 89.0],
    "float16": [65504.0, -65504.0, 300.0, 256.0, 1e-4, 6e-8, 11.0, -12.0, 70000.0],
}
COMMON = [_NAN, _INF, -_INF, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5]

_REDUCE_EDGE = ["sum", "mean", "var", "std", "max", "min", "prod", "logsumexp", "norm",
                "softmax", "log_softmax"]


def _edge_array(draw, dtype, shape):
    pool = COMMON + EDGES[dtype]
    n = int(np.prod(shape))
    vals = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array(vals, dtype=dtype).reshape(shape)


def _edge_op(draw, dtype, x, z):
    """Draw one op for the edge-value family: (source, gpuad fn, torch fn, n_inputs)."""
    nan = bool(np.isnan(x).any())
    kind = draw(st.sampled_from(["unary", "unary", "binary", "reduce"]))
    if kind == "unary":
        names = sorted(T.unary)
        if nan:
            names = [n for n in names if n not in PIECEWISE]
        if dtype != "float64" and not np.all(np.abs(x) < 1e4):
            names.remove("gelu")  # torch's float32 kernel: gelu(inf) = nan, gelu(3e38) = inf
        if not np.all(np.abs(x) < 1e4):
            # torch's tanh-form gradient overflows x^3 and gives inf * 0 = nan at huge |x|;
            # gpuad gives the limits 1 and 0 (test_numerics checks them against the formula)
            names.remove("gelu_tanh")
        name = draw(st.sampled_from(names))
        fa, ft = T.unary[name]
        return f"ad.{name}(x)", fa, ft, 1
    if kind == "binary":
        names = sorted(T.binary)
        name = draw(st.sampled_from(names))
        fa, ft = T.binary[name]
        return f"ad.{name}(x, z)", fa, ft, 2
    name = draw(st.sampled_from(_REDUCE_EDGE))
    if nan and name in ("max", "min"):
        # the nans share the gradient, as in torch.max() (torch.amax gives every element nan;
        # test_numerics pins the choice): compared over all elements with torch.max()
        return f"ad.{name}(x)", getattr(ad, name), getattr(torch, name), 1
    axis = draw(st.sampled_from([None, -1])) if x.ndim else None
    if name in ("softmax", "log_softmax"):
        if not x.ndim or np.isposinf(x).any():  # (inf - inf: ill-defined, not compared)
            name, axis = "sum", None
        else:
            fa = getattr(ad, name)
            ft = getattr(torch, name)
            return f"ad.{name}(x, axis=-1)", lambda v: fa(v, axis=-1), \
                lambda v: ft(v, dim=-1), 1
    kw = {"ord": draw(st.sampled_from([1, 2, _INF]))} if name == "norm" else {}
    if nan and name == "norm":
        kw["ord"] = 2  # ord 1 uses sign (nan in NumPy, 0 in torch); ord inf is max
    if name in ("var", "std"):
        kw["ddof"] = 0
    fa, ft = T.reductions[name]
    extra = "".join(f", {k}={v!r}" for k, v in kw.items())
    run = partial(_reduce_ref, ft, axis, kw)
    if name in T.exact:
        run.alt = partial(_reduce_ref, T.exact[name], axis, kw)
    return f"ad.{name}(x, axis={axis}{extra})", lambda v: fa(v, axis=axis, **kw), run, 1


def _reduce_ref(ft, axis, kw, v):
    return ft(v, axis, False, **kw)


def run_edges(data):
    draw = data.draw
    dtype = draw(st.sampled_from(["float64", "float32", "float16"]))
    shape = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    x, z = _edge_array(draw, dtype, shape), _edge_array(draw, dtype, shape)
    src, fa, ft, n = _edge_op(draw, dtype, x, z)
    args = [x, z][:n]
    xa = [ad.tensor(v.copy(), requires_grad=True) for v in args]
    lines = ["import gpuad as ad", "from math import inf, nan"] + [
        f"{k} = ad.tensor({_fmt(v)}, dtype=ad.{dtype}, requires_grad=True)"
        for k, v in zip("xz", args)] + [f"y = {src}"]
    note("\n".join(lines))
    # torch in the same dtype, and in float64 rounded to it: gpuad may match either (a rule
    # that rounds more exactly than torch's, 2 * x * g as x * (2 * g), is no bug)
    refs = [_torch_run(ft, args, None), _torch_run(ft, args, "float64")]
    if hasattr(ft, "alt"):
        refs.append(_torch_run(ft.alt, args, None))
    ya = both_raise_or_neither(src, lambda: fa(*xa), lambda: _reraise(refs[0]))[0]
    if ya is None:
        return
    w = np.linspace(0.5, 1.5, max(1, ya.size)).astype(dtype)[:ya.size].reshape(ya.shape)
    _either(src, ya, [None if isinstance(r, Exception) else r[0] for r in refs], dtype, 1)
    lines.append(f"y.backward(ad.tensor({w.tolist()!r}, dtype=ad.{dtype}))")
    note("\n".join(lines))
    ok = both_raise_or_neither("backward", lambda: ya.backward(ad.tensor(w)) or 1,
                               lambda: _reraise(refs[0]) and _torch_backward(refs, w))
    if ok[0] is None:
        return
    for k, a in enumerate(xa):
        _either(f"{'xz'[k]}.grad", a.grad, [_grad_of(r, k) for r in refs], dtype,
                GRAD_SCALE[dtype])


def _torch_run(ft, args, upcast):
    """(output, inputs) of ``ft`` in torch, in the inputs' dtype or ``upcast``; or the error."""
    ts = [torch.tensor(v.astype(upcast or v.dtype), requires_grad=True) for v in args]
    try:
        return ft(*ts), ts
    except (RuntimeError, ValueError, IndexError) as exc:
        return exc


def _reraise(ref):
    if isinstance(ref, Exception):
        raise ref
    return ref


def _torch_backward(refs, w):
    for ref in refs:
        if not isinstance(ref, Exception):
            ref[0].backward(torch.tensor(w).to(ref[0].dtype))
    return 1


def _grad_of(ref, k):
    return None if isinstance(ref, Exception) else ref[1][k].grad


def _either(what, a, ts, dtype, scale):
    """gpuad's ``a`` matches torch's value in ``dtype``, torch's float64 value rounded (for
    float32 and float16), or the third reference where there is one (``T.exact``: norms,
    std and var evaluated without overflow, prod's gradient as the product of the others)."""
    refs = [(what, ts[0])]
    if dtype != "float64" and isinstance(ts[1], torch.Tensor):
        refs.append((what + " (vs torch float64)", ts[1].detach().to(ts[0].dtype)))
    refs += [(what + " (vs torch, exact)", t) for t in ts[2:]]
    for k, (label, t) in enumerate(refs):
        try:
            return compare(label, a, t, scale)
        except Mismatch:
            if k == len(refs) - 1:
                raise


@fuzz(2000)
@given(st.data())
def test_edge_values(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_edges(data)


# ---- the families of bugs found: one reproducer each -------------------------------------------

def _mk(m, values, dtype="float64", rg=False):
    if m is ad:
        return ad.tensor(np.array(values, dtype=dtype), requires_grad=rg)
    return torch.tensor(np.array(values, dtype=dtype), requires_grad=rg)


def _grad_twice(m):
    a, b, c = _mk(m, [1.0, 2.0], rg=True), _mk(m, [1.0, 2.0], rg=True), _mk(m, [3.0, 5.0])
    ((a + b) * c).sum().backward(create_graph=True)
    ((a + b) * c).sum().backward()
    x, g = _mk(m, [1.0, 2.0], rg=True), _mk(m, [1.0, 1.0])
    y = x * 1
    y.backward(g, create_graph=True, retain_graph=True)
    y.backward(g)
    return [a.grad, b.grad, x.grad, g]


def _element_view(m):
    x = _mk(m, [[1.0, 2.0], [3.0, 4.0]], rg=True)
    y = x * 1
    y[1, 1].mul_(10)
    y[0][1].add_(5)
    y.sum().backward()
    return [y, x.grad]


def _empty_view(m):
    x, u = _mk(m, [1.5, 2.0], rg=True), _mk(m, 0.5, rg=True)
    y = x * 1
    y[0:0].add_(u * 1)
    y.sum().backward()
    return [y, u.grad]


def _div16(m):
    x = _mk(m, [100.0, 200.0], "float16", rg=True)
    (x / x.sum()).backward(_mk(m, [1.0, 0.0], "float16"))
    return [x.grad]


def _pow_tiny(m):
    x, z = _mk(m, 5e-324, rg=True), _mk(m, 5e-324, rg=True)
    (x ** z).backward(_mk(m, 0.5))
    return [x.grad, z.grad]


def _norm_huge(m):
    x = _mk(m, 1e300, rg=True)
    n = ad.norm(x) if m is ad else torch.linalg.vector_norm(x)
    n.backward()
    z = _mk(m, [0.0, 0.0, 3e38], "float32")
    return [n, x.grad, ad.std(z) if m is ad else torch.std(z, correction=0)]


def _var_one(m):
    x = _mk(m, [1.0], rg=True)
    v = ad.var(x, ddof=1) if m is ad else torch.var(x, correction=1)
    v.backward()
    return [v, x.grad]


def _empty_axes(m):
    x = _mk(m, np.zeros((2, 0)), rg=True)
    s = ad.softmax(x, axis=1) if m is ad else torch.softmax(x, dim=1)
    z = _mk(m, np.zeros((0, 3)), rg=True)
    mx = ad.max(z, axis=1) if m is ad else torch.amax(z, dim=1)
    (s.sum() + mx.sum()).backward()
    return [s, mx, x.grad, z.grad]


def _nan_max(m):
    a, b = _mk(m, [float("nan"), 1.0], rg=True), _mk(m, [1.0, 2.0], rg=True)
    r = _mk(m, [float("nan"), -1.0], rg=True)
    (m.maximum(a, b).sum() + m.relu(r).sum()).backward()
    return [a.grad, b.grad, r.grad]


def _relu_pole(m):
    x = _mk(m, [-1.0, 2.0], rg=True)
    (2.0 / m.relu(x)).sum().backward()
    return [x.grad]


def _log_softmax_large(m):
    x = _mk(m, [3e5, 3e5], "float32")
    return [ad.log_softmax(x, axis=-1) if m is ad else torch.log_softmax(x, -1)]


def _copy_whole(m):
    x, u = _mk(m, [1.5, 2.0], rg=True), _mk(m, [0.5, 0.25], rg=True)
    y = x * 1
    y.copy_(u * 1)
    y.sum().backward()
    x2 = _mk(m, [1.5, 2.0], rg=True)
    y2 = x2 * 1
    y2.copy_(_mk(m, [0.5, 0.25]))
    y2.sum().backward()
    return [x.grad, u.grad, x2.grad]


def _prod_zeros_huge(m):
    x = _mk(m, [0.0, 0.0, 1e300, 1e300], rg=True)
    m.prod(x).backward()
    return [x.grad]


def _prod_empty_axes(m):
    x = _mk(m, np.zeros((2, 0, 3)), rg=True)
    p = ad.prod(x, axis=(0, 2)) if m is ad else torch.prod(torch.prod(x, 2), 0)
    p.sum().backward()
    return [p, x.grad]


PINNED = {  # each family's reproducer, run in both frameworks
    "create_graph_shared_grad": _grad_twice, "element_view": _element_view,
    "empty_view_inplace": _empty_view, "div_grad_overflow": _div16,
    "pow_grad_overflow": _pow_tiny, "square_overflow": _norm_huge, "var_zero_dof": _var_one,
    "empty_reductions": _empty_axes, "nan_grads": _nan_max, "relu_nonfinite_grad": _relu_pole,
    "log_softmax_large": _log_softmax_large, "copy_disconnects": _copy_whole,
    "prod_grad_overflow": _prod_zeros_huge, "empty_prod_axes": _prod_empty_axes,
}


@pytest.mark.parametrize("family", sorted(PINNED))
def test_pinned_reproducer(family):
    """Each family's reproducer against PyTorch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, want = both_raise_or_neither(family, lambda: PINNED[family](ad),
                                          lambda: PINNED[family](torch))
    for k, (a, t) in enumerate(zip(got or [], want or [])):
        compare(f"{family}: value {k}", a, t)
    if family == "create_graph_shared_grad":
        _check_no_sharing([(f"value {k}", v) for k, v in enumerate(got)])


# ---- regression tests for what this fuzz found and fixed ----------------------------------------

@pytest.mark.parametrize("exponent", [2.0, 3, 0.5])
def test_pow_in_place_where_nothing_records(exponent):
    """pow_ on a tensor that records nothing wrote through NumPy's ``out=``, which the CPU
    backend's power did not take (it raised); the cube takes the a * a * a path."""
    base = np.array([1.5, 0.25, 4.0])
    x = ad.tensor(base.copy())
    view = x[1:]
    assert x.pow_(exponent) is x
    np.testing.assert_allclose(x.numpy(), base ** exponent, rtol=1e-6)
    w = ad.tensor(base.copy(), requires_grad=True)
    with ad.no_grad():
        w **= ad.tensor([2.0, 3.0, 0.5])
    np.testing.assert_allclose(w.numpy(), base ** np.array([2.0, 3.0, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(view.numpy(), x.numpy()[1:])
