"""var, std, norm, prod and arctan at the numeric edges (issue 15, review B): a constant slice
near the float maximum has zero spread (value and gradient), p-norms for |p| past the exponent
range, the zero gradient of a p < 0 norm that is zero, the exact products of the others where
the product overflows, and clear errors for bad ddof/ord (with PyTorch's p= accepted). Each
against an independent reference (float64 formulas, exact fractions, or PyTorch), on the CPU
and on CUDA: real CUDA where it is usable, else the CuPy stand-in (tests/fake_cupy)."""
import math

import numpy as np
import pytest
from fake_cupy import cuda_or_stand_in
from numerics_refs import _grads, _same, _torch_grads

import gpuad as ad


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    yield


# ---- var and std of a constant slice whose mean rounds ----------------------------------------

# a * 3 / 3 != a for these (the scaled mean left a 1-ulp residual, which squared and scaled back
# by s^2 overflowed float32: var was inf and its gradient 6.8e30 per element)
CONSTANTS = [(ad.float32, 3.0000000054977558e+38), (ad.float32, 2.9e38),
             (ad.float64, 1.7e308), (ad.float64, 1.0000000000000002e308)]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, a", CONSTANTS)
@pytest.mark.parametrize("op", ["var", "std"])
def test_spread_of_a_constant_slice_near_the_float_max_is_zero(op, dtype, a, device,
                                                               monkeypatch):
    with cuda_or_stand_in(monkeypatch), np.errstate(over="ignore"):
        for create_graph in (False, True):
            out, (g,) = _grads(lambda t: getattr(t, op)(), [[a] * 3], dtype, create_graph,
                               device, seed=0.5)
            assert out == 0 and g.tolist() == [0.0] * 3
        x = ad.tensor([a] * 3, dtype=dtype, device=device)
        _, tangent = ad.jvp(lambda t: getattr(t, op)(), x, ad.ones_like(x))
        assert tangent.item() == 0


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_var_rows_next_to_a_constant_row_near_the_float_max(device, monkeypatch):
    # the scaled centering applies row by row: the ordinary row keeps 2 (x - mean) / N
    x = np.array([[3.0000000054977558e+38] * 3, [1.0, 2.0, 4.0]], dtype=np.float32)
    with cuda_or_stand_in(monkeypatch), np.errstate(over="ignore"):
        out, (g,) = _grads(lambda t: t.var(axis=1), [x], ad.float32, device=device)
    r = np.array([1.0, 2.0, 4.0])
    _same(out, [0.0, r.var()], rtol=1e-6, device=device)
    _same(g, [[0.0] * 3, 2 * (r - r.mean()) / 3], rtol=1e-6, device=device)


# ordinary constants whose one-pass mean rounds (0.1 * 3 / 3 != 0.1): the CPU's plain path
# left a 1-ulp residual (std 1.4e-17, gradient -1/3 each) where the CUDA backend's refined
# mean gave 0; both are now exactly 0, value and gradient, and the same bits
ROUNDING = [(ad.float64, 0.1, 3, 0), (ad.float32, -0.22223517298698425, 3, 2),
            (ad.float64, 1 / 3, 7, 1), (ad.float16, 0.1, 5, 0)]


@pytest.mark.parametrize("dtype, a, n, ddof", ROUNDING)
@pytest.mark.parametrize("op", ["var", "std"])
def test_spread_of_an_ordinary_constant_slice_is_zero_on_both_devices(op, dtype, a, n, ddof,
                                                                      monkeypatch):
    got = {}
    with cuda_or_stand_in(monkeypatch):
        for device in ("cpu", "cuda"):
            out, (g,) = _grads(lambda t: getattr(t, op)(ddof=ddof), [[a] * n], dtype,
                               device=device)
            assert out == 0 and g.tolist() == [0.0] * n, device
            rows = np.array([[a] * n, np.linspace(-1, 2, n)])
            got[device] = _grads(lambda t: getattr(t, op)(axis=1, ddof=ddof), [rows], dtype,
                                 device=device)
    np.testing.assert_array_equal(got["cpu"][0], got["cuda"][0])
    np.testing.assert_array_equal(got["cpu"][1][0], got["cuda"][1][0])


