"""Differential fuzz against PyTorch (CPU), ``test_edge_values``: nan, ±inf, ±0, huge and
tiny values and the float16 range through every op's forward and backward.

Where torch raises, gpuad must raise too (and the reverse). Every failure prints the program
as plain gpuad code. ``GPUAD_FUZZ_EXAMPLES=<n>`` multiplies the example counts for a long local
run (tests/fuzz_torch_ops.py holds the op table and the lockstep runner).
"""
import warnings
from functools import partial

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gpuad as ad

torch = pytest.importorskip("torch")

from fuzz_torch_ops import (  # noqa: E402  (needs torch first)
    GRAD_SCALE,
    PIECEWISE,
    Mismatch,
    Table,
    _fmt,
    both_raise_or_neither,
    compare,
    fuzz,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()


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
