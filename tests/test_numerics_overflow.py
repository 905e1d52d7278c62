"""Derivative rules at the numeric edges (issue 15, section 3), overflow and underflow: no
spurious overflow or underflow in the intermediates of division, arctan, tan, rsqrt, gelu, pow,
log_softmax next to a large max, and the sums of squares of norm, std and var. Each against
analytic values or PyTorch (float64), in reverse mode (plain and create_graph, which take
different CPU paths), in forward mode, and on CUDA: real CUDA where it is usable, else the CuPy
stand-in (tests/fake_cupy)."""
import math

import numpy as np
import pytest
from fake_cupy import cuda_or_stand_in
from numerics_refs import NAN, _grads, _same, _torch_grads

import gpuad as ad

# (A default device left unresolved would resolve to the stand-in GPU after a test's
# ``cuda_or_stand_in`` block, and stay so for the tests after it.)
pytestmark = pytest.mark.usefixtures("cpu_default")


# ---- division and other rules whose intermediates overflowed ---------------------------------

@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_division_by_a_float16_sum_keeps_its_gradient(create_graph, device, monkeypatch):
    # x / x.sum() with x = [100, 200]: the old -g a / (b b) made b b = 90000 inf in float16
    with cuda_or_stand_in(monkeypatch):
        _, (g,) = _grads(lambda x: (x / x.sum())[0], [[100.0, 200.0]], ad.float16,
                         create_graph, device)
    _same(g, [1 / 300 - 100 / 300**2, -100 / 300**2], rtol=2e-3, device=device)


def test_division_with_a_loss_scaled_float16_gradient():
    # d(a/b)/db as -(g (a/b)) / b made g (a/b) = 1024 * 100 inf in float16; exact -1024 (the
    # CUDA kernel computes float16 in float32: test_kernels_host checks its rule past overflow)
    _, (ga, gb) = _grads(lambda a, b: a * 100 / b, [[100.0], [100.0]], ad.float16,
                         seed=np.array([1024.0]))
    _same(ga.astype(np.float64), [1024.0], rtol=2e-3)
    _same(gb.astype(np.float64), [-1024.0], rtol=2e-3)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, v", [(ad.float32, 1e-23), (ad.float64, 1e-170)])
def test_division_by_a_tiny_divisor(dtype, v, device, monkeypatch):
    # b b underflowed to 0, giving -inf where d(a/b)/db = -a / b^2 = -1/v is representable
    with cuda_or_stand_in(monkeypatch):
        _, (ga, gb) = _grads(lambda a, b: a / b, [[v], [v]], dtype, device=device)
    _same(ga, [1 / v], rtol=1e-6, device=device)
    _same(gb, [-1 / v], rtol=1e-6, device=device)
    prim, tan = ad.jvp(lambda b: ad.tensor([v], dtype=dtype) / b,
                       ad.tensor([v], dtype=dtype), ad.tensor([1.0], dtype=dtype))
    _same(tan.numpy(), [-1 / v], rtol=1e-6, device=device)


def test_division_matches_torch():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(20), rng.uniform(0.5, 3, 20) * rng.choice([-1, 1], 20)
    _, got = _grads(lambda a, b: a / b, [a, b])
    _, want = _torch_grads(lambda a, b: a / b, [a, b])
    for x, y in zip(got, want):
        _same(x, y, rtol=1e-14)


@pytest.mark.parametrize("dtype, x", [(ad.float16, 300.0), (ad.float32, 1e20),
                                      (ad.float64, 1e155)])
def test_arctan_gradient_past_the_square_overflow(dtype, x):
    # 1 / (1 + x^2) is representable (a subnormal in float16 and float32), x^2 is not
    _, (g,) = _grads(ad.arctan, [[x, -x]], dtype)
    tol = dict(rtol=2e-3, atol=1.2e-7) if dtype == ad.float16 else dict(rtol=1e-5)  # 2 ulp
    _same(g.astype(np.float64), [(1 / x) ** 2 / (1 + (1 / x) ** 2)] * 2, **tol)


def test_arctan_first_and_second_derivatives_match_torch():
    torch = pytest.importorskip("torch")
    x = np.array([-30.0, -2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.5, 7.0, 1e30])
    t = torch.tensor(x, requires_grad=True)
    (d1,) = torch.autograd.grad(torch.atan(t).sum(), t, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), t)
    a = ad.tensor(x, requires_grad=True)
    (g1,) = ad.grad(ad.arctan(a).sum(), a, create_graph=True)
    (g2,) = ad.grad(g1.sum(), a)
    _same(g1.numpy(), d1.detach().numpy(), rtol=1e-14)
    _same(g2.numpy(), d2.numpy(), rtol=1e-13)


