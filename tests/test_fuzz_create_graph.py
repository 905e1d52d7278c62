"""Differential fuzz against PyTorch (CPU), ``test_create_graph_mixes``: backward passes
with and without ``create_graph``, with caller seeds and retained non-leaves, accumulating into
the same leaves; no two ``.grad`` share storage and the caller's tensors stay unchanged.

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
    Table,
    _broadcast_partner,
    _called,
    _check_no_sharing,
    both_raise_or_neither,
    compare,
    fuzz,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()


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
