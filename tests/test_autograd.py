"""SPEC section 3: reverse mode, PyTorch style.

Every gradient is checked against an independent reference: an analytic formula, NumPy, or
PyTorch (where it is installed).
"""
import math
import threading
import warnings

import numpy as np
import pytest

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


def _np(t):
    return np.asarray(t.array)


def _leaf(values, dtype=ad.float64):
    return ad.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


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


# ---- ad.grad -------------------------------------------------------------------------------

class TestGradFunction:
    def test_returns_tuple_and_leaves_grad_alone(self):
        a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
        x, y = _leaf(a), _leaf(b)
        z = (x * y + x.exp()).sum()
        gs = ad.grad(z, [x, y])
        assert isinstance(gs, tuple) and len(gs) == 2
        np.testing.assert_allclose(_np(gs[0]), b + np.exp(a), rtol=1e-12)
        np.testing.assert_allclose(_np(gs[1]), a)
        assert x.grad is None and y.grad is None

    def test_single_input_gives_tuple(self):
        x = _leaf([2.0])
        gs = ad.grad((x * x).sum(), x)
        assert isinstance(gs, tuple) and len(gs) == 1
        np.testing.assert_allclose(_np(gs[0]), [4.0])

    def test_grad_of_non_leaf_input(self):
        x = _leaf([1.0, 2.0])
        h = x * 3.0
        y = (h * h).sum()
        (gh,) = ad.grad(y, h)
        np.testing.assert_allclose(_np(gh), [6.0, 12.0])
        assert x.grad is None and h.grad is None

    def test_grad_outputs(self):
        x = _leaf([1.0, 2.0, 3.0])
        y = x * x
        (g,) = ad.grad(y, x, grad_outputs=ad.tensor(np.array([1.0, 0.0, -1.0])))
        np.testing.assert_allclose(_np(g), [2.0, 0.0, -6.0])

    def test_unused_input_raises(self):
        x, u = _leaf([1.0]), _leaf([2.0])
        y = (x * 2.0).sum()
        with pytest.raises(RuntimeError):
            ad.grad(y, [x, u])

    def test_allow_unused(self):
        x, u = _leaf([1.0]), _leaf([2.0])
        y = (x * 2.0).sum()
        gx, gu = ad.grad(y, [x, u], allow_unused=True)
        np.testing.assert_allclose(_np(gx), [2.0])
        assert gu is None

    def test_input_not_requiring_grad_raises(self):
        x = _leaf([1.0])
        c = ad.tensor([1.0])
        y = (x * c).sum()
        with pytest.raises(RuntimeError):
            ad.grad(y, [c])

    def test_grad_frees_graph_by_default(self):
        x = _leaf([1.0, 2.0])
        y = (x * x).sum()
        ad.grad(y, x)
        with pytest.raises(RuntimeError, match="retain_graph"):
            ad.grad(y, x)

    def test_grad_retain_graph(self):
        x = _leaf([1.0, 2.0])
        y = (x * x).sum()
        g1 = ad.grad(y, x, retain_graph=True)[0]
        g2 = ad.grad(y, x)[0]
        np.testing.assert_allclose(_np(g1), _np(g2))

    def test_pruning_other_branch(self):
        a, b = _leaf([1.0, 2.0]), _leaf([0.5, 0.25])
        calls = []
        e = b.exp()
        e.register_hook(lambda g: calls.append("e"))
        y = (a * 2.0 + e * a).sum()
        (ga,) = ad.grad(y, [a])
        np.testing.assert_allclose(_np(ga), 2.0 + np.exp([0.5, 0.25]), rtol=1e-12)
        assert a.grad is None and b.grad is None
        assert calls == []  # the b branch was not run

    def test_pruning_then_full_backward(self):
        a, b = _leaf([1.0]), _leaf([3.0])
        y = (a * b).sum()
        (ga,) = ad.grad(y, [a], retain_graph=True)
        np.testing.assert_allclose(_np(ga), [3.0])
        y.backward()
        np.testing.assert_allclose(_np(a.grad), [3.0])
        np.testing.assert_allclose(_np(b.grad), [1.0])


# ---- higher order ------------------------------------------------------------------------

