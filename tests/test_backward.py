"""SPEC section 3: reverse mode, PyTorch style: ``backward`` (also with ``inputs=``),
broadcasting and dtypes, deep graphs, and composites compared with PyTorch.

Every gradient is checked against an independent reference: an analytic formula, NumPy, or
PyTorch (where it is installed).
"""
import math
import warnings

import numpy as np
import pytest
from leaves import _leaf, _np

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


# ---- backward ------------------------------------------------------------------------------

class TestBackward:
    def test_scalar_backward(self):
        x = _leaf([1.0, 2.0, 3.0])
        y = (x ** 2).sum()
        y.backward()
        np.testing.assert_allclose(_np(x.grad), [2.0, 4.0, 6.0])
        assert x.grad.shape == x.shape and x.grad.dtype == x.dtype
        assert isinstance(x.grad, ad.Tensor)

    def test_chain_rule_analytic(self):
        a = np.array([0.3, -1.2, 2.0])
        x = _leaf(a)
        y = (ad.sin(x) * ad.exp(x) + x / (1.0 + x * x)).sum()
        y.backward()
        expected = np.cos(a) * np.exp(a) + np.sin(a) * np.exp(a) + (1 - a * a) / (1 + a * a) ** 2
        np.testing.assert_allclose(_np(x.grad), expected, rtol=1e-12)

    def test_zero_dim_backward(self):
        x = ad.tensor(3.0, requires_grad=True)
        y = x * x * x
        y.backward()
        assert x.grad.shape == ()
        assert x.grad.item() == pytest.approx(27.0)

    def test_non_scalar_backward_raises(self):
        x = _leaf([1.0, 2.0])
        y = x * 2.0
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar "
                                                "outputs"):
            y.backward()
        with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
            ad.grad(y, x)

    @pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 4)])
    def test_backward_with_gradient(self, shape):
        rng = np.random.default_rng(0)
        a = rng.standard_normal(shape)
        g = rng.standard_normal(shape)
        x = ad.tensor(a, requires_grad=True)
        y = x * x + 3.0 * x
        y.backward(gradient=ad.tensor(g))
        np.testing.assert_allclose(_np(x.grad), (2 * a + 3) * g, rtol=1e-12)

    def test_backward_gradient_wrong_shape(self):
        x = _leaf([1.0, 2.0])
        y = x * 2.0
        with pytest.raises(RuntimeError):
            y.backward(gradient=ad.tensor(np.ones(3)))

    def test_backward_on_tensor_without_grad_raises(self):
        y = ad.tensor([1.0, 2.0]).sum()
        with pytest.raises(RuntimeError):
            y.backward()

    def test_leaf_grad_accumulates_until_none(self):
        x = _leaf([1.0, 2.0])
        for k in range(1, 4):
            (x * 3.0).sum().backward()
            np.testing.assert_allclose(_np(x.grad), [3.0 * k, 3.0 * k])
        x.grad = None
        (x * x).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [2.0, 4.0])

    def test_grad_zero_then_accumulate(self):
        x = _leaf([1.0, 2.0])
        (x * 3.0).sum().backward()
        x.grad.zero_()
        (x * 2.0).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [2.0, 2.0])

    def test_non_leaf_grad_is_none(self):
        x = _leaf([1.0, 2.0])
        h = x * 2.0
        y = (h * h).sum()
        y.backward()
        assert h.grad is None
        assert y.grad is None
        np.testing.assert_allclose(_np(x.grad), [8.0, 16.0])

    def test_retain_grad(self):
        x = _leaf([1.0, 2.0])
        h = x * 2.0
        h.retain_grad()
        y = (h * h).sum()
        y.retain_grad()
        y.backward()
        np.testing.assert_allclose(_np(h.grad), [4.0, 8.0])
        assert y.grad.item() == 1.0
        np.testing.assert_allclose(_np(x.grad), [8.0, 16.0])

    def test_second_backward_without_retain_graph_raises(self):
        x = _leaf([1.0, 2.0])
        y = (x * x).exp().sum()
        y.backward()
        with pytest.raises(RuntimeError, match="retain_graph"):
            y.backward()

    def test_retain_graph_allows_second_backward(self):
        a = np.array([0.5, -0.5])
        x = _leaf(a)
        y = (x * x).exp().sum()
        y.backward(retain_graph=True)
        y.backward(retain_graph=True)
        y.backward()
        np.testing.assert_allclose(_np(x.grad), 3 * 2 * a * np.exp(a * a), rtol=1e-12)

    def test_backward_through_shared_subgraph_twice(self):
        x = _leaf([2.0])
        h = x.exp()
        (h * 2.0).sum().backward(retain_graph=True)
        (h * 3.0).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [5.0 * math.exp(2.0)])

    def test_same_tensor_twice_accumulates(self):
        a = np.array([1.5, -2.0, 0.25])
        x = _leaf(a)
        (x * x).sum().backward()
        np.testing.assert_allclose(_np(x.grad), 2 * a)
        x.grad = None
        (x * 2.0 + x.exp() + x + x * x * x).sum().backward()
        np.testing.assert_allclose(_np(x.grad), 3.0 + np.exp(a) + 3 * a * a, rtol=1e-12)

    def test_requires_grad_propagation(self):
        x = _leaf([1.0])
        c = ad.tensor([2.0])
        assert (x * c).requires_grad
        assert not (c * c).requires_grad
        assert (c * c).grad_fn is None

    def test_detach_stops_gradient(self):
        x = _leaf([3.0])
        y = (x * x.detach()).sum()
        y.backward()
        np.testing.assert_allclose(_np(x.grad), [3.0])