@pytest.mark.parametrize("a", [0.1, -0.22223517298698425, 1 / 3, 1.7, 7.3e5])
@pytest.mark.parametrize("offset", [-3, -1, 1, 2])
def test_constant_slice_is_exact_whatever_the_mean_rounded_to(a, offset):
    # another device sums in another order, so its mean may round to another neighbour of a:
    # the refinement and the corrected two-pass form cancel any such residual exactly
    from gpuad.backends.axis_math import refined, spread_of
    x = np.full((2, 6), a)
    m1 = np.full((2, 1), a)
    for _ in range(abs(offset)):
        m1 = np.nextafter(m1, np.inf if offset > 0 else -np.inf)
    assert np.all(x - m1 != 0)  # (the residual is there to cancel)
    assert np.all(refined(np, x - m1, 1, 6) == 0)
    assert np.all(spread_of(np, x - m1, 1, 6, 0, False) == 0)
    # and a slice that is not constant keeps its spread: var([a, 2a, ..]) to rounding (unscaled,
    # as the CPU's plain path: so without squares that overflow)
    y = x * np.arange(1, 7) / max(1.0, abs(a))
    d = y - y.mean(axis=1, keepdims=True)
    _same(spread_of(np, d, 1, 6, 1, False), np.var(y, axis=1, ddof=1))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_var_gradient_with_infinite_entries_matches_torch(device, monkeypatch):
    # x - mean with an inf in the slice is [nan, -inf] (inf - inf, 0 - inf), on the scaled
    # path too (the CUDA backend's, and the CPU's where a mean overflows): the refinement of
    # the mean must not turn it all nan
    pytest.importorskip("torch")
    x = np.array([[math.inf, 0.0], [1.0, 2.0], [-math.inf, 3.0], [1e308, 1.5e308]])
    seed = [0.5, 1.5, 2.0, 1e-300]
    want, (wg,) = _torch_grads(lambda t: t.var(dim=1, correction=0), [x], seed)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore" if device == "cuda" else "raise"):
        out, (g,) = _grads(lambda t: t.var(axis=1), [x], device=device, seed=seed)
    _same(out[:3], want[:3], device=device)
    _same(g[:3], wg[:3], device=device)
    _same(g[3], [-2.5e7, 2.5e7], device=device)  # (PyTorch's mean overflows: [-inf, -inf])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("axis, ddof, keepdims", [(None, 0, False), (1, 1, True),
                                                  ((0, 2), 0, False), (-1, 2, False)])
def test_spread_second_derivatives_match_torch(op, axis, ddof, keepdims, device, monkeypatch):
    # the centering's rule (itself, by symmetry) and JVP, through reverse-over-reverse
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    t = torch.tensor(x, requires_grad=True)
    y = getattr(t, op)(dim=axis, correction=ddof, keepdim=keepdims)
    (g1,) = torch.autograd.grad(y.sum(), t, create_graph=True)
    (want,) = torch.autograd.grad((g1 * torch.tensor(w)).sum(), t)
    with cuda_or_stand_in(monkeypatch):
        a = ad.tensor(x, device=device, requires_grad=True)
        y = getattr(a, op)(axis=axis, ddof=ddof, keepdims=keepdims)
        (g1,) = ad.grad(y.sum(), a, create_graph=True)
        (got,) = ad.grad((g1 * ad.tensor(w, device=device)).sum(), a)
        _same(got.numpy(), want.numpy(), rtol=1e-10, atol=1e-12, device=device)
        # forward over reverse: the Hessian times w
        _, hvp = ad.hvp(lambda v: getattr(v, op)(axis=axis, ddof=ddof).sum(),
                        ad.tensor(x, device=device), ad.tensor(w, device=device))
        _same(hvp.numpy(), want.numpy(), rtol=1e-10, atol=1e-12, device=device)