class TestHigherOrder:
    def test_seed_article(self):
        x = ad.tensor(1.0, requires_grad=True)
        y = x ** 3
        grads = ad.grad(y, x, create_graph=True)
        assert grads[0].item() == pytest.approx(3.0)
        assert grads[0].requires_grad
        grads[0].backward()
        assert x.grad.item() == pytest.approx(6.0)

    def test_third_and_fourth_derivative(self):
        x = ad.tensor(2.0, dtype=ad.float64, requires_grad=True)
        y = x ** 4
        (g1,) = ad.grad(y, x, create_graph=True)
        (g2,) = ad.grad(g1, x, create_graph=True)
        (g3,) = ad.grad(g2, x, create_graph=True)
        (g4,) = ad.grad(g3, x)
        assert g1.item() == pytest.approx(4 * 8.0)
        assert g2.item() == pytest.approx(12 * 4.0)
        assert g3.item() == pytest.approx(24 * 2.0)
        assert g4.item() == pytest.approx(24.0)

    @pytest.mark.parametrize("fn,derivs", [
        (ad.sin, [np.cos, lambda v: -np.sin(v), lambda v: -np.cos(v)]),
        (ad.exp, [np.exp, np.exp, np.exp]),
        (ad.tanh, [lambda v: 1 - np.tanh(v) ** 2,
                   lambda v: -2 * np.tanh(v) * (1 - np.tanh(v) ** 2),
                   lambda v: (1 - np.tanh(v) ** 2) * (6 * np.tanh(v) ** 2 - 2)]),
        (ad.log, [lambda v: 1 / v, lambda v: -1 / v ** 2, lambda v: 2 / v ** 3]),
        (ad.sigmoid, [lambda v: _sig(v) * (1 - _sig(v)),
                      lambda v: _sig(v) * (1 - _sig(v)) * (1 - 2 * _sig(v)),
                      lambda v: _sig(v) * (1 - _sig(v)) * (1 - 6 * _sig(v) + 6 * _sig(v) ** 2)]),
    ])
    def test_elementwise_higher_derivatives(self, fn, derivs):
        a = np.array([0.3, 0.9, 1.7])
        x = _leaf(a)
        g = fn(x)
        for d in derivs:
            (g,) = ad.grad(g.sum(), x, create_graph=True)
            np.testing.assert_allclose(_np(g), d(a), rtol=1e-10, atol=1e-12)

    def test_create_graph_retains_graph_by_default(self):
        x = _leaf([2.0])
        y = (x ** 3).sum()
        (g,) = ad.grad(y, x, create_graph=True)
        (g_again,) = ad.grad(y, x)  # retain_graph defaulted to create_graph
        np.testing.assert_allclose(_np(g_again), [12.0])
        np.testing.assert_allclose(_np(g), [12.0])

    def test_backward_create_graph(self):
        a = np.array([0.5, 1.5])
        x = _leaf(a)
        y = (x ** 3).sum()
        y.backward(create_graph=True)
        g = x.grad
        assert g.requires_grad
        np.testing.assert_allclose(_np(g), 3 * a ** 2)
        (hx,) = ad.grad(g.sum(), x)
        np.testing.assert_allclose(_np(hx), 6 * a)

    def test_mixed_partials(self):
        x, y = ad.tensor(1.5, dtype=ad.float64, requires_grad=True), ad.tensor(
            0.5, dtype=ad.float64, requires_grad=True)
        f = x * x * y + ad.sin(x * y)
        gx, gy = ad.grad(f, [x, y], create_graph=True)
        (gxy,) = ad.grad(gx, y)
        # d/dy (2xy + y cos(xy)) = 2x + cos(xy) - xy sin(xy)
        expected = 2 * 1.5 + math.cos(0.75) - 0.75 * math.sin(0.75)
        assert gxy.item() == pytest.approx(expected, rel=1e-12)

    def test_hessian_vector_product(self):
        rng = np.random.default_rng(3)
        A = rng.standard_normal((4, 4))
        A = A + A.T
        v = rng.standard_normal(4)
        a = rng.standard_normal(4)
        x = _leaf(a)
        f = 0.5 * (x * (ad.tensor(A) @ x)).sum() + (x ** 3).sum()
        (g,) = ad.grad(f, x, create_graph=True)
        np.testing.assert_allclose(_np(g), A @ a + 3 * a ** 2, rtol=1e-10)
        (hv,) = ad.grad((g * ad.tensor(v)).sum(), x)
        np.testing.assert_allclose(_np(hv), A @ v + 6 * a * v, rtol=1e-10)


def _sig(v):
    return 1 / (1 + np.exp(-v))


# ---- grad mode ------------------------------------------------------------------------------

