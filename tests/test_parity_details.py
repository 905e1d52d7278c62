"""Details where gpuad follows NumPy's signatures and PyTorch's behaviour: multi-output
backward, formatting, conversions, dtype corner cases, float16 range, warnings, and errors."""
import copy
import math
import warnings

import numpy as np
import pytest

import gpuad as ad

pytestmark = pytest.mark.usefixtures("cpu_default")


# ---- several outputs ------------------------------------------------------------------------

def test_backward_of_outputs_that_depend_on_each_other():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    aux = (x * x).sum()
    loss = aux * 2
    ad.backward([loss, aux])  # loss depends on aux: aux must wait for loss's gradient
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 12.0])
    x2 = ad.tensor([1.0, 2.0], requires_grad=True)
    y2 = x2 * 2
    y1 = y2 * 3
    for outs in ([y1, y2], [y2, y1]):
        (g,) = ad.grad(outs, x2, [ad.ones(2), ad.ones(2)], retain_graph=True)
        np.testing.assert_array_equal(g.numpy(), [8.0, 8.0])


# ---- conversions and formatting ----------------------------------------------------------------

def test_format_and_to_dtype():
    loss = ad.tensor([1.25, 2.0]).sum()
    assert f"{loss:.3f}" == "3.250"
    assert f"{loss}" == "tensor(3.2500)"
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(ad.float64)
    assert y.dtype == ad.float64 and y.requires_grad
    assert x.to(ad.zeros(1, dtype=ad.float16)).dtype == ad.float16
    y.sum().backward()
    assert x.grad.dtype == ad.float32


def test_repr_reads_like_pytorch():
    assert repr(ad.tensor([0.1, 1 / 3])) == "tensor([0.1000, 0.3333])"
    assert repr(ad.tensor(3.5)) == "tensor(3.5000)"
    assert repr(ad.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(ad.tensor([1e-5, 1e5])) == "tensor([1.0000e-05, 1.0000e+05])"
    assert repr(ad.tensor([])) == "tensor([])"
    assert repr(ad.zeros(2, 0)) == "tensor([], size=(2, 0))"
    assert repr(ad.tensor([1, 2], dtype=ad.int32)) == "tensor([1, 2], dtype=int32)"


def test_copy_and_deepcopy_of_leaves():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    for y in (copy.copy(x), copy.deepcopy(x)):
        assert y is not x and y.requires_grad and y.is_leaf
        assert not np.shares_memory(y.array, x.array)
        np.testing.assert_array_equal(y.grad.numpy(), [2.0, 2.0])
    with pytest.raises(RuntimeError, match="only leaf tensors can be deep-copied"):
        copy.deepcopy(x * 2)


def test_grad_setter_checks_dtype():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="must match"):
        x.grad = ad.tensor([1.0, 1.0], dtype=ad.float64)


def test_bare_no_grad_decorator_keeps_the_function():
    @ad.no_grad
    def f():
        """Doc."""
        return ad.is_grad_enabled()

    assert f() is False and f.__name__ == "f" and f.__doc__ == "Doc."


# ---- dtypes and ranges ---------------------------------------------------------------------

def test_reciprocal_of_integers_is_float():
    np.testing.assert_array_equal(ad.reciprocal(ad.tensor([2, 4])).numpy(), [0.5, 0.25])


def test_integer_to_negative_power_names_the_problem():
    with pytest.raises(ValueError, match="pow of int64 .* Integers to negative integer powers"):
        ad.tensor([1, 2]) ** -1


def test_float16_reductions_do_not_overflow():
    x = ad.tensor([300.0], dtype=ad.float16, requires_grad=True)
    n = ad.norm(x)
    assert n.dtype == ad.float16 and n.item() == 300.0
    n.backward()
    assert x.grad.item() == 1.0
    assert ad.std(ad.tensor([3000.0, 1.0], dtype=ad.float16)).item() == pytest.approx(1500, 1e-3)
    assert ad.logsumexp(ad.full((3000,), 10.0, dtype=ad.float16)).item() == pytest.approx(
        10 + math.log(3000), rel=1e-3)
    x = ad.tensor([1000.0, -1000.0, 1.0], dtype=ad.float16, requires_grad=True)
    ad.gelu(x, approximate="tanh").sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))


def test_domain_edges_give_ieee_values_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ad.log(ad.tensor([0.0])).item() == -math.inf
        assert math.isnan(ad.sqrt(ad.tensor([-1.0])).item())
        assert (ad.tensor([1.0]) / 0).item() == math.inf
        assert ad.exp(ad.tensor([1000.0])).item() == math.inf
        assert ad.rsqrt(ad.tensor([0.0])).item() == math.inf
        assert (ad.tensor(0.0) ** -1.0).item() == math.inf