def test_tan_gradient_with_a_small_upstream_in_float16():
    # near pi/2, tan^2 overflows float16 but g (1 + tan^2) with g = 1e-3 does not
    x = np.float16(1.5703125)
    y = np.tan(np.float64(x))
    _, (g,) = _grads(lambda x: ad.tan(x) * 1e-3, [[x]], ad.float16)
    _same(g.astype(np.float64), [1e-3 * (1 + y * y)], rtol=4e-3)


@pytest.mark.parametrize("dtype, big", [(ad.float32, 1e20), (ad.float64, 1e160)])
def test_gelu_tanh_gradient_where_the_cube_overflows(dtype, big):
    # x^2 and x^3 overflowed to inf and (1 - tanh^2) to 0: nan, where the derivative is 1 and 0
    x = [big, -big, 3.0]
    _, (g,) = _grads(lambda t: ad.gelu(t, approximate="tanh"), [x], dtype)
    _, (want,) = _torch_grads(lambda t: __import__("torch").nn.functional.gelu(
        t, approximate="tanh"), [[3.0]])
    _same(g.astype(np.float64), [1.0, 0.0, want[0]], rtol=1e-6)


def test_rsqrt_gradient_with_a_small_upstream():
    # d rsqrt/dx = -x^(-3/2) / 2: y^3 overflows at x = 1e-210, g y^3 with g = 1e-10 does not
    _, (g,) = _grads(lambda x: ad.rsqrt(x) * 1e-10, [[1e-210]])
    _same(g, [-5e304], rtol=1e-12)


@pytest.mark.parametrize("p", [3, 2.5, 2])
def test_pnorm_gradient_in_float16(p):
    # ||x||^(p-1) of [300, 400] overflows float16; (|x| / ||x||)^(p-1) does not
    x = np.array([300.0, -400.0])
    n = np.sum(np.abs(x) ** p) ** (1 / p)
    _, (g,) = _grads(lambda x: ad.norm(x, p), [x], ad.float16)
    _same(g.astype(np.float64), np.sign(x) * (np.abs(x) / n) ** (p - 1), rtol=3e-3)


@pytest.mark.parametrize("p", [3, 0.5, -1.5, 2])
def test_pnorm_gradient_matches_torch(p):
    torch = pytest.importorskip("torch")
    x = np.array([[0.5, -2.0, 3.0], [0.0, 0.0, 0.0], [1e-3, 7.0, -0.25]])
    _, (g,) = _grads(lambda x: ad.norm(x, p, axis=1), [x])
    _, (want,) = _torch_grads(lambda t: torch.linalg.vector_norm(t, p, dim=1), [x])
    _same(g, want, rtol=1e-12)


# ---- pow: g times the whole derivative -------------------------------------------------------

_POW_EDGES = [5e-324, 1e-300, 1e-10, 0.5, 2.0, 1e10, 1e300, 1.7976931348623157e308]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_pow_gradients_at_extreme_values_match_torch(create_graph, device, monkeypatch):
    # pow(5e-324, 5e-324) seeded with 0.5: (g b) a^(b-1) underflowed g b to 0, 0 * inf = nan
    # where PyTorch's g (b a^(b-1)) gives inf; likewise (g a^b) log(a)
    a, b = np.meshgrid(_POW_EDGES, _POW_EDGES + [-v for v in _POW_EDGES] + [0.0, 1.0, 3.0])
    a, b = a.ravel(), b.ravel()
    seed = np.full(a.size, 0.5)
    want_out, want = _torch_grads(lambda x, z: x ** z, [a, b], seed)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):  # (the stand-in CuPy is NumPy)
        out, got = _grads(lambda x, z: x ** z, [a, b], create_graph=create_graph,
                          device=device, seed=seed)
    _same(out, want_out, device=device)
    for g, w in zip(got, want):
        _same(g, w, rtol=1e-14, device=device)
    assert got[0][0] == math.inf  # the reproducer


