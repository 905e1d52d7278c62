"""Which arrays a leaf adopts as its .grad storage: a whole-array view made in the backward
pass (the transposed weight gradient of x @ W.T) without a copy, and never anything a caller,
a hook or a custom rule owns, nor one array for two leaves or a leaf and a retained non-leaf
(accumulating into one would change the other), in plain and create_graph passes alike; and
a tensor the user assigns to .grad is never written into."""
import numpy as np
import pytest
from storage_refs import _apart, _quiet, _torch

import gpuad as ad

# Storage is checked with NumPy (np.shares_memory): pin the default device (cuda:0 on a GPU
# machine); the CUDA path's flat optimizer buffers are checked with the fake CuPy.
pytestmark = pytest.mark.usefixtures("cpu_default")


def test_transposed_weight_gradient_is_adopted_without_copy():
    w = ad.tensor(np.ones((3, 4)), requires_grad=True)
    x = ad.tensor(np.arange(8.0).reshape(2, 4))
    (x @ w.T).sum().backward()
    assert w.grad.array.base is not None  # the transposed view itself, no copy
    np.testing.assert_allclose(w.grad.numpy(), np.tile(x.numpy().sum(0), (3, 1)))
    (x @ w.T).sum().backward()  # accumulates in place, correctly
    np.testing.assert_allclose(w.grad.numpy(), 2 * np.tile(x.numpy().sum(0), (3, 1)))


def test_two_leaves_never_share_storage():
    p = ad.tensor(np.ones((2, 3)), requires_grad=True)
    q = ad.tensor(np.ones((3, 2)), requires_grad=True)
    (p.T * 2 + q).sum().backward()  # q's gradient and a view of it for p
    assert not np.shares_memory(p.grad.array, q.grad.array)
    (p.T * 2 + q).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), 4.0)
    np.testing.assert_allclose(q.grad.numpy(), 2.0)


def test_custom_rule_returning_a_view_of_user_data_is_copied():
    data = ad.tensor(np.arange(6.0).reshape(2, 3))

    class UsesData(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            return data.T  # the user's own tensor, transposed (a whole-array view)

    x = ad.tensor(np.zeros((3, 2)), requires_grad=True)
    UsesData.apply(x).sum().backward()
    UsesData.apply(x).sum().backward()  # accumulation must not write into `data`
    np.testing.assert_array_equal(data.numpy(), np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.arange(6.0).reshape(2, 3).T)


def test_seed_views_are_not_adopted():
    seed = ad.tensor(np.ones((3, 2)))
    x = ad.tensor(np.zeros((2, 3)), requires_grad=True)
    x.T.backward(seed)
    x.T.backward(seed)
    np.testing.assert_array_equal(seed.numpy(), 1.0)
    np.testing.assert_allclose(x.grad.numpy(), 2.0)



# ---- create_graph: the reproducers, against PyTorch ---------------------------------

def test_two_leaves_through_one_add_get_their_own_gradients_under_create_graph():
    torch = _torch()
    c = ad.tensor([3.0, 5.0], dtype=ad.float64)
    a, b = (ad.tensor([1.0, 2.0], dtype=ad.float64, requires_grad=True) for _ in range(2))
    ((a + b) * c).sum().backward(create_graph=True)
    assert a.grad is not b.grad
    _apart(a.grad.array, b.grad.array, c.array)
    ((a + b) * c).sum().backward()
    ta, tb = (torch.tensor([1.0, 2.0], requires_grad=True) for _ in range(2))
    tc = torch.tensor([3.0, 5.0])
    _quiet(((ta + tb) * tc).sum().backward, create_graph=True)
    ((ta + tb) * tc).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), ta.grad.detach().numpy())  # [6, 10]
    np.testing.assert_array_equal(b.grad.numpy(), tb.grad.detach().numpy())


