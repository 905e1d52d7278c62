""".grad storage over any mix of backward passes (plain, create_graph, with inputs=), into
the same leaves: each accumulates as in PyTorch and no two gradients share storage; checked on
chosen programs and by a differential fuzz of random programs against PyTorch."""
import itertools

import numpy as np
import pytest
from storage_refs import _apart, _quiet, _torch

import gpuad as ad

# Storage is checked with NumPy (np.shares_memory): pin the default device (cuda:0 on a GPU
# machine); the CUDA path's flat optimizer buffers are checked with the fake CuPy.
pytestmark = pytest.mark.usefixtures("cpu_default")


# ---- any mix of passes ------------------------------------------------------------------------

A0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B0 = np.array([[1.0, 2.0, -0.5], [0.0, -1.25, 3.0]])
M0 = np.array([[2.0, -1.0], [0.5, 1.0], [-0.25, 3.0]])
C0 = np.array([3.0, -2.0, 0.5])


def _program(lib, a, b, m, c):
    """y = a + b hands one gradient to y (retained), a and b; m.T's gradient is a transposed
    view; the seed of the sum broadcasts."""
    y = a + b
    y.retain_grad()
    return y, (y * y * c).sum() + (m.T * a).sum()


def _run_pass(kind, lib, leaves, c, grads_seen):
    a, b, m = leaves
    y, loss = _program(lib, a, b, m, c)
    if kind == "plain":
        loss.backward()
    elif kind == "create":
        _quiet(loss.backward, create_graph=True)
    elif kind == "inputs":
        _quiet(loss.backward, inputs=[y, a, b, m])
    elif kind == "create_inputs":
        _quiet(loss.backward, create_graph=True, inputs=[y, a, b, m])
    elif lib is ad and kind == "grad":  # ad.grad and a tape leave .grad alone
        grads_seen.extend(g.array for g in ad.grad(loss, [a, b, m], create_graph=True))
    elif lib is ad and kind == "tape":
        with ad.GradientTape() as tape:
            tape.watch([a, b, m])
            _, loss = _program(lib, a, b, m, c)
        grads_seen.extend(g.array for g in tape.gradient(loss, [a, b, m]))
    return y


KINDS = ("plain", "create", "inputs", "create_inputs", "grad", "tape")


@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, repeat=3)),
                         ids="-".join)
def test_any_mix_of_passes_accumulates_as_pytorch_and_shares_nothing(kinds):
    torch = _torch()
    leaves = [ad.tensor(v, dtype=ad.float64, requires_grad=True) for v in (A0, B0, M0)]
    tleaves = [torch.tensor(v, requires_grad=True) for v in (A0, B0, M0)]
    c, tc = ad.tensor(C0, dtype=ad.float64), torch.tensor(C0)
    seen = []
    for kind in kinds:
        y = _run_pass(kind, ad, leaves, c, seen)
        ty = _run_pass(kind, torch, tleaves, tc, None) if kind not in ("grad", "tape") else None
        grads = [t.grad for t in leaves]
        tgrads = [t.grad for t in tleaves]
        if ty is not None:
            grads.append(y.grad)
            tgrads.append(ty.grad)
        for g, tg in zip(grads, tgrads):
            assert (g is None) == (tg is None)
            if g is not None:
                np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-13)
        _apart(*[g.array for g in grads if g is not None], c.array, *seen)


# ---- a differential fuzz: random programs, random mixes of passes --------------------------------

UNARY = {
    "clone": lambda v: v.clone(),
    "neg": lambda v: -v,
    "tanh": lambda v: v.tanh(),
    "scale": lambda v: v * 1.5,
    "rowsum": lambda v: v + v.sum(0, keepdims=True),  # a gradient that broadcasts back
}
BINARY = {"add": lambda v, w: v + w, "sub": lambda v, w: v - w, "mul": lambda v, w: v * w}
PASSES = ("plain", "create", "inputs", "create_inputs")


def _build(lib, program, leaves, mt, c):
    """Run ``program`` on the leaves (and m.T, a transposed view): the loss and the retained
    intermediates."""
    values = list(leaves) + [mt]
    retained = []
    for op, args, retain in program:
        v = (UNARY[op](values[args[0]]) if op in UNARY
             else BINARY[op](values[args[0]], values[args[1]]))
        if retain:
            v.retain_grad()
            retained.append(v)
        values.append(v)
    loss = sum((v * c).sum() for v in values[-2:])
    return loss, retained


def _program_strategy():
    from hypothesis import strategies as st

    @st.composite
    def program(draw):
        ops = []
        for k in range(draw(st.integers(1, 6))):
            n = 4 + k  # three leaves and m.T, then one value per op
            op = draw(st.sampled_from(sorted(UNARY) + sorted(BINARY)))
            args = [draw(st.integers(0, n - 1)) for _ in range(1 if op in UNARY else 2)]
            ops.append((op, args, draw(st.booleans())))
        return ops

    return program()