@pytest.mark.parametrize("scalar", [5e-324, 1e-300, 3.0])
def test_pow_with_a_scalar_operand_at_extreme_values(scalar):
    torch = pytest.importorskip("torch")
    x = np.array(_POW_EDGES)
    for fa, ft in ((lambda t: t ** scalar, lambda t: t ** scalar),
                   (lambda t: scalar ** t, lambda t: torch.tensor(scalar, dtype=t.dtype) ** t)):
        _, (got,) = _grads(fa, [x], seed=np.full(x.size, 0.5))
        _, (want,) = _torch_grads(ft, [x], seed=np.full(x.size, 0.5))
        _same(got, want, rtol=1e-14)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_division_of_zero_by_a_tiny_divisor(device, monkeypatch):
    # d(a/b)/db as -(g/b)(a/b) was inf * 0 = nan at a = 0, b = 5e-324 (PyTorch: -0)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):  # (the stand-in CuPy is NumPy)
        _, (ga, gb) = _grads(lambda a, b: a / b, [[0.0, 1e-300], [5e-324, 1e-200]],
                             device=device)
    _same(ga, [math.inf, 1e200], device=device)
    _same(gb, [0.0, -1e-300 / 1e-200 / 1e-200], device=device)
    assert np.signbit(gb[0])


# ---- log_softmax next to a large max ---------------------------------------------------------

def _log_softmax_ref(x):
    """(x - max) - log(sum(exp(x - max))) in float64 along the last axis (x - max exact)."""
    z = np.asarray(x, dtype=np.float64) - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("create_graph", [False, True])
def test_log_softmax_next_to_a_large_max(create_graph, device, monkeypatch):
    # x - logsumexp(x) rounded log(sum) away: float32 [1e8, 1e8] gave [0, 0], [3e5, 3e5]
    # gave -0.6875 (-log 2 = -0.6931)
    x = np.array([[1e8, 1e8, 1e8 - 8], [3e5, 3e5, 3e5 - 0.5], [-2e4, -2e4 - 1, -2e4 - 3]],
                 dtype=np.float32)
    want = _log_softmax_ref(x)
    g = np.array([[1.0, 0.0, 0.5], [0.25, 2.0, -1.0], [1.0, 1.0, 1.0]])
    p = np.exp(want)
    want_dx = g - p * g.sum(axis=-1, keepdims=True)  # the rule: g - softmax sum(g)
    with cuda_or_stand_in(monkeypatch):
        out, (dx,) = _grads(lambda t: ad.log_softmax(t, axis=-1), [x], ad.float32,
                            create_graph, device, seed=g)
    _same(out, want, rtol=1e-6, atol=1e-6, device=device)
    _same(dx, want_dx, rtol=1e-5, atol=1e-6, device=device)
    for dtype, big in ((ad.float64, 1e300), (ad.float16, 3e4)):
        with cuda_or_stand_in(monkeypatch):
            y = ad.log_softmax(ad.tensor([big, big], dtype=dtype, device=device))
        _same(y.numpy(), [-math.log(2)] * 2, rtol=1e-3, device=device)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_log_softmax_at_infinities_matches_torch(device, monkeypatch):
    torch = pytest.importorskip("torch")
    inf = math.inf
    x = np.array([[0.0, inf], [-inf, -inf], [-inf, 0.0], [inf, inf], [-inf, inf],
                  [NAN, 0.0], [-1e308, 1e308], [1e308, 1e308]])
    want = torch.log_softmax(torch.tensor(x), -1).numpy()
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):
        got = ad.log_softmax(ad.tensor(x, device=device), axis=-1).numpy()
    _same(got, want, device=device)
    assert np.isnan(got[0]).all()  # was [-inf, nan]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_cross_entropy_next_to_a_large_logit(device, monkeypatch):
    # the CUDA kernel's loss was lse - x[label] with lse = max + log(sum): 0 for [1e8, 1e8]
    x = np.array([[1e8, 1e8], [3e5, 3e5 - 1]], dtype=np.float32)
    with cuda_or_stand_in(monkeypatch):
        xt = ad.tensor(x, device=device, requires_grad=True)
        loss = ad.nn.functional.cross_entropy(xt, ad.tensor([0, 1], device=device),
                                              reduction="none")
        loss.sum().backward()
    want = -_log_softmax_ref(x)[[0, 1], [0, 1]]
    _same(loss.numpy(), want, rtol=1e-6, device=device)
    p = np.exp(_log_softmax_ref(x))
    _same(xt.grad.numpy(), p - np.eye(2), rtol=1e-5, atol=1e-7, device=device)


# ---- gelu's gradient at the ends of the range ------------------------------------------------