# ---- broadcasting and dtypes ---------------------------------------------------------------

class TestBroadcastAndDtype:
    @pytest.mark.parametrize("sa,sb", [((3, 1), (1, 4)), ((), (2, 3)), ((4,), (2, 3, 4)),
                                       ((2, 1, 4), (3, 1)), ((1,), (5,))])
    def test_broadcast_grads_summed_back(self, sa, sb):
        rng = np.random.default_rng(1)
        a, b = rng.standard_normal(sa), rng.standard_normal(sb)
        x, y = ad.tensor(a, requires_grad=True), ad.tensor(b, requires_grad=True)
        w = rng.standard_normal(np.broadcast_shapes(sa, sb))
        (x * y * ad.tensor(w)).sum().backward()
        assert x.grad.shape == sa and y.grad.shape == sb
        full_gx = np.broadcast_to(b, w.shape) * w
        full_gy = np.broadcast_to(a, w.shape) * w

        def sum_to(g, shape):
            lead = g.ndim - len(shape)
            g = g.sum(axis=tuple(range(lead)))
            axes = tuple(i for i, s in enumerate(shape) if s == 1)
            return g.sum(axis=axes, keepdims=True).reshape(shape)

        np.testing.assert_allclose(_np(x.grad), sum_to(full_gx, sa), rtol=1e-12)
        np.testing.assert_allclose(_np(y.grad), sum_to(full_gy, sb), rtol=1e-12)

    def test_broadcast_add_sub_div(self):
        x = _leaf(np.ones((2, 1)))
        y = _leaf(np.full((3,), 2.0))
        (x + y - x / y).sum().backward()
        np.testing.assert_allclose(_np(x.grad), np.full((2, 1), 3 * (1 - 0.5)))
        np.testing.assert_allclose(_np(y.grad), np.full((3,), 2 * (1 + 1 / 4)))

    def test_grad_dtype_matches_input(self):
        x = ad.tensor([1.0, 2.0], dtype=ad.float32, requires_grad=True)
        y = ad.tensor([3.0, 4.0], dtype=ad.float64, requires_grad=True)
        z = x * y
        assert z.dtype == np.float64
        z.sum().backward()
        assert x.grad.dtype == np.float32
        assert y.grad.dtype == np.float64
        np.testing.assert_allclose(_np(x.grad), [3.0, 4.0])
        np.testing.assert_allclose(_np(y.grad), [1.0, 2.0])

    @pytest.mark.parametrize("dtype", [ad.float16, ad.float32, ad.float64])
    def test_grad_dtype_per_float_type(self, dtype):
        x = ad.tensor([0.5, 1.5], dtype=dtype, requires_grad=True)
        (x * x * 2.0).sum().backward()
        assert x.grad.dtype == dtype
        np.testing.assert_allclose(_np(x.grad).astype(np.float64), [2.0, 6.0], rtol=1e-3)

    def test_int_operand_grad(self):
        x = ad.tensor([1.0, 2.0], requires_grad=True)
        k = ad.tensor([3, 4])
        (x * k).sum().backward()
        assert x.grad.dtype == np.float32
        np.testing.assert_allclose(_np(x.grad), [3.0, 4.0])

    @pytest.mark.parametrize("make", [
        lambda: ad.tensor([1, 2], requires_grad=True),
        lambda: ad.arange(3).requires_grad_(),
        lambda: ad.zeros(2, dtype=ad.int32, requires_grad=True),
        lambda: ad.tensor([True, False], requires_grad=True),
        lambda: ad.from_numpy(np.array([1, 2])).requires_grad_(True),
    ])
    def test_integer_tensors_cannot_require_grad(self, make):
        with pytest.raises((TypeError, RuntimeError)) as info:
            make()
        assert "float" in str(info.value).lower() or "grad" in str(info.value).lower()