class TestGradMode:
    def test_no_grad_context(self):
        x = _leaf([1.0])
        with ad.no_grad():
            assert not ad.is_grad_enabled()
            y = x * 2.0
        assert ad.is_grad_enabled()
        assert not y.requires_grad and y.grad_fn is None
        assert (x * 2.0).requires_grad

    def test_no_grad_decorator(self):
        x = _leaf([1.0])

        @ad.no_grad()
        def f(t):
            return t * 2.0, ad.is_grad_enabled()

        @ad.no_grad
        def g(t):
            return t * 3.0

        y, flag = f(x)
        assert not flag and not y.requires_grad
        assert not g(x).requires_grad
        assert ad.is_grad_enabled()
        assert f.__name__ == "f"

    def test_enable_grad_inside_no_grad(self):
        x = _leaf([1.0])
        with ad.no_grad():
            with ad.enable_grad():
                assert ad.is_grad_enabled()
                y = x * 2.0
            z = x * 2.0
        assert y.requires_grad and not z.requires_grad

    def test_enable_grad_decorator(self):
        x = _leaf([1.0])

        @ad.enable_grad()
        def f(t):
            return t * 2.0

        with ad.no_grad():
            y = f(x)
            assert not ad.is_grad_enabled()
        assert y.requires_grad

    def test_set_grad_enabled(self):
        x = _leaf([1.0])
        with ad.set_grad_enabled(False):
            assert not (x * 2.0).requires_grad
            with ad.set_grad_enabled(True):
                assert (x * 2.0).requires_grad
            assert not ad.is_grad_enabled()
        assert ad.is_grad_enabled()

        @ad.set_grad_enabled(False)
        def f(t):
            return t * 2.0

        assert ad.is_grad_enabled()
        assert not f(x).requires_grad
        assert ad.is_grad_enabled()

    def test_set_grad_enabled_as_function(self):
        try:
            ad.set_grad_enabled(False)
            assert not ad.is_grad_enabled()
            ad.set_grad_enabled(True)
            assert ad.is_grad_enabled()
        finally:
            ad.set_grad_enabled(True)

    def test_no_grad_restores_on_exception(self):
        with pytest.raises(ZeroDivisionError):
            with ad.no_grad():
                1 / 0  # noqa: B018
        assert ad.is_grad_enabled()

    def test_grad_mode_is_thread_local(self):
        x = _leaf([1.0])
        seen = {}

        def worker():
            seen["enabled"] = ad.is_grad_enabled()
            seen["rg"] = (x * 2.0).requires_grad

        with ad.no_grad():
            t = threading.Thread(target=worker)
            t.start()
            t.join()
            assert not ad.is_grad_enabled()
        assert seen == {"enabled": True, "rg": True}

    def test_no_grad_in_thread_does_not_leak(self):
        x = _leaf([1.0])
        go, done = threading.Event(), threading.Event()

        def worker():
            with ad.no_grad():
                go.set()
                done.wait(5)

        t = threading.Thread(target=worker)
        t.start()
        go.wait(5)
        try:
            assert ad.is_grad_enabled()
            assert (x * 2.0).requires_grad
        finally:
            done.set()
            t.join()


# ---- in-place ops --------------------------------------------------------------------------

_INPLACE = {
    "iadd": lambda t: t.__iadd__(1.0),
    "isub": lambda t: t.__isub__(1.0),
    "imul": lambda t: t.__imul__(2.0),
    "setitem": lambda t: t.__setitem__(0, 5.0),
    "add_": lambda t: t.add_(1.0),
    "mul_": lambda t: t.mul_(2.0),
    "zero_": lambda t: t.zero_(),
    "copy_": lambda t: t.copy_(ad.tensor(np.array([7.0, 8.0]))),
}
_INPLACE_RESULT = {
    "iadd": [2.0, 3.0], "isub": [0.0, 1.0], "imul": [2.0, 4.0], "setitem": [5.0, 2.0],
    "add_": [2.0, 3.0], "mul_": [2.0, 4.0], "zero_": [0.0, 0.0], "copy_": [7.0, 8.0],
}