def test_var_without_degrees_of_freedom_has_nan_derivatives_of_every_order():
    """N - ddof = 0: var is 0/0 = nan for every x, so every derivative is nan. PyTorch's
    first derivative is nan too, but for a full reduction it returns it as a constant not
    connected to x, so a second derivative through abs() gets only abs's own zero: PyTorch
    gives 0.0 there (the fuzz's case), gpuad nan."""
    v0 = ad.tensor(0.5, dtype=ad.float64, requires_grad=True)
    loss = ad.var(ad.abs(v0), ddof=1) * 1.313
    (g,) = ad.grad(loss, [v0], create_graph=True)
    (second,) = ad.grad(g * 0.7, v0)
    assert math.isnan(loss.item()) and math.isnan(g.item()) and math.isnan(second.item())


# ---- p-norms -----------------------------------------------------------------------------------

def _reference_norm(x, p):
    """(sum |x|^p)^(1/p) and its gradient sign(x) (|x| / norm)^(p-1) in float64, through
    logarithms (log-sum-exp), so no power overflows whatever p."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore"):
        n = math.exp(np.logaddexp.reduce(p * np.log(a)) / p)
        g = np.sign(x) * np.exp((p - 1) * (np.log(a) - math.log(n))) if n else np.zeros(len(a))
    return n, g


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, p, x", [
    (ad.float32, 200, [1.9, 0.5]), (ad.float32, 200, [1.0, 0.5, -0.25]),
    (ad.float32, 1000, [3e30, -2.5e30, 1e-30]), (ad.float32, 150.5, [1e-30, 7e-31]),
    (ad.float32, -200, [1.9, 5.0]), (ad.float32, -300, [4e20, -3e-20, 2e-20]),
    (ad.float64, 2000, [1.9, 0.5]), (ad.float64, -1500, [0.75, 3.0]),
    (ad.float16, 40, [3.0, -2.0]),
])
def test_pnorm_with_p_past_the_exponent_range(dtype, p, x, device, monkeypatch):
    # the reproducer: float32 norm([1.9, 0.5], 200) was inf (|x/s|^p with |x/s| up to 2
    # overflowed), gradient [0, 0]; exact 1.9, [1, 0]
    want, wg = _reference_norm(x, p)
    # (CuPy has no floating-point warnings; the NumPy standing in for it has, so they are off)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore" if device == "cuda" else "raise"):
        for create_graph in (False, True):
            out, (g,) = _grads(lambda t: ad.norm(t, p), [x], dtype, create_graph, device)
            info = np.finfo(np.dtype(dtype.name))
            _same(float(out), want, rtol=4 * float(info.eps), device=device)
            # (|x| / norm rounds; its power p - 1 multiplies that relative error by p - 1)
            _same(g.astype(np.float64), wg, rtol=2 * abs(p) * float(info.eps),
                  atol=float(info.smallest_subnormal), device=device)


ROWS = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, -2.0, 0.0], [1.0, -2.0, 0.5]])


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("p", [-1, -2, -0.5, 0.3, 0.5, 1.5, 3])
def test_pnorm_gradient_with_zero_elements_matches_torch(p, device, monkeypatch):
    # the reproducer: norm([0, 2, 3], -1) is 0 (a zero element), but its gradient was
    # [0, 0.25, 0.111]; PyTorch: 0 where the norm is 0, and 0 at a zero element for p < 1
    torch = pytest.importorskip("torch")
    want, (wg,) = _torch_grads(lambda t: torch.linalg.vector_norm(t, p, dim=1), [ROWS])
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore" if device == "cuda" else "raise"):
        for create_graph in (False, True):
            out, (g,) = _grads(lambda t: ad.norm(t, p, axis=1), [ROWS],
                               create_graph=create_graph, device=device)
            _same(out, want, rtol=1e-14, device=device)
            _same(g, wg, rtol=1e-14, device=device)
        direction = np.linspace(0.5, 2.0, ROWS.size).reshape(ROWS.shape)
        _, tangent = ad.jvp(lambda t: ad.norm(t, p, axis=1), ad.tensor(ROWS, device=device),
                            ad.tensor(direction, device=device))
    _same(tangent.numpy(), (wg * direction).sum(axis=1), rtol=1e-14, device=device)


def test_norm_takes_pytorchs_p_keyword():
    torch = pytest.importorskip("torch")
    a = np.arange(6.0).reshape(2, 3) - 2
    t = torch.tensor(a)
    for kwargs in (dict(p=1, dim=1), dict(p=3, dim=0, keepdim=True), dict(p="fro"),
                   dict(p=-1.5, dim=1)):
        _same(ad.tensor(a).norm(**kwargs).numpy(), t.norm(**kwargs).numpy(), rtol=1e-14)
    _same(ad.norm(ad.tensor(a), p=math.inf, axis=1).numpy(), [2.0, 3.0])


@pytest.mark.parametrize("call, error, what", [
    (lambda x: x.var(ddof="1"), TypeError, r"gpuad.var: ddof .* got '1' \(str\)"),
    (lambda x: x.std(ddof=None), TypeError, r"gpuad.std: ddof .* e.g. ddof=1; got None"),
    (lambda x: x.var(dim=1, correction="1"), TypeError, r"gpuad.var: ddof \(PyTorch: correc"),
    (lambda x: ad.norm(x, ord=[1]), TypeError, r"gpuad.norm: ord must be a number .* \[1\]"),
    (lambda x: ad.norm(x, ord=ad.ones(1)), TypeError, r"gpuad.norm: ord must be a number"),
    (lambda x: x.norm(ord=1, p=2), TypeError, r"gpuad.norm: got both ord=1 and p=2; p is"),
    (lambda x: x.norm(2, p=2), TypeError, r"got both ord=2 and p=2"),
    (lambda x: x.norm(p="nuc"), ValueError, r"gpuad.norm: ord='nuc' is not supported"),
])
def test_bad_ddof_and_ord_are_clear_errors(call, error, what):
    with pytest.raises(error, match=what):
        call(ad.ones(2, 3))


def test_ddof_and_ord_accept_numpy_numbers():
    x = ad.tensor(np.arange(6.0).reshape(2, 3))
    _same(x.var(axis=1, ddof=np.int64(1)).numpy(), np.arange(6.0).reshape(2, 3).var(1, ddof=1))
    _same(x.std(ddof=0.5).item(), np.arange(6.0).std(ddof=0.5))
    _same(ad.norm(x, np.float32(3)).item(), np.linalg.norm(np.arange(6.0), 3))


# ---- arctan: the fast form and the overflow form ----------------------------------------------

@pytest.mark.parametrize("dtype", [ad.float16, ad.float32, ad.float64])
def test_arctan_gradient_is_the_same_on_every_path(dtype):
    # plain backward runs the CPU's raw-array rule, create_graph the composed one, forward
    # mode the composed rule as a JVP: the same operations, so the same bits
    x = np.array([-3e4, -7.5, -1.0, -0.3, 0.0, 0.2, 1.0, 2.5, 150.0], dtype=np.dtype(dtype.name))
    seed = np.linspace(-2, 2, x.size)
    _, (plain,) = _grads(ad.arctan, [x], dtype, seed=seed)
    _, (graph,) = _grads(ad.arctan, [x], dtype, create_graph=True, seed=seed)
    _, tangent = ad.jvp(ad.arctan, ad.tensor(x, dtype=dtype), ad.tensor(seed, dtype=dtype))
    np.testing.assert_array_equal(plain, graph)
    np.testing.assert_array_equal(plain, tangent.numpy())
    want = seed / (1 + x.astype(np.float64) ** 2)
    _same(plain.astype(np.float64), want, rtol={ad.float16: 2e-3, ad.float32: 1e-6,
                                                ad.float64: 1e-15}[dtype], atol=1e-7)


def _arctan_derivatives_exact(x):
    """The second and third derivatives of arctan in float64, from u = 1/x past |x| = 1 (no
    overflow on the way): -2x / (1 + x^2)^2 = -2u^3 / (1 + u^2)^2 and (6x^2 - 2) / (1 + x^2)^3
    = (6u^4 - 2u^6) / (1 + u^2)^3."""
    x = np.asarray(x, np.float64)
    u = 1 / x
    big = np.abs(x) > 1
    d2 = np.where(big, -2 * u**3 / (1 + u * u) ** 2, -2 * x / (1 + x * x) ** 2)
    d3 = np.where(big, (6 * u**4 - 2 * u**6) / (1 + u * u) ** 3,
                  (6 * x * x - 2) / (1 + x * x) ** 3)
    return d2, d3


ARCTAN_SWEEP = {ad.float16: (1e-2, 6e4, 4e-3), ad.float32: (1e-4, 1e18, 2e-6),
                ad.float64: (1e-8, 1e75, 1e-13)}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", list(ARCTAN_SWEEP), ids=lambda d: d.name)
def test_arctan_higher_derivatives_do_not_underflow_before_the_result(dtype, device,
                                                                      monkeypatch):
    # differentiating g / (1 + x^2) as a quotient went through g / (1 + x^2)^2 ~ 1/x^4:
    # float32 arctan''(2e11) was -0.0 (exact -2.3e-34), float16's 2.6% off at 32
    lo, hi, rtol = ARCTAN_SWEEP[dtype]
    mag = np.geomspace(lo, hi, 300)
    x = np.concatenate([mag, -mag]).astype(np.dtype(dtype.name))
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):
        t = ad.tensor(x, dtype=dtype, device=device, requires_grad=True)
        (g1,) = ad.grad(ad.arctan(t).sum(), [t], create_graph=True)
        (g2,) = ad.grad(g1.sum(), [t], create_graph=True)
        (g3,) = ad.grad(g2.sum(), [t])
        exact = _arctan_derivatives_exact(x)
    tiny = np.finfo(np.dtype(dtype.name)).tiny
    # relative to the value, but to the derivative's scale (2) where the third derivative
    # crosses zero (|x| near 0.58, a cancellation in any form)
    atol = np.where(np.abs(x) < 2, 2 * rtol, 0)
    for got, want in zip((g2, g3), exact):
        normal = np.abs(want) >= tiny  # (the exact value itself is normal in the dtype)
        assert normal.sum() > 250
        got = got.numpy().astype(np.float64)
        err = np.abs(got - want) / (rtol * np.abs(want) + atol)
        assert np.all(err[normal] <= 1), (x[normal][np.argmax(err[normal])], err[normal].max())


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, big", [(ad.float16, 300.0), (ad.float32, 1e20),
                                        (ad.float64, 1e155)])
def test_arctan_gradient_where_the_square_overflows_on_every_path(dtype, big, device,
                                                                  monkeypatch):
    # 1 / (1 + x^2) is representable (subnormal) where x^2 overflows; next to ordinary x
    x = [big, -big, 0.5, math.inf]
    want = [(1 / big) ** 2 / (1 + (1 / big) ** 2)] * 2 + [0.8, 0.0]
    tol = dict(rtol=2e-3, atol=1.2e-7) if dtype == ad.float16 else dict(rtol=1e-5)
    with cuda_or_stand_in(monkeypatch):
        for create_graph in (False, True):
            _, (g,) = _grads(ad.arctan, [x], dtype, create_graph, device)
            _same(g, want, **tol, device=device)
        _, tangent = ad.jvp(ad.arctan, ad.tensor(x, dtype=dtype, device=device),
                            ad.ones(4, dtype=dtype, device=device))
    _same(tangent.numpy(), want, **tol, device=device)
