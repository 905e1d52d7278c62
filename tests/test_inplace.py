"""In-place ops on tensors in the graph: values and gradients against PyTorch's, and errors
where a change would make a saved value wrong."""
import numpy as np
import pytest

import gpuad as ad


def _set_scaled(x, m):
    y = x * 2
    y[0] = y[0] * 3
    return y


def _augmented(x, m):
    y = x * 2
    y[0] += 1
    return y * y


def _view_mul(x, m):
    y = x * 2
    v = y[0:2]
    v.mul_(3)
    return y * y


def _fill_slots(x, m):
    z = m.zeros(3)
    z[1] = x[0] * 2
    z[2] = x[2] ** 2
    return z


def _zero(x, m):
    y = x * 1
    y.zero_()
    return y + x


def _copy(x, m):
    y = x * 2
    y.copy_(x ** 2)
    return y


def _chain(x, m):
    y = x + 0
    y.add_(x).mul_(x).sub_(1).div_(2)
    return y


def _sibling_view(x, m):
    y = x * 2
    a, b = y[0:2], y[1:3]
    a.mul_(3)  # b shares y[1] with a: its graph must see the change
    return b * 1


def _reshaped_view(x, m):
    y = x * 1
    v = y.reshape(3, 1)
    v.mul_(x.reshape(3, 1))
    return y * y


def _transposed_view_row(x, m):
    y = (x * 1).reshape(1, 3)
    v = y.T
    v[1] *= 3
    return y


def _view_of_view(x, m):
    y = (x * 2).reshape(3, 1)
    y[1][0:1] += x[0]
    return y * y


@pytest.mark.parametrize("f", [_set_scaled, _augmented, _view_mul, _fill_slots, _zero, _copy,
                               _chain, _sibling_view, _reshaped_view, _transposed_view_row,
                               _view_of_view])
def test_inplace_gradients_match_torch(f):
    torch = pytest.importorskip("torch")
    x = ad.tensor([1.0, 2.0, 3.0], dtype=ad.float64, requires_grad=True)
    xt = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    y, yt = f(x, ad), f(xt, torch)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy())
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy())


def test_changing_a_saved_output_is_caught():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    y += 1  # exp's rule reads its output, which is now different
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()


def test_changing_a_saved_input_through_a_view_is_caught():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    w = ad.tensor([3.0, 4.0])
    y = (x * w).sum()
    w.reshape(2, 1)[0] = 10.0  # a view shares the version counter
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_inplace_on_a_view_made_under_no_grad_is_refused():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    with ad.no_grad():
        v = y[0:2]
    with pytest.raises(RuntimeError, match="made under no_grad"):
        v.mul_(5)
    np.testing.assert_array_equal(y.numpy(), [1.0, 2.0, 3.0])


def test_views_of_a_leaf_cannot_change_it():
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        x.reshape(3, 1)[0] += 1
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0, 3.0])


def test_inplace_cannot_change_shape_or_kind():
    y = ad.ones(3, requires_grad=True) * 1
    with pytest.raises(RuntimeError, match="cannot change the shape"):
        y += ad.ones(2, 3)
    i = ad.tensor([1, 2])
    with pytest.raises(RuntimeError, match="add_ cannot store the result"):
        i += 1.5