class TestInPlace:
    @pytest.mark.parametrize("name", sorted(_INPLACE))
    def test_leaf_requiring_grad_raises(self, name):
        x = _leaf([1.0, 2.0])
        with pytest.raises(RuntimeError):
            _INPLACE[name](x)
        assert x.tolist() == [1.0, 2.0]

    @pytest.mark.parametrize("how", ["slice_add_", "slice_iadd", "reshape_mul_",
                                     "slice_setitem", "transpose_zero_"])
    def test_view_of_leaf_raises(self, how):
        x = _leaf(np.arange(6.0).reshape(2, 3))
        with pytest.raises(RuntimeError):
            if how == "slice_add_":
                x[0].add_(1.0)
            elif how == "slice_iadd":
                v = x[:, 1:]
                v += 1.0
            elif how == "reshape_mul_":
                x.reshape(6).mul_(2.0)
            elif how == "slice_setitem":
                x[0][1] = 5.0
            else:
                x.T.zero_()

    @pytest.mark.parametrize("how", ["slice_add_", "slice_iadd", "reshape_mul_",
                                     "slice_setitem"])
    def test_view_of_leaf_unchanged_after_error(self, how):
        a = np.arange(6.0).reshape(2, 3)
        x = _leaf(a)
        with pytest.raises(RuntimeError):
            if how == "slice_add_":
                x[0].add_(1.0)
            elif how == "slice_iadd":
                v = x[:, 1:]
                v += 1.0
            elif how == "reshape_mul_":
                x.reshape(6).mul_(2.0)
            else:
                x[0][1] = 5.0
        np.testing.assert_array_equal(_np(x), a)
        assert x.is_leaf and x.grad_fn is None

    def test_view_of_leaf_allowed_under_no_grad(self):
        x = _leaf(np.arange(4.0))
        with ad.no_grad():
            x[1:3].add_(10.0)
            x.reshape(2, 2)[1].mul_(2.0)
        np.testing.assert_array_equal(_np(x), [0.0, 11.0, 24.0, 6.0])
        assert x.is_leaf and x.requires_grad
        (x * x).sum().backward()
        np.testing.assert_array_equal(_np(x.grad), [0.0, 22.0, 48.0, 12.0])

    def test_setitem_grad_into_plain_tensor(self):
        w = _leaf([1.5])
        x = _leaf([0.5, -1.0, 2.0, 3.0])
        c = ad.zeros(4, dtype=ad.float64)
        c[1] = (w * 2.0)[0]
        c[2:] = x[:2]
        assert c.requires_grad and not c.is_leaf
        (c * c).sum().backward()
        np.testing.assert_allclose(_np(w.grad), [2 * 3.0 * 2.0])
        np.testing.assert_allclose(_np(x.grad), [1.0, -2.0, 0.0, 0.0])

    def test_setitem_index_array_and_mask(self):
        a = np.array([0.5, -1.0, 2.0, 3.0])
        x = _leaf(a)
        y = x * 1.0
        idx = ad.tensor([0, 2])
        y[idx] = y[idx] * 5.0
        y[ad.tensor(a > 2.5)] = 0.0
        np.testing.assert_allclose(_np(y), [2.5, -1.0, 10.0, 0.0])
        (y * y).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [25.0, -2.0, 100.0, 0.0])

    def test_augmented_assignment_syntax_raises(self):
        x = _leaf([1.0, 2.0])
        with pytest.raises(RuntimeError):
            x += 1
        with pytest.raises(RuntimeError):
            x[0] = 5
        with pytest.raises(RuntimeError):
            x *= 2.0

    @pytest.mark.parametrize("name", sorted(_INPLACE))
    def test_leaf_allowed_under_no_grad(self, name):
        x = _leaf([1.0, 2.0])
        with ad.no_grad():
            _INPLACE[name](x)
        assert x.tolist() == _INPLACE_RESULT[name]
        assert x.requires_grad and x.is_leaf and x.grad_fn is None
        (x * x).sum().backward()
        np.testing.assert_allclose(_np(x.grad), 2 * np.array(_INPLACE_RESULT[name]))

    @pytest.mark.parametrize("name", sorted(_INPLACE))
    def test_plain_tensor_inplace(self, name):
        x = ad.tensor(np.array([1.0, 2.0]))
        _INPLACE[name](x)
        assert x.tolist() == _INPLACE_RESULT[name]

    def test_sgd_style_update_under_no_grad(self):
        w = _leaf([1.0, -2.0])
        for _ in range(3):
            loss = (w * w).sum()
            loss.backward()
            with ad.no_grad():
                w -= 0.25 * w.grad
            w.grad = None
        np.testing.assert_allclose(_np(w), np.array([1.0, -2.0]) * 0.5 ** 3)

    def test_modified_saved_tensor_raises(self):
        x = _leaf([1.0, 2.0])
        y = x * 2.0
        z = y * y  # saves y
        y.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.sum().backward()

    def test_modified_saved_output_raises(self):
        x = _leaf([1.0, 2.0])
        y = x.exp()  # exp's backward uses its output
        y += 1.0
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            y.sum().backward()

    def test_modified_saved_leaf_under_no_grad_raises(self):
        x = _leaf([1.0, 2.0])
        z = (x * x).sum()
        with ad.no_grad():
            x.mul_(3.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    def test_modified_through_setitem_raises(self):
        x = _leaf([1.0, 2.0, 3.0])
        y = x * 1.0
        z = (y.sin()).sum()  # saves y
        y[1] = 0.0
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    def test_unsaved_modification_is_fine(self):
        x = _leaf([1.0, 2.0])
        y = x * 2.0
        z = y + 1.0  # add saves nothing about y's value
        y.mul_(5.0)
        z.sum().backward()
        np.testing.assert_allclose(_np(x.grad), [2.0, 2.0])

    def test_modified_through_view_raises(self):
        x = _leaf(np.arange(4.0))
        y = x * 1.0
        z = (y * y).sum()  # saves y
        y[1:].mul_(2.0)  # changes y through a view
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    def test_modified_base_of_saved_view_raises(self):
        x = _leaf(np.arange(4.0))
        y = x * 1.0
        v = y.reshape(2, 2)
        z = (v * v).sum()  # saves the view v
        y.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    def test_modified_through_detached_alias_raises(self):
        x = _leaf(np.arange(4.0))
        y = x * 1.0
        z = (y * y).sum()
        y.detach().add_(1.0)  # detach() shares storage and version counter
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    def test_modified_constant_needed_by_backward_raises(self):
        x = _leaf([1.0, 2.0])
        c = ad.tensor(np.array([5.0, 6.0]))
        z = (x * c).sum()  # x's gradient needs c
        c.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            z.backward()

    @pytest.mark.parametrize("case", ["scalar", "constant_tensor"])
    def test_unneeded_saved_operand_may_change(self, case):
        x = _leaf([1.0, 2.0])
        y = x * 2.0
        if case == "scalar":
            z = (y * 3.0).sum()  # d/dy (3y) does not need y
            expected = [6.0, 6.0]
        else:
            z = (y * ad.tensor(np.array([5.0, 7.0]))).sum()  # only the constant is needed
            expected = [10.0, 14.0]
        y.add_(1.0)
        z.backward()
        np.testing.assert_allclose(_np(x.grad), expected)

    def test_non_leaf_setitem_gradient(self):
        x = _leaf([1.0, 2.0, 3.0])
        y = x * 2.0
        y[0] = y[0] * 3.0
        np.testing.assert_allclose(_np(y), [6.0, 4.0, 6.0])
        y.sum().backward()
        np.testing.assert_allclose(_np(x.grad), [6.0, 2.0, 2.0])

    def test_non_leaf_setitem_with_other_tensor(self):
        x = _leaf([1.0, 2.0, 3.0])
        w = _leaf([10.0])
        y = x * 1.0
        y[1] = w[0] * w[0]
        (y * ad.tensor(np.array([1.0, 2.0, 3.0]))).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [1.0, 0.0, 3.0])
        np.testing.assert_allclose(_np(w.grad), [2.0 * 10.0 * 2.0])

    def test_non_leaf_inplace_methods_gradient(self):
        a = np.array([0.5, -1.0, 2.0])
        x = _leaf(a)
        y = x * 1.0
        y.mul_(x)  # y = x^2
        y.add_(x)  # y = x^2 + x
        y *= 3.0  # y = 3x^2 + 3x
        y -= x  # y = 3x^2 + 2x
        y.sum().backward()
        np.testing.assert_allclose(_np(x.grad), 6 * a + 2)

    def test_non_leaf_zero_and_copy_gradient(self):
        x = _leaf([1.0, 2.0])
        w = _leaf([3.0, 4.0])
        y = x * 2.0
        y.zero_()
        (y * 5.0 + x).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [1.0, 1.0])
        x.grad = None
        y = x * 2.0
        y.copy_(w * w)
        y.sum().backward()
        assert x.grad is None or np.all(_np(x.grad) == 0.0)
        np.testing.assert_allclose(_np(w.grad), [6.0, 8.0])

    def test_slice_view_inplace_gradient(self):
        a = np.array([1.0, 2.0, 3.0, 4.0])
        x = _leaf(a)
        y = x * 1.0
        y[1:] *= 2.0
        y[::2] += y[1::2]
        # y = [x0 + 2x1, 2x1, 2x2 + 2x3, 2x3]
        np.testing.assert_allclose(_np(y), [a[0] + 2 * a[1], 2 * a[1], 2 * a[2] + 2 * a[3],
                                            2 * a[3]])
        (y * ad.tensor(np.array([1.0, 10.0, 100.0, 1000.0]))).sum().backward()
        np.testing.assert_allclose(_np(x.grad), [1.0, 2.0 + 20.0, 200.0, 200.0 + 2000.0])

    def test_inplace_matches_torch(self):
        torch = pytest.importorskip("torch")
        a = np.array([0.3, -0.7, 1.1, 2.0])

        def run(lib, x):
            y = x.exp() * 1.0
            y[1] = x[2] * x[0]
            y.mul_(x)
            y[2:] += 1.0
            y.sub_(x * x)
            y[0] = y[3] * 2.0
            return (y * y).sum()

        x = _leaf(a)
        run(ad, x).backward()
        tx = torch.tensor(a, requires_grad=True)
        run(torch, tx).backward()
        np.testing.assert_allclose(_np(x.grad), tx.grad.numpy(), rtol=1e-12)


