"""SPEC section 3: no aliasing of ``.grad``: each gradient owns its storage, apart from
the caller's tensors and from every other gradient.
"""
import numpy as np
import pytest
from leaves import _leaf, _np

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


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