def _gelu_tanh_grad_exact(x):
    """d/dx 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), in 60-digit decimals (no
    overflow of x^3, no inf * 0): 0.5 (1 + t) + 0.5 x sech(u)^2 u', with sech(u)^2 =
    4 e / (1 + e)^2, e = exp(-2|u|)."""
    import decimal

    ctx = decimal.Context(prec=60, Emax=10**8, Emin=-10**8, traps=[decimal.InvalidOperation])
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0  # the limits
    d = decimal.Decimal(x)
    c = ctx.sqrt(ctx.divide(2, decimal.Decimal(math.pi)))
    k = decimal.Decimal("0.044715")
    u = ctx.multiply(c, ctx.add(d, ctx.multiply(k, ctx.power(d, 3))))
    e = ctx.exp(ctx.multiply(-2, abs(u)))
    t = ctx.divide(1 - e, 1 + e).copy_sign(u)
    sech2 = ctx.divide(4 * e, ctx.power(1 + e, 2))
    du = ctx.multiply(c, 1 + ctx.multiply(3 * k, ctx.power(d, 2)))
    return float(ctx.add(ctx.multiply(decimal.Decimal("0.5"), 1 + t),
                         ctx.multiply(ctx.multiply(decimal.Decimal("0.5") * d, sech2), du)))


def _gelu_erf_grad(x):
    """Phi(x) + x phi(x), with math.erfc (Phi(x) = erfc(-x / sqrt 2) / 2) and the limits 1
    and 0 past |x| = 40, where x phi(x) < 1e-300."""
    if abs(x) > 40:
        return 1.0 if x > 0 else 0.0
    return 0.5 * math.erfc(-x / math.sqrt(2)) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


GELU_POINTS = {ad.float64: [math.inf, -math.inf, 1e300, -1e300, 1e5, -1e5, 50.0, -50.0, 3.0,
                            -3.0, 0.5, -0.5, 0.0, 1e-8],
               ad.float32: [math.inf, -math.inf, 3e38, -3e38, 1e5, -1e5, 50.0, -50.0, 3.0,
                            -3.0, 0.5, -0.5, 0.0]}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", [ad.float64, ad.float32], ids=["float64", "float32"])
def test_gelu_tanh_gradient_against_the_formula(dtype, device, monkeypatch):
    # past |x| = 100 the rule takes x at +-100 (tanh has saturated there): the gradient is the
    # limit 1 or 0 at huge |x| and at +-inf, where x^3 overflowed to inf * 0 = nan (and where
    # PyTorch still gives nan)
    x = GELU_POINTS[dtype]
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):  # (gelu(-inf) = -inf * 0)
        _, (g,) = _grads(lambda t: ad.gelu(t, approximate="tanh"), [x], dtype, device=device)
    want = [_gelu_tanh_grad_exact(float(np.asarray(v, dtype=dtype))) for v in x]
    tol = dict(rtol=1e-13, atol=1e-15) if dtype == ad.float64 else dict(rtol=2e-6, atol=1e-6)
    _same(g, want, **tol, device=device)
    assert g[:4].tolist() == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", [ad.float64, ad.float32], ids=["float64", "float32"])
def test_gelu_erf_gradient_against_the_formula_and_torch(dtype, device, monkeypatch):
    # the exact form is finite at every finite x (x phi(x) underflows to 0 before x overflows):
    # 1 and 0 at +-1e300 and +-3e38, as PyTorch; at +-inf x phi(x) is inf * 0 = nan, as PyTorch
    torch = pytest.importorskip("torch")
    x = GELU_POINTS[dtype]
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):  # (gelu(-inf) = -inf * 0)
        _, (g,) = _grads(ad.gelu, [x], dtype, device=device)
    want = [_gelu_erf_grad(float(np.asarray(v, dtype=dtype))) for v in x[2:]]
    tol = dict(rtol=1e-13, atol=1e-15) if dtype == ad.float64 else dict(rtol=2e-6, atol=1e-6)
    _same(g[2:], want, **tol, device=device)
    t = torch.tensor(np.asarray(x, dtype=dtype.name), requires_grad=True)
    torch.nn.functional.gelu(t).sum().backward()
    _same(g, t.grad.numpy().astype(np.float64), **tol, device=device)
    assert np.isnan(g[:2]).all() and g[2:4].tolist() == [1.0, 0.0]


# ---- sums of squares: norm, std and var without overflow --------------------------------------

def _torch_scaled(fn, x, c):
    """fn (homogeneous of degree 1) in PyTorch, on x / c, times c: the value without its
    overflow (PyTorch's own float64 norm([1e300, 1e300]) is inf)."""
    torch = pytest.importorskip("torch")
    t = torch.tensor(np.asarray(x) / c, requires_grad=True)
    out = fn(t)
    (g,) = torch.autograd.grad(out.sum(), t)
    return out.detach().numpy() * c, g.numpy()