@pytest.mark.parametrize("create_first", [True, False])
def test_a_seed_never_becomes_a_grad(create_first):
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    G = ad.tensor([1.0, 1.0])
    y = x.clone()
    y.backward(G, create_graph=create_first, retain_graph=True)
    assert x.grad is not G
    _apart(x.grad.array, G.array)
    y.backward(G)
    np.testing.assert_array_equal(G.numpy(), [1.0, 1.0])  # PyTorch leaves G alone too
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_a_leaf_seeded_directly_copies_the_seed_under_create_graph():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    G = ad.tensor([4.0, 5.0])
    x.backward(G, create_graph=True)
    x.backward(G)
    np.testing.assert_array_equal(G.numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 10.0])


def test_broadcast_gradient_from_create_graph_can_be_accumulated_into():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    x.sum().backward(create_graph=True)
    assert x.grad.array.flags.writeable
    x.sum().backward()  # was: ValueError: output array is read-only
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_retained_non_leaf_and_leaf_do_not_share_under_create_graph():
    torch = _torch()
    x = ad.tensor([1.0, -2.0, 3.0], dtype=ad.float64, requires_grad=True)
    y = x.clone()
    y.retain_grad()
    (y * y).sum().backward(create_graph=True)
    _apart(x.grad.array, y.grad.array)
    (y * y).sum().backward()
    tx = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    ty = tx.clone()
    ty.retain_grad()
    _quiet((ty * ty).sum().backward, create_graph=True)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.detach().numpy())
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.detach().numpy())


def test_create_graph_grad_stays_differentiable_when_it_had_to_be_copied():
    """b's gradient is a copy of a's (one add rule hands both the same tensor): the copy is
    recorded, so second derivatives through b.grad are PyTorch's."""
    torch = _torch()
    a = ad.tensor([1.0, 2.0], dtype=ad.float64, requires_grad=True)
    b = ad.tensor([0.5, -1.0], dtype=ad.float64, requires_grad=True)
    ((a + b) ** 3).sum().backward(create_graph=True)
    assert a.grad.grad_fn is not None and b.grad.grad_fn is not None
    _apart(a.grad.array, b.grad.array)
    ga, gb = ad.grad((a.grad * b.grad).sum(), [a, b], retain_graph=True)
    ta = torch.tensor([1.0, 2.0], requires_grad=True)
    tb = torch.tensor([0.5, -1.0], requires_grad=True)
    _quiet(((ta + tb) ** 3).sum().backward, create_graph=True)
    tga, tgb = torch.autograd.grad((ta.grad * tb.grad).sum(), [ta, tb], retain_graph=True)
    np.testing.assert_allclose(ga.numpy(), tga.numpy())
    np.testing.assert_allclose(gb.numpy(), tgb.numpy())
    (b.grad.sum()).backward()  # double backward into .grad itself, as in PyTorch
    (tb.grad.sum()).backward()
    np.testing.assert_allclose(a.grad.detach().numpy(), ta.grad.detach().numpy())
    np.testing.assert_allclose(b.grad.detach().numpy(), tb.grad.detach().numpy())


def test_create_graph_with_inputs_under_no_grad_keeps_the_graph():
    torch = _torch()
    a = ad.tensor([1.0, 2.0], dtype=ad.float64, requires_grad=True)
    b = ad.tensor([3.0, 4.0], dtype=ad.float64, requires_grad=True)
    z = ((a + b) ** 2).sum()
    with ad.no_grad():
        z.backward(create_graph=True, inputs=[a, b])
    _apart(a.grad.array, b.grad.array)
    gb = ad.grad(b.grad.sum(), [a, b])
    ta = torch.tensor([1.0, 2.0], requires_grad=True)
    tb = torch.tensor([3.0, 4.0], requires_grad=True)
    tz = ((ta + tb) ** 2).sum()
    with torch.no_grad():
        _quiet(tz.backward, create_graph=True, inputs=[ta, tb])
    tgb = torch.autograd.grad(tb.grad.sum(), [ta, tb])
    for g, t in zip(gb, tgb):
        np.testing.assert_allclose(g.numpy(), t.numpy())


# ---- what the caller hands over, under create_graph -------------------------------------------