# ---- hooks ----------------------------------------------------------------------------------

class TestHooks:
    def test_leaf_hook_sees_and_replaces_grad(self):
        x = _leaf([1.0, 2.0])
        seen = []

        def hook(g):
            seen.append(_np(g).copy())
            return g * 10.0

        x.register_hook(hook)
        (x * 3.0).sum().backward()
        np.testing.assert_allclose(seen[0], [3.0, 3.0])
        np.testing.assert_allclose(_np(x.grad), [30.0, 30.0])

    def test_hook_returning_none_keeps_grad(self):
        x = _leaf([1.0, 2.0])
        calls = []
        x.register_hook(lambda g: calls.append(1))
        (x * 3.0).sum().backward()
        assert calls == [1]
        np.testing.assert_allclose(_np(x.grad), [3.0, 3.0])

    def test_non_leaf_hook_changes_upstream(self):
        x = _leaf([1.0, 2.0])
        h = x * x
        seen = []

        def hook(g):
            seen.append(_np(g).copy())
            return g * 2.0

        h.register_hook(hook)
        (h * 5.0).sum().backward()
        np.testing.assert_allclose(seen[0], [5.0, 5.0])
        np.testing.assert_allclose(_np(x.grad), [2 * 5.0 * 2 * 1.0, 2 * 5.0 * 2 * 2.0])
        assert h.grad is None

    def test_hook_remove(self):
        x = _leaf([1.0])
        handle = x.register_hook(lambda g: g * 100.0)
        h = x * 2.0
        h_handle = h.register_hook(lambda g: g * 7.0)
        handle.remove()
        h_handle.remove()
        h.sum().backward()
        np.testing.assert_allclose(_np(x.grad), [2.0])

    def test_hook_on_tensor_without_grad_raises(self):
        with pytest.raises(RuntimeError):
            ad.tensor([1.0]).register_hook(lambda g: g)

    def test_hooks_with_ad_grad(self):
        x = _leaf([1.0, 2.0])
        h = x * 3.0
        h.register_hook(lambda g: g * 2.0)
        (gx,) = ad.grad(h.sum(), x)
        np.testing.assert_allclose(_np(gx), [6.0, 6.0])


