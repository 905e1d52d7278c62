"""SPEC section 3: ``ad.grad``, derivatives of higher order, and ``ad.gradcheck``.

Every gradient is checked against an independent reference: an analytic formula, NumPy, or
PyTorch (where it is installed).
"""
import math

import numpy as np
import pytest
from leaves import _leaf, _np

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


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