def test_piecewise_linear_second_derivatives_are_zero_not_missing():
    x = ad.tensor([-1.0, 2.0], requires_grad=True)
    for f in (ad.relu, ad.leaky_relu, ad.abs):
        (g,) = ad.grad(f(x).sum(), x, create_graph=True)
        assert g.requires_grad
        (h,) = ad.grad(g.sum(), x)
        np.testing.assert_array_equal(h.numpy(), [0.0, 0.0])


def test_clip_with_min_above_max_sends_gradient_to_max():
    torch = pytest.importorskip("torch")
    vals = ([-2.0, 0.0, 2.0], [1.0, 1.0, 1.0], [-1.0, -1.0, -1.0])
    xs = [ad.tensor(v, requires_grad=True) for v in vals]
    ts = [torch.tensor(v, requires_grad=True) for v in vals]
    ad.clip(*xs).sum().backward()
    torch.clamp(*ts).sum().backward()
    for a, t in zip(xs, ts):
        np.testing.assert_array_equal(a.grad.numpy(), t.grad.numpy())


# ---- NumPy signatures ----------------------------------------------------------------------

def test_numpy_signature_forms():
    x = ad.arange(6.0).reshape(2, 3)
    assert x[[]].shape == (0, 3)
    assert x[ad.tensor(True)].shape == (1, 2, 3)
    assert ad.tensor(2.5).sum(axis=0).item() == 2.5
    assert ad.concatenate([x, x], axis=None).shape == (12,)
    assert ad.pad(ad.ones(2), (1,)).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert ad.expand_dims(x, np.int64(0)).shape == (1, 2, 3)
    assert len(ad.split(x, np.int64(3), axis=1)) == 3
    assert ad.softmax(x, axis=np.int64(0)).shape == (2, 3)
    assert ad.take_along_axis(x, np.array([5, 0]), None).tolist() == [5.0, 0.0]
    rows, cols = ad.where(x > 3)
    assert rows.tolist() == [1, 1] and cols.tolist() == [1, 2]
    assert ad.ones_like(np.ones(2)).dtype == ad.float64
    assert ad.norm(ad.tensor([1.0, 2.0]), ord=-1).item() == pytest.approx(2 / 3)
    assert x.any().item() and not ad.all(x).item()


def test_norm_zero_counts_and_has_zero_gradient():
    x = ad.tensor([1.0, 0.0, 2.0], requires_grad=True)
    n = ad.norm(x, ord=0)
    assert n.item() == 2.0
    n.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_manual_seed_accepts_negative_seeds():
    ad.manual_seed(-1)
    a = ad.rand(3)
    ad.manual_seed(-1)
    np.testing.assert_array_equal(a.numpy(), ad.rand(3).numpy())


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("data", ["abc", None, 2**70, [[1, 2], [3]]], ids=str)
def test_tensor_refuses_non_numeric_data(data):
    with pytest.raises(TypeError, match="gpuad.tensor: cannot make a tensor"):
        ad.tensor(data)


def test_bad_operands_and_shapes_say_what_is_wrong():
    with pytest.raises(TypeError, match="cannot use a str"):
        ad.ones(2) + "a"
    with pytest.raises(TypeError, match="a shape is ints"):
        ad.zeros(2.5)
    with pytest.raises(TypeError, match="samples are floating-point"):
        ad.rand(2, dtype=ad.int64)


def test_no_grad_decorates_generators():
    @ad.no_grad()
    def steps():
        for _ in range(2):
            yield ad.is_grad_enabled()

    assert list(steps()) == [False, False]
    assert ad.is_grad_enabled()


def test_errors_for_empty_and_mismatched_in_place_input():
    with pytest.raises(ValueError, match="max of an empty tensor"):
        ad.max(ad.zeros(0))
    with pytest.raises(ValueError, match=r"copy_ cannot copy shape \(2,\) into shape \(3,\)"):
        ad.zeros(3).copy_(ad.ones(2))
    with pytest.raises(ValueError, match="setitem cannot store a value of shape"):
        ad.zeros(3)[:] = ad.ones(2)
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    view = ad.broadcast_to(x * 1, (2, 2))
    with pytest.raises(RuntimeError, match="read-only view"):
        view += 1


def test_view_chains_do_not_keep_intermediate_tensors_alive():
    import gc
    import weakref

    x = ad.ones(3, 4) * 1
    y = x
    refs = []
    for _ in range(4):
        y = y.T
        refs.append(weakref.ref(y))
    gc.collect()
    assert refs[-1]() is y and y._base is x  # the last view knows its base ...
    assert all(r() is None for r in refs[:-1])  # ... but keeps no view in between alive


def test_erf_of_integers_is_float():
    np.testing.assert_allclose(ad.erf(ad.tensor([0, 1])).numpy(), [0.0, math.erf(1)])