def test_fuzz_create_graph_mixes_against_pytorch():
    """Random programs in which gradients are handed to several tensors (add, clone, a
    transposed leaf, a broadcast-back), some intermediates retained, a leaf hook, and a random
    sequence of plain, create_graph and inputs= passes: PyTorch's values, and no .grad shares
    storage with another or with a constant. Derandomized, with a fixed example count."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    torch = _torch()
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((2, 3)) for _ in range(3)]
    m0, c0 = rng.standard_normal((3, 2)), rng.standard_normal((2, 3))

    @hypothesis.settings(max_examples=60, derandomize=True, deadline=None, database=None)
    @hypothesis.given(_program_strategy(), st.lists(st.sampled_from(PASSES), min_size=1,
                                                    max_size=3), st.booleans())
    def check(program, passes, hooked):
        libs = {}
        for lib in (ad, torch):
            leaves = [lib.tensor(v, requires_grad=True) for v in data + [m0]]
            if hooked:
                leaves[0].register_hook(lambda g: g * 2.0)
            c = lib.tensor(c0)
            libs[lib] = (leaves, c, [])
        for kind in passes:
            for lib, (leaves, c, retained_all) in libs.items():
                loss, retained = _build(lib, program, leaves[:3], leaves[3].T, c)
                retained_all.extend(retained)
                inputs = leaves + retained
                _quiet(loss.backward, create_graph=kind.startswith("create"),
                       inputs=inputs if kind.endswith("inputs") else None)
            (ours, c, got), (theirs, _, want) = libs[ad], libs[torch]
            for t, tt in zip(ours + got, theirs + want):
                assert (t.grad is None) == (tt.grad is None)
                if t.grad is not None:
                    np.testing.assert_allclose(t.grad.numpy(), tt.grad.detach().numpy(),
                                               rtol=1e-12, atol=1e-12)
                    assert (t.grad.grad_fn is None) == (tt.grad.grad_fn is None)
            _apart(*[t.grad.array for t in ours + got if t.grad is not None], c.array)
        _second_order_agrees(libs[ad][0], libs[torch][0], torch)

    check()


def _second_order_agrees(ours, theirs, torch):
    """d(sum of the leaves' .grad that have a graph)/d(leaves): PyTorch's."""
    pairs = [(t, tt) for t, tt in zip(ours, theirs) if t.grad is not None
             and t.grad.grad_fn is not None]
    if not pairs:
        return
    got = ad.grad(sum(t.grad.sum() for t, _ in pairs), ours, allow_unused=True)
    want = torch.autograd.grad(sum(tt.grad.sum() for _, tt in pairs), theirs, allow_unused=True)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if g is not None:
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-12, atol=1e-12)


def test_a_plain_pass_after_create_graph_keeps_the_graph_and_its_saved_values():
    """After a create_graph pass, a's gradient c is a constant that the recorded graph also
    saved (b's gradient is c * w): the plain pass must not add into it in place. b.grad keeps
    its graph through the plain pass, as in PyTorch (which adds in place under no_grad)."""
    torch = _torch()
    results = []
    for lib in (ad, torch):
        a, b, w = (lib.tensor(v, requires_grad=True) for v in ([1.0, 2.0], [3.0, 4.0],
                                                                [0.5, -1.0]))
        c = lib.tensor([2.0, 3.0])
        _quiet(((a + b * w) * c).sum().backward, create_graph=True)
        first = b.grad
        ((a + b * w) * c).sum().backward()
        grad = ad.grad if lib is ad else torch.autograd.grad
        results.append([a.grad.detach().numpy(), b.grad.detach().numpy(),
                        grad(b.grad.sum(), w, retain_graph=True)[0].numpy(),
                        grad(first.sum(), w)[0].numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs)


def test_retained_and_leaf_grads_through_create_plain_create_passes():
    """One retained graph, three passes: values, which .grad has a graph, and second
    derivatives through x.grad are PyTorch's (a plain pass keeps a leaf's graph, not a
    retained non-leaf's)."""
    torch = _torch()
    results = []
    for lib in (ad, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * x
        y.retain_grad()
        z = (y * y).sum()
        seen = []
        for create in (True, False, True):
            _quiet(z.backward, create_graph=create, retain_graph=True)
            seen += [x.grad.detach().numpy().copy(), y.grad.detach().numpy().copy(),
                     x.grad.grad_fn is None, y.grad.grad_fn is None]
            if lib is ad:
                _apart(x.grad.array, y.grad.array)
        grad = ad.grad if lib is ad else torch.autograd.grad
        seen.append(grad(x.grad.sum(), x)[0].numpy())
        results.append(seen)
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs)