# ---- what a hook may return (SPEC section 8: as PyTorch, naming the hook) ---------------------

def _grads_through(path, x, h):
    """d(sum of 3 h)/dx through ``path``: backward, ad.grad or a gradient tape."""
    if path == "backward":
        (h * 3.0).sum().backward()
        return x.grad
    if path == "grad":
        return ad.grad((h * 3.0).sum(), x)[0]
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = (h() * 3.0).sum()
    return tape.gradient(y, x)


def _hooked(where, hook, dtype=ad.float64):
    """A leaf x and a function of it; ``hook`` sits on x (leaf) or on x * 2 (non-leaf)."""
    x = _leaf([1.0, 2.0, 3.0], dtype=dtype)
    if where == "leaf":
        x.register_hook(hook)

    def h():
        y = x * 2.0
        if where == "non_leaf":
            y.register_hook(hook)
        return y

    return x, h


def _run(path, x, h):
    return _grads_through(path, x, h if path == "tape" else h())


PATHS = ["backward", "grad", "tape"]
WHERE = ["leaf", "non_leaf"]


class TestHookResults:
    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize("where", WHERE)
    def test_changed_size_raises_naming_the_hook(self, where, path):
        def widen(g):
            return ad.zeros(5, dtype=g.dtype)

        x, h = _hooked(where, widen)
        with pytest.raises(RuntimeError, match=r"hook '.*widen' has changed the size of value "
                                               r"\(was shape \(3,\), got \(5,\)\)"):
            _run(path, x, h)

    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize("where", WHERE)
    def test_changed_dtype_raises_naming_the_hook(self, where, path):
        def promote(g):
            return g.astype(ad.float64)

        x, h = _hooked(where, promote, dtype=ad.float32)
        with pytest.raises(RuntimeError, match=r"hook '.*promote' has changed the type of value "
                                               r"\(was float32, got float64\)"):
            _run(path, x, h)

    @pytest.mark.parametrize("path", PATHS)
    @pytest.mark.parametrize("where", WHERE)
    @pytest.mark.parametrize("kind", ["numpy", "numpy_float64", "list"])
    def test_array_like_results_are_converted(self, kind, where, path):
        """An array-like becomes a tensor of the gradient's dtype and device (PyTorch refuses
        anything but a tensor; gpuad converts it as backward(gradient=...) does)."""
        def scale(g):
            r = g.numpy() * 10.0
            return {"numpy": r, "numpy_float64": r.astype(np.float64), "list": r.tolist()}[kind]

        x, h = _hooked(where, scale, dtype=ad.float32)
        g = _run(path, x, h)
        np.testing.assert_allclose(_np(g), [60.0, 60.0, 60.0])
        assert g.dtype == ad.float32 and g.device == x.device

    def test_numpy_result_is_not_adopted(self):
        keep = np.ones(2)
        x = _leaf([1.0, 2.0])
        x.register_hook(lambda g: keep)
        (x * 2.0).sum().backward()
        (x * 2.0).sum().backward()
        np.testing.assert_array_equal(keep, [1.0, 1.0])
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0])

    @pytest.mark.parametrize("where", WHERE)
    def test_a_non_array_result_is_a_type_error_naming_the_hook(self, where):
        def describe(g):
            return "the gradient"

        x, h = _hooked(where, describe)
        with pytest.raises(TypeError, match=r"hook '.*describe' returned a str"):
            _run("backward", x, h)

    def test_a_callable_object_is_named_by_its_class(self):
        class Clip:
            def __call__(self, g):
                return ad.zeros(4)

        x, h = _hooked("leaf", Clip())
        with pytest.raises(RuntimeError, match=r"hook '.*Clip' has changed the size"):
            _run("backward", x, h)

    @pytest.mark.parametrize("where", WHERE)
    def test_changed_device_raises_naming_the_hook(self, where, monkeypatch):
        from fake_cupy import installed

        def to_host(g):
            return g.cpu()

        def as_numpy(g):
            return g.numpy()

        with installed(monkeypatch):
            for hook, what in ((to_host, "has changed the device of value"),
                               (as_numpy, "returned a NumPy array")):
                x = ad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
                y = x * 2.0
                (x if where == "leaf" else y).register_hook(hook)
                pattern = f"hook '.*{hook.__name__}' {what}"
                with pytest.raises(ad.DeviceMismatchError, match=pattern):
                    y.sum().backward()

    def test_a_good_hook_on_cuda_works(self, monkeypatch):
        from fake_cupy import installed

        with installed(monkeypatch):
            x = ad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
            x.register_hook(lambda g: g * 2.0)
            y = x * 3.0
            y.register_hook(lambda g: [1.0, 1.0])  # a list: made on the gradient's device
            y.sum().backward()
            assert x.grad.device == "cuda"
            np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


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