@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize("where", ["leaf", "non_leaf"])
def test_hook_results_are_not_adopted(where, create):
    keep = ad.tensor([1.0, 1.0])
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    if where == "leaf":
        x.register_hook(lambda g: keep)
    for create_graph in (create, False):  # (the second pass adds in place)
        h = x * 3.0
        if where == "non_leaf":
            h.register_hook(lambda g: keep)
        h.sum().backward(create_graph=create_graph)
    np.testing.assert_array_equal(keep.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0] if where == "leaf" else [6.0, 6.0])
    _apart(x.grad.array, keep.array)


@pytest.mark.parametrize("create", [True, False])
def test_custom_function_results_are_not_adopted(create):
    data = ad.tensor([4.0, 5.0])

    class Returns(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1.0

        @staticmethod
        def backward(ctx, g):
            return data

    x = ad.tensor([0.0, 0.0], requires_grad=True)
    Returns.apply(x).sum().backward(create_graph=create)
    Returns.apply(x).sum().backward()
    np.testing.assert_array_equal(data.numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 10.0])


@pytest.mark.parametrize("create", [True, False])
def test_custom_gradient_results_are_not_adopted(create):
    data = ad.tensor([4.0, 5.0])

    @ad.custom_gradient
    def f(x):
        return x * 1.0, lambda g: data

    x = ad.tensor([0.0, 0.0], requires_grad=True)
    f(x).sum().backward(create_graph=create)
    f(x).sum().backward()
    np.testing.assert_array_equal(data.numpy(), [4.0, 5.0])
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 10.0])


def test_custom_rule_with_a_graph_keeps_it_in_the_copied_grad():
    """The rule's result is the caller's (copied), but the copy stays differentiable."""
    @ad.custom_gradient
    def cube(x):
        return x ** 3, lambda g: g * 3 * x ** 2

    x = ad.tensor([1.0, 2.0], dtype=ad.float64, requires_grad=True)
    cube(x).sum().backward(create_graph=True)
    (gx,) = ad.grad(x.grad.sum(), x)
    np.testing.assert_allclose(gx.numpy(), 6 * x.numpy())


@pytest.mark.parametrize("create", [True, False])
def test_an_assigned_grad_is_never_written_into(create):
    """``x.grad = G`` keeps G itself; the next backward adds out of place (PyTorch would add
    into G: gpuad leaves the caller's tensor alone)."""
    G = ad.tensor([1.0, 1.0])
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = ad.tensor([1.0, 2.0], requires_grad=True)
    a.grad = G
    b.grad = G
    assert a.grad is G
    (a + b).sum().backward(create_graph=create)
    (a * b).sum().backward()
    np.testing.assert_array_equal(G.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])  # 1 + 1 + b
    np.testing.assert_array_equal(b.grad.numpy(), [3.0, 4.0])  # 1 + 1 + a
    _apart(a.grad.array, b.grad.array, G.array)


def test_another_tensors_grad_assigned_is_not_written_into():
    a = ad.tensor([1.0, 2.0], requires_grad=True)
    b = ad.tensor([1.0, 2.0], requires_grad=True)
    (a * 2).sum().backward()
    b.grad = a.grad
    (a * 3).sum().backward()
    (b * 5).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [5.0, 5.0])
    np.testing.assert_array_equal(b.grad.numpy(), [7.0, 7.0])


def test_engine_made_grads_still_accumulate_in_place():
    """The plain pass's speed: the adopted gradient, and zeros set by zero_grad(set_to_none=
    False), are added into without a new array."""
    w = ad.tensor(np.ones((2, 2)), requires_grad=True)
    (w * 2).sum().backward()
    first = w.grad
    (w * 2).sum().backward()
    assert w.grad is first
    opt = ad.optim.SGD([w], lr=0.1)
    opt.zero_grad(set_to_none=False)
    zeros = w.grad
    (w * 2).sum().backward()
    assert w.grad is zeros
    np.testing.assert_array_equal(w.grad.numpy(), 2.0)
    m = ad.nn.Linear(2, 1)
    (m(ad.ones(1, 2)).sum()).backward()
    m.zero_grad(set_to_none=False)
    zeros = m.weight.grad
    (m(ad.ones(1, 2)).sum()).backward()
    assert m.weight.grad is zeros


