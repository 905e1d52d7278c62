"""SPEC section 3: in-place ops under reverse mode: their gradients, the version counter
that catches a saved value changed in place, and retained gradients across such a change.

Every gradient is checked against an independent reference: an analytic formula, NumPy, or
PyTorch (where it is installed).
"""
import numpy as np
import pytest
from leaves import _leaf, _np

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


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


def test_retain_grad_then_in_place_gives_the_gradient_of_the_new_value():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    y.retain_grad()
    y.mul_(3.0)
    (y * y).sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [6.0, 12.0])  # as torch 2.13
    np.testing.assert_array_equal(x.grad.numpy(), [18.0, 36.0])