# ---- deep graphs --------------------------------------------------------------------------

class TestDeepGraphs:
    N = 100_000

    def test_long_mul_chain(self):
        x = ad.tensor(1.0, dtype=ad.float64, requires_grad=True)
        y = x
        for _ in range(self.N):
            y = y * 1.0000001
        y.backward()
        assert y.item() == pytest.approx(1.0000001 ** self.N, rel=1e-9)
        assert x.grad.item() == pytest.approx(1.0000001 ** self.N, rel=1e-9)

    def test_long_tanh_chain_matches_numpy(self):
        a = np.array([0.5, -0.2, 1.5])
        x = _leaf(a)
        y = x
        for _ in range(self.N):
            y = ad.tanh(y)
        y.sum().backward()
        v, d = a.copy(), np.ones_like(a)
        for _ in range(self.N):
            v = np.tanh(v)
            d *= 1 - v * v
        np.testing.assert_allclose(_np(y), v, rtol=1e-12)
        np.testing.assert_allclose(_np(x.grad), d, rtol=1e-9)

    def test_deep_create_graph(self):
        x = ad.tensor(0.3, dtype=ad.float64, requires_grad=True)
        y = x
        for _ in range(5000):
            y = y + 1e-4 * y * y
        (g,) = ad.grad(y, x, create_graph=True)
        g.backward()
        v, d, dd = 0.3, 1.0, 0.0
        for _ in range(5000):
            # y_next = y + c y^2: y_next' = (1 + 2cy) y', y_next'' = (1 + 2cy) y'' + 2c y'^2
            d, dd = (1 + 2e-4 * v) * d, (1 + 2e-4 * v) * dd + 2e-4 * d * d
            v = v + 1e-4 * v * v
        assert d > 1.2 and dd > 0.1  # the reference is far from trivial
        assert y.item() == pytest.approx(v, rel=1e-12)
        assert g.item() == pytest.approx(d, rel=1e-9)
        assert x.grad.item() == pytest.approx(dd, rel=1e-9)

    def test_long_add_chain_with_grad(self):
        x = _leaf([1.0, 2.0])
        y = x
        for _ in range(self.N):
            y = y + 0.0
        (g,) = ad.grad(y.sum(), x)
        np.testing.assert_array_equal(_np(g), [1.0, 1.0])


# ---- comparisons with PyTorch ----------------------------------------------------------------

