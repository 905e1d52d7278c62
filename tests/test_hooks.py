"""SPEC section 3: gradient hooks (``register_hook``, ``retain_grad``): when they run,
and what a hook may return, on every path (``backward``, ``ad.grad``, a tape).
"""
import numpy as np
import pytest
from leaves import _leaf, _np

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


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


def test_a_hook_that_keeps_its_gradient_sees_it_unchanged():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    store = []
    x.register_hook(store.append)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(store[0].numpy(), [3.0, 3.0])
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
