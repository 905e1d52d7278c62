"""Which arrays a leaf adopts as its .grad storage: a whole-array view made in the backward
pass (the transposed weight gradient of x @ W.T) without a copy, and never anything a caller,
a hook or a custom rule owns, nor one array for two leaves (accumulating into one would change
the other)."""
import numpy as np

import gpuad as ad


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
