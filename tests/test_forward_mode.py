"""Forward mode for every op in tests/op_cases.py, on every device:

- the JVP against float64 central differences of the NumPy reference;
- forward against reverse: <J v, u> = <v, J^T u> on random float64 vectors;
- vector mode: k directions in one pass equal k single passes (every rule's batch axis);
- forward over reverse (Hessian-vector products) against differences of gradients;
- forward over forward (nested levels) against differences of JVPs;
- every Op defined in gpuad.ops has a JVP rule.
"""
import importlib
import pkgutil

import numpy as np
import pytest
from op_cases import CASES
from tolerance import assert_close

import gpuad as ad
from gpuad.autograd.node import Op

EPS = 1e-6
GRAD_CASES = [c for c in CASES if c.grad]
ids = [c.name for c in GRAD_CASES]


def _t(x, device, contiguous=True):
    if contiguous or x.ndim == 0:
        return ad.tensor(x, dtype=ad.float64, device=device)
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    wide[..., ::2] = x
    t = ad.tensor(wide, dtype=ad.float64, device=device)[..., ::2].detach()
    assert not t.array.flags.c_contiguous
    return t


def _inputs(case, seed, device, contiguous=True):
    rng = np.random.default_rng(seed)
    xs = case.inputs(rng)
    vs = [rng.standard_normal(x.shape) for x in xs]
    return rng, xs, vs, [_t(x, device, contiguous) for x in xs]


@pytest.mark.parametrize("case", GRAD_CASES, ids=ids)
def test_jvp_vs_central_differences(case, device):
    _, xs, vs, ts = _inputs(case, 10, device)
    out, tangent = ad.jvp(case.fn, ts, [_t(v, device) for v in vs])
    plus = np.asarray(case.ref(*[x + EPS * v for x, v in zip(xs, vs)]))
    minus = np.asarray(case.ref(*[x - EPS * v for x, v in zip(xs, vs)]))
    numeric = (plus - minus) / (2 * EPS)
    assert tangent.shape == out.shape and tangent.dtype == ad.float64
    assert tangent.device == out.device
    assert_close(out.numpy(), case.ref(*xs), rtol=1e-11, atol=1e-12, device=device)
    assert_close(tangent.numpy(), numeric, rtol=1e-5, atol=1e-6, device=device)


@pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "strided"])
@pytest.mark.parametrize("case", GRAD_CASES, ids=ids)
def test_forward_against_reverse(case, contiguous, device):
    """<J v, u> = <v, J^T u>: the JVP and VJP rules are transposes of each other."""
    rng, xs, vs, ts = _inputs(case, 11, device, contiguous)
    out, jv = ad.jvp(case.fn, ts, [_t(v, device, contiguous) for v in vs])
    u = rng.standard_normal(out.shape)
    _, vjp_fn = ad.vjp(case.fn, *ts)
    jtu = vjp_fn(_t(u, device))
    lhs = float(np.sum(jv.numpy() * u))
    rhs = sum(float(np.sum(v * g.numpy())) for v, g in zip(vs, jtu))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("case", GRAD_CASES, ids=ids)
def test_vector_mode_equals_single_directions(case, device):
    k = 3
    rng, xs, _, ts = _inputs(case, 12, device)
    batches = [rng.standard_normal((k,) + x.shape) for x in xs]
    _, tangents = ad.jvp(case.fn, ts, [_t(b, device) for b in batches], batched=True)
    assert tangents.shape[0] == k
    for d in range(k):
        _, single = ad.jvp(case.fn, ts, [_t(b[d], device) for b in batches])
        assert_close(tangents.numpy()[d], single.numpy(), rtol=1e-12, atol=1e-13, device=device)


@pytest.mark.parametrize("case", [c for c in GRAD_CASES if c.second],
                         ids=[c.name for c in GRAD_CASES if c.second])
def test_forward_over_reverse_vs_differences_of_gradients(case, device):
    """d/de <u, f(x + e v)> gradient: the JVPs of every backward rule, against differences."""
    rng, xs, vs, ts = _inputs(case, 13, device)
    u = rng.standard_normal(np.shape(case.ref(*xs)))

    def grads(*args):
        out = case.fn(*args)
        ins = [a for a in args if a.requires_grad]
        gs = ad.grad(out, ins, _t(u, device), allow_unused=True)
        return [ad.zeros_like(a) if g is None else g for g, a in zip(gs, ins)]

    def leaves(values):
        return [_t(x, device).requires_grad_() for x in values]

    with ad.enable_grad():
        _, hv = ad.jvp(lambda *a: grads(*[x if x.requires_grad else x.requires_grad_()
                                           for x in a]),
                       leaves(xs), [_t(v, device) for v in vs])
    plus = grads(*leaves([x + EPS * v for x, v in zip(xs, vs)]))
    minus = grads(*leaves([x - EPS * v for x, v in zip(xs, vs)]))
    for i, (h, p, m) in enumerate(zip(hv, plus, minus)):
        numeric = (p.numpy() - m.numpy()) / (2 * EPS)
        assert_close(h.numpy(), numeric, rtol=1e-4, atol=1e-5,
                     err_msg=f"input {i}", device=device)


@pytest.mark.parametrize("case", [c for c in GRAD_CASES if c.second],
                         ids=[c.name for c in GRAD_CASES if c.second])
def test_forward_over_forward_vs_differences_of_jvps(case, device):
    """Nested levels: d/de J(x + e u) v, each rule's tangents seen by the other level."""
    rng, xs, vs, _ = _inputs(case, 14, device)
    us = [rng.standard_normal(x.shape) for x in xs]

    def inner(*args):
        return ad.jvp(case.fn, args, [_t(v, device) for v in vs])[1]

    _, second = ad.jvp(inner, [_t(x, device) for x in xs], [_t(u, device) for u in us])
    plus = inner(*[_t(x + EPS * u, device) for x, u in zip(xs, us)])
    minus = inner(*[_t(x - EPS * u, device) for x, u in zip(xs, us)])
    assert_close(second.numpy(), (plus.numpy() - minus.numpy()) / (2 * EPS),
                 rtol=1e-4, atol=1e-5, device=device)


def _ops_of(module):
    for name, value in vars(module).items():
        if isinstance(value, Op):
            yield name, value
        elif callable(value) and isinstance(getattr(value, "op", None), Op):
            yield name, value.op


def test_every_op_has_a_jvp_rule():
    import gpuad.ops

    found = []
    for info in pkgutil.iter_modules(gpuad.ops.__path__, "gpuad.ops."):
        module = importlib.import_module(info.name)
        for name, op in _ops_of(module):
            found.append(name)
            assert op.jvp is not None, f"{module.__name__}.{name} has no JVP rule"
    assert len(found) > 40
    # ops made per call (their rules close over the call's arity)
    x = ad.ones((2, 2), dtype=ad.float64)
    for make in (lambda: ad.einsum("ij,jk->ik", x, x), lambda: ad.concatenate([x, x]),
                 lambda: ad.stack([x, x])):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = make()
        assert tape is not None and y._grad_fn.op.jvp is not None