ORDS = [1, 2, 3, 0.5, math.inf, -math.inf]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("ord", ORDS)
@pytest.mark.parametrize("dtype, scale", [(ad.float64, 1e300), (ad.float64, 1e200),
                                          (ad.float64, 1e-200), (ad.float64, 1.0),
                                          (ad.float32, 1e36), (ad.float32, 1e-30),
                                          (ad.float32, 1.0)])
def test_pnorm_of_huge_and_tiny_values_matches_torch(ord, dtype, scale, device, monkeypatch):
    torch = pytest.importorskip("torch")
    base = np.array([[0.5, -2.0, 1.5], [1.0, 1.0, -1.0]])
    x = (base * scale).astype(np.dtype(dtype.name))
    want, wg = _torch_scaled(lambda t: torch.linalg.vector_norm(t, ord, dim=1),
                             x.astype(np.float64), scale)
    with cuda_or_stand_in(monkeypatch):
        out, (g,) = _grads(lambda t: ad.norm(t, ord, axis=1), [x], dtype, device=device)
    rtol = 1e-12 if dtype == ad.float64 else 1e-5
    _same(out, want, rtol=rtol, device=device)
    _same(g, wg, rtol=rtol, device=device)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_square_overflow_reproducers(device, monkeypatch):
    # norm(1e300) was inf (PyTorch 1e300), float32 std([0, 0, 3e38]) inf (PyTorch 1.41e38),
    # float32 var([[3e38, 3e38]], axis=-1) inf (the mean overflowed; PyTorch 0)
    with cuda_or_stand_in(monkeypatch):
        out, (g,) = _grads(ad.norm, [1e300], device=device)
        _same(out, 1e300, device=device)
        _same(g, 1.0, device=device)
        z = ad.tensor([0.0, 0.0, 3e38], dtype=ad.float32, device=device)
        _same(ad.std(z).numpy(), math.sqrt(2) * 1e38, rtol=1e-6, device=device)
        out, (g,) = _grads(lambda t: ad.var(t, axis=-1), [[[3e38, 3e38]]], ad.float32,
                           device=device)
        _same(out, [0.0], device=device)
        _same(g, [[0.0, 0.0]], device=device)  # (the rule's mean overflowed too: -inf)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype, values", [
    (ad.float64, [1e154, -1e154, 3e153]), (ad.float64, [1e-300, 0.0, -2e-300]),
    (ad.float32, [2e38, -1e38, 5e37]), (ad.float32, [1e-30, 0.0, 3e-30]),
    (ad.float16, [30000.0, -20000.0, 10000.0]),
    (ad.float16, [1e-4, -2e-4, 0.0]),
    (ad.float64, [0.5, -2.0, 1.5])])
@pytest.mark.parametrize("op", ["var", "std", "norm"])
def test_spread_and_norm_without_overflow_match_torch(op, dtype, values, device, monkeypatch):
    # against PyTorch in float64 on exactly rescaled values (std, norm: degree 1; var: 2)
    torch = pytest.importorskip("torch")
    x = np.array(values, dtype=np.dtype(dtype.name))
    c = float(2.0 ** np.frexp(np.abs(x.astype(np.float64)).max())[1])
    fns = {"var": (lambda t: t.var(), lambda t: t.var(correction=0)),
           "std": (lambda t: t.std(), lambda t: t.std(correction=0)),
           "norm": (ad.norm, torch.linalg.vector_norm)}
    ours, theirs = fns[op]
    want, wg = _torch_scaled(theirs, x.astype(np.float64), c)
    if op == "var":  # var(x) = c^2 var(x / c); its gradient c var'(x / c)
        want, wg = want * c, wg * c
    with np.errstate(over="ignore"):  # (var: c^2 var(x / c) may overflow; so does gpuad's)
        want, wg = want.astype(x.dtype), wg.astype(x.dtype)
    # (var's value overflows where std's does not, and float16 results are cast from float32:
    # NumPy's warnings for those, as for any cast, are expected)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore"):
        out, (g,) = _grads(ours, [x], dtype, device=device)
        assert out.dtype == x.dtype
    rtol = {ad.float64: 1e-12, ad.float32: 1e-6, ad.float16: 2e-3}[dtype]
    _same(out, want.astype(np.float64), rtol=rtol, device=device)
    _same(g, wg.astype(np.float64), rtol=rtol, atol=1e-30, device=device)