class TestAgainstTorch:
    def test_mlp_like(self):
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(7)
        xa, wa, ba = (rng.standard_normal((5, 3)), rng.standard_normal((3, 4)),
                      rng.standard_normal(4))
        va = rng.standard_normal((4, 2))

        def f_ad(x, w, b, v):
            h = ad.tanh(x @ w + b)
            o = ad.sigmoid(h) @ v
            return (ad.log_softmax(o, axis=1) * o).mean() + ad.relu(h).sum() * 0.1

        def f_t(x, w, b, v):
            h = torch.tanh(x @ w + b)
            o = torch.sigmoid(h) @ v
            return (torch.log_softmax(o, dim=1) * o).mean() + torch.relu(h).sum() * 0.1

        ins = [ad.tensor(a, requires_grad=True) for a in (xa, wa, ba, va)]
        tins = [torch.tensor(a, requires_grad=True) for a in (xa, wa, ba, va)]
        y = f_ad(*ins)
        ty = f_t(*tins)
        assert y.item() == pytest.approx(ty.item(), rel=1e-12)
        y.backward()
        ty.backward()
        for a, t in zip(ins, tins):
            np.testing.assert_allclose(_np(a.grad), t.grad.numpy(), rtol=1e-10, atol=1e-12)

    def test_broadcast_reduce_composite(self):
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(8)
        aa, bb = rng.standard_normal((3, 1, 4)), rng.uniform(0.5, 2.0, (2, 4))

        def f(lib, a, b):
            z = (a * b - b / (a * a + 1.0)) ** 2
            return (z.sum(axis=2) if lib is ad else z.sum(dim=2)).exp().mean() + (a / b).max()

        a, b = ad.tensor(aa, requires_grad=True), ad.tensor(bb, requires_grad=True)
        ta, tb = torch.tensor(aa, requires_grad=True), torch.tensor(bb, requires_grad=True)
        f(ad, a, b).backward()
        f(torch, ta, tb).backward()
        np.testing.assert_allclose(_np(a.grad), ta.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(_np(b.grad), tb.grad.numpy(), rtol=1e-10)

    def test_second_order_composite(self):
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(9)
        xa = rng.standard_normal(5)
        wa = rng.standard_normal((5, 5))

        def f_ad(x, w):
            return (ad.tanh(w @ x) ** 2).sum() + ad.softplus(x).sum()

        def f_t(x, w):
            return (torch.tanh(w @ x) ** 2).sum() + torch.nn.functional.softplus(x).sum()

        x, w = ad.tensor(xa, requires_grad=True), ad.tensor(wa, requires_grad=True)
        tx, tw = torch.tensor(xa, requires_grad=True), torch.tensor(wa, requires_grad=True)
        (g,) = ad.grad(f_ad(x, w), x, create_graph=True)
        (tg,) = torch.autograd.grad(f_t(tx, tw), tx, create_graph=True)
        np.testing.assert_allclose(_np(g), tg.detach().numpy(), rtol=1e-10)
        (g * g).sum().backward()
        (tg * tg).sum().backward()
        np.testing.assert_allclose(_np(x.grad), tx.grad.numpy(), rtol=1e-9)
        np.testing.assert_allclose(_np(w.grad), tw.grad.numpy(), rtol=1e-9)

    def test_indexing_composite(self):
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(10)
        xa = rng.standard_normal((4, 3))
        idx = np.array([0, 2, 2, 3])
        mask = xa > 0

        x = ad.tensor(xa, requires_grad=True)
        tx = torch.tensor(xa, requires_grad=True)
        y = (x[idx] * 2.0).sum() + (x[ad.tensor(mask)] ** 2).sum() + x[1:, ::2].exp().sum()
        ty = ((tx[torch.tensor(idx)] * 2.0).sum() + (tx[torch.tensor(mask)] ** 2).sum()
              + tx[1:, ::2].exp().sum())
        y.backward()
        ty.backward()
        np.testing.assert_allclose(_np(x.grad), tx.grad.numpy(), rtol=1e-12)


# ---- backward(inputs=...) and retained non-leaves, as PyTorch ----------------------------------

def _inputs_program(lib, retain):
    """a, b leaves; h = a*b and k = 2h on the way from the loss to a; u = 3b on a branch that
    reaches only b; the loss itself. ``retain``: which non-leaves retain their gradient."""
    new = (lambda v: lib.tensor(v, dtype=lib.float64, requires_grad=True))
    a, b = new([1.0, -2.0]), new([3.0, 0.5])
    h = a * b
    k = h * 2
    u = b * 3
    loss = (k * h).sum() + (u * u).sum()
    named = dict(a=a, b=b, h=h, k=k, u=u, loss=loss)
    for name in retain:
        named[name].retain_grad()
    return named


@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("retain", [(), ("h",), ("h", "k", "u"), ("h", "k", "u", "loss")],
                         ids=str)
@pytest.mark.parametrize("inputs", [("a",), ("h",), ("h", "a"), ("k",), ("u",), ("h", "b"),
                                    ("loss",), ("a", "b"), ("k", "h", "u"), ("a", "a"),
                                    ("h", "a", "h")], ids=str)
def test_backward_inputs_fills_retained_non_leaves_on_the_way_as_pytorch(inputs, retain,
                                                                          create_graph):
    """PyTorch: an input's .grad accumulates, a non-leaf input's too (retained or not), and a
    retained non-leaf gets its .grad when the pass reaches it on the way to the inputs; one on
    a branch that leads to no input gets none; an input named twice gets its gradient once.
    (gpuad gave retained non-leaves none, and a repeated input its gradient twice.)"""
    torch = pytest.importorskip("torch")
    ours, theirs = _inputs_program(ad, retain), _inputs_program(torch, retain)
    for _ in range(2):  # twice: the second pass accumulates
        for named in (ours, theirs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (PyTorch: .grad of a non-leaf, create_graph)
                named["loss"].backward(inputs=[named[n] for n in inputs], retain_graph=True,
                                       create_graph=create_graph)
    for name in ours:
        got, want = ours[name].grad, _torch_grad(theirs[name])
        assert (got is None) == (want is None), (name, got, want)
        if got is not None:
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
            assert (got.grad_fn is None) == (theirs[name].grad.grad_fn is None)


def _torch_grad(t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return None if t.grad is None else t.grad.detach().numpy()


def test_backward_inputs_function_form_and_grad_leave_retained_as_documented():
    """ad.backward(..., inputs=) is the method's; ad.grad still leaves every .grad alone."""
    torch = pytest.importorskip("torch")
    ours, theirs = _inputs_program(ad, ["h", "u"]), _inputs_program(torch, ["h", "u"])
    ad.backward(ours["loss"], inputs=[ours["a"]], retain_graph=True)
    torch.autograd.backward(theirs["loss"], inputs=[theirs["a"]], retain_graph=True)
    np.testing.assert_allclose(ours["h"].grad.numpy(), theirs["h"].grad.numpy(), rtol=1e-12)
    assert ours["u"].grad is None and theirs["u"].grad is None
    ours["h"].grad = None
    ad.grad(ours["loss"], ours["a"])
    assert ours["h"].grad is None and ours["b"].grad is None


@pytest.mark.parametrize("call", ["backward", "grad"])
def test_empty_inputs_are_refused_naming_the_call(call):
    """PyTorch refuses backward(inputs=[]) and grad(y, []); so does gpuad, naming the call
    (not a silent no-op); a bad input in backward's list names backward, not grad."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).sum()
    run = {"backward": lambda i: y.backward(inputs=i), "grad": lambda i: ad.grad(y, i)}[call]
    with pytest.raises(RuntimeError, match=rf"^gpuad\.{call}: inputs is empty"):
        run([])
    with pytest.raises(RuntimeError, match=rf"^gpuad\.{call}: input 1 .*does not require grad"):
        run([x, ad.tensor([1.0])])
    assert x.grad is None


def test_backward_takes_one_tensor_as_grad_tensors(cpu_default):
    """As torch.autograd.backward: a single tensor is the gradient of the single output (a
    vector one, and a 0-d one), not a sequence of gradients."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    ad.backward(x * 3, grad_tensors=ad.tensor([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 30.0])
    x.grad = None
    ad.backward((x * x).sum(), grad_tensors=ad.tensor(2.0))
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])  # 2 * 2x
    x.grad = None
    ad.backward((x * x).sum(), grad_tensors=2.0)  # a number, as Tensor.backward takes
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 8.0])
    x.grad = None
    ad.backward(x * 3, grad_tensors=np.array([1.0, 10.0], np.float32))  # an array: one gradient
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 30.0])