def test_forward_mode_tangents_ride_along_copied_create_graph_grads():
    """Forward over reverse through backward(create_graph=True): both leaves of one add rule
    get their own gradient, each with the tangent d/dt of 2 (a + b) along (ta, tb) (twice:
    two passes)."""
    def grads(a, b):
        a.requires_grad_()
        b.requires_grad_()
        ((a + b) ** 2).sum().backward(create_graph=True)
        _apart(a.grad.array, b.grad.array)
        ((a + b) ** 2).sum().backward()
        return a.grad, b.grad

    a0 = ad.tensor([1.0, 2.0], dtype=ad.float64)
    b0 = ad.tensor([0.5, 3.0], dtype=ad.float64)
    ta = ad.tensor([1.0, -1.0], dtype=ad.float64)
    tb = ad.tensor([2.0, 0.5], dtype=ad.float64)
    (ga, gb), (tga, tgb) = ad.jvp(grads, (a0, b0), (ta, tb))
    expect = 4 * (a0.numpy() + b0.numpy())
    np.testing.assert_allclose(ga.numpy(), expect)
    np.testing.assert_allclose(gb.numpy(), expect)
    np.testing.assert_allclose(tga.numpy(), 4 * (ta.numpy() + tb.numpy()))
    np.testing.assert_allclose(tgb.numpy(), 4 * (ta.numpy() + tb.numpy()))


def test_flat_optimizer_buffers_keep_gradients_apart(monkeypatch):
    """The fused CUDA path puts every gradient in one flat buffer: disjoint views, so no two
    parameters' .grad overlap, and an assigned .grad is copied in, not written into."""
    from fake_cupy import installed

    with installed(monkeypatch):
        p = ad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
        q = ad.tensor([3.0, 4.0, 5.0], device="cuda", requires_grad=True)
        opt = ad.optim.SGD([p, q], lr=0.5)
        G = ad.tensor([1.0, 1.0], device="cuda")
        p.grad = G
        (p * 3 + q[:2]).sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        (p * 3).sum().backward()
        (q * 2).sum().backward()
        np.testing.assert_array_equal(G.numpy(), [1.0, 1.0])
        np.testing.assert_array_equal(p.grad.numpy(), [3.0, 3.0])
        np.testing.assert_array_equal(q.grad.numpy(), [2.0, 2.0, 2.0])
        np.testing.assert_allclose(p.numpy(), [1.0 - 0.5 * 4, 2.0 - 0.5 * 4])
        _apart(p.grad.array, q.grad.array, G.array)


def test_a_retained_gradient_kept_by_a_hook_downstream_is_not_changed_later():
    """y = x.clone() hands y's gradient on to x, whose hook keeps it: accumulating into y.grad
    again must not change what the hook kept (PyTorch's retained .grad is its own too)."""
    torch = _torch()
    results = []
    for lib in (ad, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        store = []
        x.register_hook(store.append)
        y = x.clone()
        y.retain_grad()
        z = (y * 3).sum()
        z.backward(retain_graph=True)
        z.backward()
        results.append([store[0].detach().numpy(), y.grad.detach().numpy(),
                        x.grad.detach().numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_array_equal(ours, theirs)  # [3, 3], [6, 6], [6, 6]


@pytest.mark.parametrize("create", [True, False])
def test_numpy_arrays_handed_over_are_never_adopted(create):
    """A NumPy seed and a NumPy array returned by a custom rule become tensors without a copy;
    the leaves still get their own storage."""
    seed = np.array([4.0, 5.0], dtype=np.float32)
    data = np.array([1.0, 2.0], dtype=np.float32)

    @ad.custom_gradient
    def f(x):
        return x * 1.0, lambda g: data

    x = ad.tensor([0.0, 0.0], requires_grad=True)
    y = ad.tensor([0.0, 0.0], requires_grad=True)
    for create_graph in (create, False):
        (x + y).backward(seed, create_graph=create_graph)
        f(y).sum().backward(create_graph=create_graph)
    np.testing.assert_array_equal(seed, [4.0, 5.0])
    np.testing.assert_array_equal(data, [1.0, 2.0])
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 10.0])
    np.testing.assert_array_equal(y.grad.numpy(), [10.0, 14.0])
    _apart(x.grad.array, y.grad.array, seed, data)
