"""Differential fuzz against PyTorch (CPU), ``test_inplace_through_views``: in-place ops
through chains of views (slices, element views ``w[0, 1]`` and ``w[1][2]``, transposes), then
backward; the version-counter errors must agree ("modified by an in-place operation").

Where torch raises, gpuad must raise too (and the reverse). Every failure prints the program
as plain gpuad code. ``GPUAD_FUZZ_EXAMPLES=<n>`` multiplies the example counts for a long local
run (tests/fuzz_torch_ops.py holds the op table and the lockstep runner).
"""
import contextlib
import warnings
from functools import partial

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import gpuad as ad

torch = pytest.importorskip("torch")

from fuzz_torch_ops import (  # noqa: E402  (needs torch first)
    Table,
    _called,
    both_raise_or_neither,
    compare,
    fuzz,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()


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
