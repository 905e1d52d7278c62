"""ad.Variable and ad.constant (SPEC section 4): creation, trainability, assignment, and their
place in the one graph (backward, tapes, version counters)."""
import copy

import numpy as np
import pytest

import gpuad as ad


def test_variable_creation(device):
    v = ad.Variable([1.0, 2.0], device=device, name="v")
    assert isinstance(v, ad.Variable) and isinstance(v, ad.Tensor)
    assert v.dtype == ad.float32 and v.device == device and v.shape == (2,)
    assert v.trainable and v.is_leaf and v.name == "v"
    assert not v.requires_grad  # watched by tapes, as in TensorFlow; no graph outside them
    assert ad.Variable(5).dtype == ad.int64
    assert ad.Variable(np.float64(1.5)).dtype == ad.float64
    assert ad.Variable(lambda: [3.0], dtype=ad.float64).numpy().tolist() == [3.0]
    frozen = ad.Variable(1.0, trainable=False)
    assert not frozen.trainable and not frozen.requires_grad
    src = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    copied = ad.Variable(src * 2)
    assert copied.is_leaf and copied.numpy().tolist() == [2.0, 4.0]


def test_ops_on_variables_build_no_graph_outside_tapes(device):
    v = ad.Variable([1.0, 2.0], device=device)
    y = (v * v).sum()
    assert type(y) is ad.Tensor and not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="Variable is watched by GradientTape"):
        y.backward()
    v.requires_grad_()  # the PyTorch style, on request
    y = (v * v).sum()
    y.backward()
    np.testing.assert_array_equal(v.grad.numpy(), [2.0, 4.0])
    with ad.GradientTape() as tape:  # and still watched by tapes
        y = (v * v * v).sum()
    np.testing.assert_array_equal(tape.gradient(y, v).numpy(), [3.0, 12.0])


def test_in_place_ops_on_a_variable(device):
    v = ad.Variable([1.0, 2.0], device=device)
    v += 1.0  # nothing records: a plain in-place update
    np.testing.assert_array_equal(v.numpy(), [2.0, 3.0])
    with ad.GradientTape():
        with pytest.raises(RuntimeError, match="assign, assign_add or assign_sub"):
            v += 1.0
        v.assign_add(1.0)  # not recorded
    np.testing.assert_array_equal(v.numpy(), [3.0, 4.0])


def test_assign_family(device):
    v = ad.Variable([1.0, 2.0], device=device)
    assert v.assign([5.0, 6.0]) is v
    np.testing.assert_array_equal(v.numpy(), [5.0, 6.0])
    v.assign_add(ad.tensor([1.0, 1.0], device=device))
    v.assign_sub(0.5)
    np.testing.assert_array_equal(v.numpy(), [5.5, 6.5])
    assert v.assign(np.array([1, 2])).dtype == ad.float32  # cast to the Variable's dtype
    assert v.assign([0.0, 0.0], read_value=False) is None
    with pytest.raises(ValueError, match=r"assign of 'Variable'.*shape \(3,\).*shape \(2,\)"):
        v.assign([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="does not broadcast"):
        v.assign_add([1.0, 2.0, 3.0])
    assert v.is_leaf and isinstance(v, ad.Variable)


def test_assign_after_use_is_caught_by_the_gradient(device):
    v = ad.Variable([1.0, 2.0], device=device)
    with ad.GradientTape() as tape:
        y = (v * v).sum()
    v.assign_add(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        tape.gradient(y, v)


def test_training_loop_with_tape_and_assign_sub(device):
    w = ad.Variable(0.0, device=device)
    for _ in range(100):
        with ad.GradientTape() as tape:
            loss = (w - 3.0) ** 2
        w.assign_sub(0.1 * tape.gradient(loss, w))
    assert w.item() == pytest.approx(3.0, abs=1e-4)


def test_variable_repr_value_and_copy(device):
    v = ad.Variable([1.0, 2.0], device=device, name="w")
    text = repr(v)
    assert text.startswith("<Variable 'w' shape=(2,) dtype=float32") and "numpy=[1. 2.]" in text
    with ad.GradientTape() as tape:
        r = v.value()
        s = (r * 3.0).sum()
    assert type(r) is ad.Tensor
    np.testing.assert_array_equal(tape.gradient(s, v).numpy(), [3.0, 3.0])
    v.requires_grad_()
    (v * 2.0).sum().backward()
    c = copy.deepcopy(v)
    assert isinstance(c, ad.Variable) and c.name == "w" and c.trainable and c.requires_grad
    c.assign([9.0, 9.0])
    np.testing.assert_array_equal(v.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(c.grad.numpy(), [2.0, 2.0])


def test_constant(device):
    c = ad.constant(5.0, device=device)
    assert c.dtype == ad.float32 and not c.requires_grad and c.device == device
    assert ad.constant([1, 2]).dtype == ad.int64
    assert ad.constant(1.0, dtype=ad.float64).dtype == ad.float64
    np.testing.assert_array_equal(ad.constant(7.0, shape=(2, 3)).numpy(), np.full((2, 3), 7.0))
    np.testing.assert_array_equal(ad.constant([1, 2, 3, 4], shape=[2, 2]).numpy(),
                                  [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="cannot fill shape"):
        ad.constant([1, 2, 3], shape=(2, 2))
    x = ad.tensor([1.0], requires_grad=True)
    assert not ad.constant(x * 2).requires_grad
