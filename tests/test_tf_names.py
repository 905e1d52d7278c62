"""TensorFlow spellings (SPEC section 4): each is the gpuad op under TensorFlow's name, with
its gradient; cond and while_loop run eagerly."""
import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad


def test_reductions_with_tf_names(device):
    a = np.array([[1.0, 5.0, 2.0], [4.0, 0.5, 6.0]])
    x = ad.constant(a, device=device)
    assert ad.reduce_sum(x).item() == a.sum()
    np.testing.assert_array_equal(ad.reduce_sum(x, axis=[0, 1], keepdims=True).numpy(),
                                  a.sum(keepdims=True))
    np.testing.assert_array_equal(ad.reduce_mean(x, axis=1).numpy(), a.mean(axis=1))
    np.testing.assert_array_equal(ad.reduce_max(x, axis=0).numpy(), a.max(axis=0))
    np.testing.assert_array_equal(ad.reduce_min(x, 1, True).numpy(), a.min(axis=1, keepdims=True))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.reduce_max(x, axis=1) + ad.reduce_mean(x)
    expected = (a == a.max(axis=1, keepdims=True)) + 2 / 6  # y has 2 elements
    assert_close(tape.gradient(y, x).numpy(), expected, device=device)


def test_arithmetic_with_tf_names(device):
    x = ad.constant([1.0, 2.0], device=device)
    y = ad.constant([4.0, 8.0], device=device)
    np.testing.assert_array_equal(ad.multiply(x, y).numpy(), [4.0, 16.0])
    np.testing.assert_array_equal(ad.subtract(x, y).numpy(), [-3.0, -6.0])
    np.testing.assert_array_equal(ad.divide(x, y).numpy(), [0.25, 0.25])
    np.testing.assert_array_equal(ad.add(x, 1).numpy(), [2.0, 3.0])
    np.testing.assert_array_equal(ad.square(x).numpy(), [1.0, 4.0])
    with ad.GradientTape() as tape:
        tape.watch([x, y])
        z = ad.reduce_sum(ad.divide(ad.multiply(x, y), ad.subtract(y, x)))
    gx, gy = tape.gradient(z, [x, y])
    xv, yv = np.array([1.0, 2.0]), np.array([4.0, 8.0])
    assert_close(gx.numpy(), yv ** 2 / (yv - xv) ** 2, rtol=1e-6, device=device)
    assert_close(gy.numpy(), -xv ** 2 / (yv - xv) ** 2, rtol=1e-6, device=device)


def test_clip_cast_compare_fill(device):
    t = ad.constant([[-10.0, -1.0, 0.0], [0.0, 2.0, 10.0]], device=device)
    np.testing.assert_array_equal(
        ad.clip_by_value(t, clip_value_min=-1, clip_value_max=1).numpy(),
        [[-1.0, -1.0, 0.0], [0.0, 1.0, 1.0]])
    with ad.GradientTape() as tape:
        tape.watch(t)
        y = ad.reduce_sum(ad.clip_by_value(t, -1.0, 1.0))
    np.testing.assert_array_equal(tape.gradient(y, t).numpy(), [[0, 1, 1], [1, 0, 0]])
    labels = ad.constant([0, 3, 1], device=device)
    f = ad.cast(labels, ad.float32)
    assert f.dtype == ad.float32 and f.numpy().tolist() == [0.0, 3.0, 1.0]
    assert ad.cast(ad.constant([1.7, -1.7]), ad.int32).numpy().tolist() == [1, -1]
    assert ad.less(labels, 2).numpy().tolist() == [True, False, True]
    assert ad.greater(labels, 2).numpy().tolist() == [False, True, False]
    assert ad.equal(labels, 3).numpy().tolist() == [False, True, False]
    np.testing.assert_array_equal(ad.fill([2, 3], 9).numpy(), np.full((2, 3), 9))


def test_gather_nd_with_gradient(device):
    x = ad.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.gather_nd(x, [[1, 1], [1, 2], [1, 1]])
        s = ad.reduce_sum(y * ad.constant([1.0, 10.0, 100.0], device=device))
    np.testing.assert_array_equal(y.numpy(), [5.0, 6.0, 5.0])
    np.testing.assert_array_equal(tape.gradient(s, x).numpy(), [[0, 0, 0], [0, 101, 10]])


def test_cond_runs_only_the_branch_taken(device):
    ran = []

    def f1():
        ran.append("f1")
        return ad.multiply(x, 17)

    def f2():
        ran.append("f2")
        return ad.add(y, 23)

    x = ad.constant(2, device=device)
    y = ad.constant(5, device=device)
    assert ad.cond(ad.less(x, y), f1, f2).item() == 34 and ran == ["f1"]
    assert ad.cond(False, f1, f2).item() == 28 and ran == ["f1", "f2"]
    with pytest.raises(TypeError, match="both"):
        ad.cond(True, f1)


def test_cond_and_while_loop_are_recorded_as_they_run(device):
    x = ad.constant(1.5, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.cond(x > 1.0, lambda: x * x, lambda: x)
        (i, z) = ad.while_loop(lambda i, z: i < 3, lambda i, z: (i + 1, z * x), [0, y])
    assert z.item() == pytest.approx(1.5 ** 5) and i == 3
    assert tape.gradient(z, x).item() == pytest.approx(5 * 1.5 ** 4)


def test_while_loop_forms():
    i = ad.constant(0)
    r = ad.while_loop(lambda i: ad.less(i, 10), lambda i: (ad.add(i, 1),), [i])
    assert isinstance(r, tuple) and len(r) == 1 and r[0].item() == 10
    assert ad.while_loop(lambda i: i < 10, lambda i: i + 1, i).item() == 10
    assert ad.while_loop(lambda i: True, lambda i: i + 1, i, maximum_iterations=4).item() == 4
    with pytest.raises(ValueError, match="2 values for 1 loop variables"):
        ad.while_loop(lambda i: i < 3, lambda i: (i, i), [i])


def test_more_tf_names(device):
    a = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    x = ad.constant(a, device=device)
    assert_close(ad.reduce_prod(x, axis=1).numpy(), a.prod(axis=1), device=device)
    assert_close(ad.reduce_logsumexp(x, axis=0).numpy(),
                 np.log(np.exp(a).sum(axis=0)), rtol=1e-12, device=device)
    np.testing.assert_array_equal(ad.concat([x, x], axis=0).numpy(), np.concatenate([a, a]))
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.reduce_prod(x)
    assert_close(tape.gradient(y, x).numpy(), a.prod() / a, rtol=1e-12, device=device)


def test_fill_takes_a_dims_tensor_and_lists_of_floats_are_float32(device):
    f = ad.fill(ad.constant([2, 2], device=device), 1.0, device=device)
    assert f.shape == (2, 2) and f.dtype == ad.float32
    v = ad.Variable([1.0, 2.0], device=device)
    assert (v * [3.0, 4.0]).dtype == ad.float32
    assert ad.multiply([1.0, 2.0], [3.0, 4.0]).dtype == ad.float32
    with pytest.raises(TypeError, match="truncated"):
        ad.Variable([1]).assign([2.7])