# ---- no aliasing of .grad ---------------------------------------------------------------------

class TestGradOwnership:
    def test_add_grads_do_not_alias_0d(self):
        x, y = ad.tensor(1.0, requires_grad=True), ad.tensor(2.0, requires_grad=True)
        z = x + y
        z.backward()
        assert x.grad.item() == 1.0 and y.grad.item() == 1.0
        x.grad.zero_()
        assert y.grad.item() == 1.0

    def test_add_grads_do_not_alias(self):
        x, y = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
        z = (x + y).sum()
        z.backward()
        assert not np.shares_memory(x.grad.array, y.grad.array)
        x.grad.zero_()
        np.testing.assert_array_equal(_np(y.grad), [1.0, 1.0])

    def test_accumulation_does_not_leak_between_leaves(self):
        x, y = _leaf([1.0, 2.0]), _leaf([3.0, 4.0])
        (x + y).sum().backward()
        (x + y).sum().backward()
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0])
        np.testing.assert_array_equal(_np(y.grad), [2.0, 2.0])

    def test_accumulation_identity_ops(self):
        x = _leaf([1.0, 2.0])
        y = _leaf([5.0, 6.0])
        for _ in range(2):
            (x.reshape(2, 1) + y.reshape(1, 2)).sum().backward()
        np.testing.assert_array_equal(_np(x.grad), [4.0, 4.0])
        np.testing.assert_array_equal(_np(y.grad), [4.0, 4.0])

    def test_seed_gradient_not_aliased(self):
        x = _leaf([1.0, 2.0])
        y = x + 0.0
        G = ad.tensor(np.array([3.0, 4.0]))
        y.backward(gradient=G)
        np.testing.assert_array_equal(_np(x.grad), [3.0, 4.0])
        assert not np.shares_memory(x.grad.array, G.array)
        G.array[0] = 99.0
        np.testing.assert_array_equal(_np(x.grad), [3.0, 4.0])
        y2 = x * 1.0
        y2.backward(gradient=G)
        np.testing.assert_array_equal(_np(x.grad), [3.0 + 99.0, 4.0 + 4.0])
        np.testing.assert_array_equal(_np(G), [99.0, 4.0])

    def test_seed_gradient_on_leaf_not_aliased(self):
        x = _leaf([1.0, 2.0])
        G = ad.tensor(np.array([3.0, 4.0]))
        x.backward(gradient=G)
        assert not np.shares_memory(x.grad.array, G.array)
        x.backward(gradient=G)
        np.testing.assert_array_equal(_np(G), [3.0, 4.0])
        np.testing.assert_array_equal(_np(x.grad), [6.0, 8.0])

    def test_grad_not_aliased_with_retained_non_leaf(self):
        x = _leaf([1.0, 2.0])
        h = x + 0.0
        h.retain_grad()
        h.sum().backward()
        assert not np.shares_memory(x.grad.array, h.grad.array)
        x.grad.zero_()
        np.testing.assert_array_equal(_np(h.grad), [1.0, 1.0])

    def test_grad_not_aliased_with_hook_capture(self):
        x = _leaf([1.0, 2.0])
        captured = []
        h = x * 1.0
        h.register_hook(lambda g: captured.append(g))
        h.sum().backward()
        (x * 1.0).sum().backward()  # accumulates into x.grad (maybe in place)
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0])
        np.testing.assert_array_equal(_np(captured[0]), [1.0, 1.0])

    @pytest.mark.parametrize("where", ["leaf", "non_leaf"])
    def test_hook_returned_tensor_not_aliased(self, where):
        keep = ad.tensor(np.array([1.0, 1.0]))
        x = _leaf([1.0, 2.0])
        if where == "leaf":
            x.register_hook(lambda g: keep)
            (x * 3.0).sum().backward()
        else:
            h = x + 0.0
            h.register_hook(lambda g: keep)
            h.sum().backward()
        (x * 1.0).sum().backward()
        np.testing.assert_array_equal(_np(keep), [1.0, 1.0])
        np.testing.assert_array_equal(_np(x.grad), [2.0, 2.0])

    def test_grad_with_grad_outputs_not_aliased(self):
        x = _leaf([1.0, 2.0])
        G = ad.tensor(np.array([1.0, 1.0]))
        (g,) = ad.grad(x + 0.0, x, grad_outputs=G)
        np.testing.assert_array_equal(_np(g), [1.0, 1.0])
        x.backward(gradient=g)
        x.backward(gradient=g)
        np.testing.assert_array_equal(_np(g), [1.0, 1.0])
        np.testing.assert_array_equal(_np(G), [1.0, 1.0])


