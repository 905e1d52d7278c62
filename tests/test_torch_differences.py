"""The deliberate differences from PyTorch that the docs' "Ops" bullet (docs/overview.md)
documents, pinned so that a change to them is a decision, not an accident (each side checked
where torch is installed)."""
import numpy as np
import pytest

import gpuad as ad

pytestmark = pytest.mark.usefixtures("cpu_default")
NAN = float("nan")


def test_sign_of_nan_is_nan_as_numpy():
    assert np.isnan(ad.sign(ad.tensor([NAN])).numpy()).all()
    assert np.isnan(np.sign(np.array([NAN]))).all()


@pytest.mark.parametrize("fn", [ad.abs, lambda v: ad.norm(v, ord=1)], ids=["abs", "norm1"])
def test_gradient_at_nan_stays_nan(fn):
    x = ad.tensor([NAN, 2.0, -3.0], requires_grad=True)
    fn(x).sum().backward()
    g = x.grad.numpy()
    assert np.isnan(g[0]) and g[1:].tolist() == [1.0, -1.0]


def test_relu_of_negative_zero_is_positive_zero():
    y = ad.relu(ad.tensor([-0.0, 0.0])).numpy()
    assert y.tolist() == [0.0, 0.0] and not np.signbit(y).any()


def test_pytorch_differs_where_documented():
    torch = pytest.importorskip("torch")
    assert torch.sign(torch.tensor([NAN])).item() == 0.0
    x = torch.tensor([NAN], requires_grad=True)
    torch.abs(x).sum().backward()
    assert x.grad.item() == 0.0
    assert torch.signbit(torch.relu(torch.tensor([-0.0]))).item()


def test_max_gradient_is_a_select_under_an_infinite_upstream_gradient():
    # d/dx max(x) sends g to the maximum only; an inf g leaves the others 0 (a select, as relu),
    # where torch's amax multiplies its mask by g and gives them nan
    x = ad.tensor([0.5, -1.0], requires_grad=True)
    (1.0 / ad.minimum(ad.max(x) - 0.5, 0.0)).backward()
    assert x.grad.numpy()[1] == 0.0 and np.isinf(x.grad.numpy()[0])
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.5, -1.0], requires_grad=True)
    (1.0 / torch.clamp(t.amax() - 0.5, max=0.0)).backward()
    assert np.isnan(t.grad[1].item())


def test_float64_norm_and_std_do_not_overflow_where_the_result_fits():
    x = np.array([1e300, 1e300])
    assert ad.norm(ad.tensor(x)).item() == pytest.approx(np.sqrt(2.0) * 1e300, rel=1e-15)
    y = np.array([1e154, -1e154])
    assert ad.std(ad.tensor(y)).item() == pytest.approx(1e154, rel=1e-15)
    torch = pytest.importorskip("torch")
    assert np.isinf(torch.linalg.vector_norm(torch.tensor(x)).item())
    assert np.isinf(torch.std(torch.tensor(y), correction=0).item())


def test_spread_of_a_constant_slice_is_exactly_zero():
    # the mean is refined (and the squares' sum corrected), so the rounding of sum / N cancels
    x = ad.tensor([0.1] * 3, dtype=ad.float64, requires_grad=True)
    ad.std(x).backward()
    assert ad.std(x).item() == 0.0 and x.grad.tolist() == [0.0] * 3
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.1] * 3, dtype=torch.float64, requires_grad=True)
    y = t.std(correction=0)
    y.backward()
    assert 0 < y.item() < 1e-16 and t.grad.tolist() == pytest.approx([-1 / 3] * 3, rel=1e-6)


