"""Differential fuzz against PyTorch (CPU), ``test_op_chains``: elementwise, reduction,
linear-algebra and shape ops chained on random shapes (0-d and zero-length axes included, with
broadcasting); forward values, ``.grad`` of leaves, retained non-leaf gradients, ``ad.grad``
and second derivatives are compared, run in lockstep in gpuad and torch.

Where torch raises, gpuad must raise too (and the reverse). Every failure prints the program
as plain gpuad code. ``GPUAD_FUZZ_EXAMPLES=<n>`` multiplies the example counts for a long local
run (tests/fuzz_torch_ops.py holds the op table and the lockstep runner).
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gpuad as ad

torch = pytest.importorskip("torch")

from fuzz_torch_ops import (  # noqa: E402  (needs torch first)
    GRAD_SCALE,
    PIECEWISE,
    SIGNED_ZERO,
    ZERO_SIGN_FREE,
    Lockstep,
    Table,
    _broadcast_partner,
    both_raise_or_neither,
    compare,
    fuzz,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()


# ---- family (a): op chains ----------------------------------------------------------------------

SHAPE = st.lists(st.integers(0, 3), min_size=0, max_size=3).map(tuple)


def _values(rng, shape, dtype):
    """Values in [-2, 2], a third of them on a grid of quarters (zeros, ties, kinks)."""
    x = rng.uniform(-2, 2, shape)
    grid = rng.random(shape) < 0.33
    return np.where(grid, np.round(x * 4) / 4, x).astype(dtype)


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