# ---- gradcheck -------------------------------------------------------------------------------

class TestGradcheck:
    def test_correct_functions(self):
        rng = np.random.default_rng(5)
        x = ad.tensor(rng.standard_normal((3, 2)), requires_grad=True)
        w = ad.tensor(rng.standard_normal((2, 4)), requires_grad=True)
        assert ad.gradcheck(lambda a, b: ad.tanh(a @ b), (x, w)) is True
        assert ad.gradcheck(lambda a: (a.exp() * a.sin()).sum(), (x,)) is True
        assert ad.gradcheck(lambda a: a * a, x) is True

    def test_float32_inputs_are_checked_in_float64(self):
        x = ad.tensor([0.5, 1.5, -0.3], requires_grad=True)
        assert x.dtype == np.float32
        assert ad.gradcheck(lambda a: (a ** 3).sum(), (x,)) is True

    def test_non_differentiable_arg(self):
        x = ad.tensor(np.array([0.2, 0.4]), requires_grad=True)
        c = ad.tensor(np.array([2.0, 3.0]))
        assert ad.gradcheck(lambda a, b: a * b, (x, c)) is True

    def test_wrong_gradient_raises(self):
        def bad(a):
            y = a * a
            if y.requires_grad:
                y.register_hook(lambda g: g * 2.0)
            return y.sum()

        x = ad.tensor(np.array([0.5, -1.0]), requires_grad=True)
        with pytest.raises(ad.GradcheckError) as info:
            ad.gradcheck(bad, (x,))
        assert isinstance(info.value, RuntimeError)
        # the worst mismatch is element 1: analytic 2 * (2 * -1) = -4, numerical -2
        assert "-4.0" in str(info.value)

    def test_wrong_gradient_nonscalar_output(self):
        def bad(a):
            y = a.exp()
            if y.requires_grad:
                y.register_hook(lambda g: g + 1.0)
            return y * 2.0

        x = ad.tensor(np.array([0.5, -1.0, 0.1]), requires_grad=True)
        with pytest.raises(ad.GradcheckError):
            ad.gradcheck(bad, (x,))


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


def test_grad_does_not_fill_retained_non_leaf_grads():
    x = ad.tensor(2.0, requires_grad=True)
    y = x * 3
    y.retain_grad()
    z = y * y
    (gx,) = ad.grad(z, x, retain_graph=True)
    assert gx.item() == 36.0
    assert y.grad is None and x.grad is None
    z.backward()
    assert y.grad.item() == 12.0 and x.grad.item() == 36.0


def test_a_hook_that_keeps_its_gradient_sees_it_unchanged():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    store = []
    x.register_hook(store.append)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(store[0].numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])


def test_retain_grad_then_in_place_gives_the_gradient_of_the_new_value():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    y.retain_grad()
    y.mul_(3.0)
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [6.0, 12.0])  # as torch 2.13
    np.testing.assert_array_equal(x.grad.numpy(), [18.0, 36.0])


def test_no_grad_generator_receives_thrown_exceptions_and_close():
    import contextlib

    log = []

    @contextlib.contextmanager
    @ad.no_grad()
    def quiet():
        try:
            yield
        except ValueError:
            log.append("handled")
        finally:
            log.append("closed")

    with quiet():
        raise ValueError("inside")
    assert log == ["handled", "closed"]

    @ad.no_grad()
    def numbers():
        try:
            yield ad.is_grad_enabled()
            yield 2
        finally:
            log.append("gen closed")

    g = numbers()
    assert next(g) is False
    g.close()
    assert log[-1] == "gen closed" and ad.is_grad_enabled()


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