@pytest.mark.parametrize("name", ["std", "norm"])
def test_second_derivatives_where_std_or_norm_is_zero_are_zero(name):
    """std'(x) and norm'(x) are 0 where the result is 0 (PyTorch's convention), masked as a
    whole, so the derivatives of the gradient are 0 there too; PyTorch's are nan."""
    def run(m):
        x = m.tensor([0.5, 0.5], dtype=m.float64, requires_grad=True)
        w = m.tensor([-1.75], dtype=m.float64, requires_grad=True)
        if m is ad:
            y = ad.std(x) if name == "std" else ad.norm(x - 0.5)
            grad = ad.grad
        else:
            y = x.std(correction=0) if name == "std" else m.linalg.vector_norm(x - 0.5)
            grad = m.autograd.grad
        gx, gw = grad((y * w).sum(), [x, w], create_graph=True)
        return [v.detach().numpy() for v in grad((gx * 1.3).sum() + (gw * 0.7).sum(), [x, w])]
    assert [v.tolist() for v in run(ad)] == [[0.0, 0.0], [0.0]]
    torch = pytest.importorskip("torch")
    assert np.isnan(np.concatenate(run(torch))).any()


def test_pow_exponent_gradient_at_a_zero_base_is_a_select():
    """d(a ** b)/db = a ** b log(a) is 0 at a = 0, b > 0 by a where: an inf arriving there
    (from 1 / 0 ** b) stays out, where PyTorch's rule multiplies it by the zero (nan)."""
    b = ad.tensor([0.5, 2.0], dtype=ad.float64, requires_grad=True)
    ad.reciprocal(ad.tensor(0.0, dtype=ad.float64) ** b).sum().backward()
    assert b.grad.tolist() == [0.0, 0.0]
    torch = pytest.importorskip("torch")
    tb = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    torch.reciprocal(torch.tensor(0.0, dtype=torch.float64) ** tb).sum().backward()
    assert torch.isnan(tb.grad).all()


def test_prod_gradient_is_the_product_of_the_others_also_at_nan_and_inf():
    """d prod/dx_i is the product of the other elements (as mul's d(ab)/db = a), also where
    the product overflows or x_i is nan or inf; PyTorch's prod / x_i is inf or nan there."""
    x = ad.tensor([2.0, NAN, 3.0], dtype=ad.float64, requires_grad=True)
    ad.prod(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [NAN, 6.0, NAN])
    y = ad.tensor([1.0, 1e300, 1e300], dtype=ad.float64, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="overflow"):  # (the product, as NumPy's)
        ad.prod(y).backward()
    np.testing.assert_array_equal(y.grad.numpy(), [np.inf, 1e300, 1e300])
    torch = pytest.importorskip("torch")
    tx = torch.tensor([2.0, NAN, 3.0], dtype=torch.float64, requires_grad=True)
    torch.prod(tx).backward()
    assert torch.isnan(tx.grad).all()
    ty = torch.tensor([1.0, 1e300, 1e300], dtype=torch.float64, requires_grad=True)
    torch.prod(ty).backward()
    assert torch.isinf(ty.grad).all()


def test_prod_others_of_a_slice_as_long_as_the_docs_say():
    """The docs' bound on the slices whose products of others are built from mantissas and
    exponents is the code's; at that length, 1e300s then 1e-300s (prefix products far past
    the float range) and a zero: the zero's partial derivative is the exact product of the rest."""
    import fractions
    import math
    from pathlib import Path

    from gpuad.backends.axis_math import _MANTISSA_RUN
    readme = " ".join((Path(__file__).parents[1] / "docs" / "overview.md").read_text().split())
    assert f"(slices of up to {_MANTISSA_RUN} elements)" in readme
    k = (_MANTISSA_RUN - 1) // 2
    values = [1e300] * k + [1e-300] * k + [0.0]
    x = ad.tensor(values, dtype=ad.float64, requires_grad=True)
    with np.errstate(over="ignore", invalid="ignore"):  # (NumPy's product itself: inf * 0)
        ad.prod(x).backward()
    exact = float(math.prod(fractions.Fraction(v) for v in values[:-1]))
    assert x.grad.numpy()[-1] == pytest.approx(exact, rel=1e-12) and 0.5 < exact < 2

