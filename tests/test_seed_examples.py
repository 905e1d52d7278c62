"""The PyTorch-autograd seed article's examples (seeds/001), in gpuad spelling, with its outputs."""
import numpy as np
import pytest

import gpuad as ad
from gpuad import tensor


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    """These examples print and compare CPU tensors (the default
    device is cuda:0 where a GPU is usable)."""


def test_dtypes_and_broadcasting():
    assert tensor(1.0, requires_grad=True).requires_grad
    assert tensor(1.0, dtype=ad.float16).dtype == ad.half == np.float16
    assert tensor([1.0, 2.0], dtype=ad.double).dtype == np.float64
    assert tensor(1.0).dtype == ad.float32
    x0, x1 = tensor(1.0), tensor([1.0, 2.0])
    assert repr(x0 + x1) == "tensor([2., 3.])"
    assert repr(x1[1]) == "tensor(2.)"
    out = x1.numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.0, 2.0])


def test_first_derivative():
    x = tensor([1.0, 2.0], requires_grad=True)
    y = 2 * x[0] ** 2 + x[1] ** 2 + 2 * x[0] + x[1]
    assert repr(y) == "tensor(10., grad_fn=<AddBackward>)"
    y.backward()
    assert repr(x.grad) == "tensor([6., 5.])"


def test_backward_needs_a_scalar():
    x = tensor([1.0, 2.0], requires_grad=True)
    z = 2 * x
    assert repr(z) == "tensor([2., 4.], grad_fn=<MulBackward>)"
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        z.backward()


def test_intermediate_gradients_need_retain_grad():
    x = tensor(1.0, requires_grad=True)
    y = x ** 2
    z = y ** 2
    z.backward()
    assert y.grad is None
    assert x.grad.item() == 4.0
    x = tensor(1.0, requires_grad=True)
    y = x ** 2
    z = y ** 2
    y.retain_grad()
    z.backward()
    assert y.grad.item() == 2.0
    assert x.grad.item() == 4.0


def test_second_derivative():
    x = tensor(1.0, requires_grad=True)
    y = x ** 3
    grads = ad.autograd.grad(outputs=y, inputs=x, create_graph=True)
    assert isinstance(grads, tuple)
    assert grads[0].item() == 3.0
    grads[0].backward()
    assert x.grad.item() == 6.0
