"""Derivative rules at the numeric edges (issue 15, section 3): no spurious overflow or
underflow (division, arctan, tan, rsqrt, p-norms), no exception where PyTorch gives nan (var
and std with no degrees of freedom), empty inputs NumPy and PyTorch accept (softmax family,
max/min/norm(inf), tensordot/dot), and nan inputs getting the gradient PyTorch gives them
(relu, elu, maximum/minimum, max/min reductions). Each against analytic values or PyTorch
(float64), in reverse mode (plain and create_graph, which take different CPU paths), in
forward mode, and on CUDA: real CUDA where it is usable, else the CuPy stand-in
(tests/fake_cupy)."""
import fractions
import functools
import itertools
import math

import numpy as np
import pytest
from fake_cupy import cuda_or_stand_in
from tolerance import assert_close

import gpuad as ad

NAN = math.nan


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    """(A default device left unresolved would resolve to the stand-in GPU after a test's
    ``cuda_or_stand_in`` block, and stay so for the tests after it.)"""
    yield


def _grads(fn, xs, dtype=ad.float64, create_graph=False, device="cpu", seed=None):
    ts = [ad.tensor(x, dtype=dtype, device=device, requires_grad=True) for x in xs]
    out = fn(*ts)
    seed = ad.ones_like(out) if seed is None else ad.tensor(seed, dtype=dtype, device=device)
    grads = ad.grad(out, ts, seed, create_graph=create_graph)
    return out.numpy(), [g.numpy() for g in grads]


def _torch_grads(fn, xs, seed=None):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True) for x in xs]
    out = fn(*ts)
    seed = torch.ones_like(out) if seed is None else torch.tensor(seed, dtype=torch.float64)
    grads = torch.autograd.grad(out, ts, seed)
    return out.detach().numpy(), [g.numpy() for g in grads]


def _same(got, want, device="cpu", dtype=None, **tol):
    """nan where ``want`` is, and close to it elsewhere: by ``tol`` (default rtol 1e-12) on the
    CPU, at least by tests/tolerance.py's floor of ``dtype`` (default: ``got``'s) on CUDA."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_close(got, want, device, dtype=dtype, equal_nan=True, **(tol or dict(rtol=1e-12)))


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


# ---- var and std with no degrees of freedom -------------------------------------------------

@pytest.mark.parametrize("shape, axis, ddof", [((1,), None, 1), ((0,), None, 0),
                                               ((0,), None, 1), ((2, 1), 1, 1),
                                               ((2, 0), 1, 0), ((3, 2), 0, 3)])
@pytest.mark.parametrize("op", ["var", "std"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_spread_with_no_degrees_of_freedom_matches_torch(op, shape, axis, ddof, device,
                                                         monkeypatch):
    x = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) * 1.5 + 1
    # (CuPy has no floating-point warnings; the NumPy standing in for it has, so they are off)
    with cuda_or_stand_in(monkeypatch), np.errstate(all="ignore" if device == "cuda" else "raise"):
        out, (g,) = _grads(lambda t: getattr(t, op)(axis=axis, ddof=ddof), [x], device=device)
    with pytest.warns(UserWarning):  # PyTorch warns; gpuad must not (warnings are errors)
        want, (wg,) = _torch_grads(lambda t: getattr(t, op)(dim=axis, correction=ddof), [x])
    _same(out, want, device=device)
    _same(g, wg, device=device)


def test_var_of_one_element_with_ddof_1():
    # the reproducer: ZeroDivisionError in the backward pass; PyTorch gives nan
    x = ad.tensor([2.0], requires_grad=True)
    y = x.var(ddof=1)
    y.backward()
    assert np.isnan(y.item()) and np.isnan(x.grad.numpy()).all()
    _, tangent = ad.jvp(lambda v: v.var(ddof=1), ad.tensor([2.0]), ad.tensor([1.0]))
    assert np.isnan(tangent.item())


def test_std_gradient_of_a_tiny_spread_in_float16():
    # 1 / std overflowed float16 at std = 1e-5; (x - mean) / std is at most sqrt(N)
    _, (g,) = _grads(lambda t: t.std(), [[1e-5, -1e-5]], ad.float16)
    _same(g.astype(np.float64), [0.5, -0.5], rtol=2e-3)
    _, (g,) = _grads(lambda t: t.std(), [[1e-5, -1e-5]], ad.float16, create_graph=True)
    _same(g.astype(np.float64), [0.5, -0.5], rtol=2e-3)
    _, tangent = ad.jvp(lambda t: t.std(), ad.tensor([1e-5, -1e-5], dtype=ad.float16),
                        ad.tensor([1.0, 0.0], dtype=ad.float16))
    _same(tangent.numpy().astype(np.float64), 0.5, rtol=2e-3)


def test_mean_of_nothing_is_nan_without_a_warning():
    assert np.isnan(ad.zeros(0).mean().item())
    assert np.isnan(ad.zeros(3, 0).mean(axis=1).numpy()).all()


# ---- empty inputs ---------------------------------------------------------------------------

def _torch_empty(fn, shape):
    torch = pytest.importorskip("torch")
    t = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    out = fn(t)
    (g,) = torch.autograd.grad(out.sum(), t, allow_unused=True)
    return out.detach().numpy(), np.zeros(shape) if g is None else g.numpy()


SOFTMAXES = {
    "softmax": (lambda x: ad.softmax(x, axis=1), lambda t: t.softmax(1)),
    "log_softmax": (lambda x: ad.log_softmax(x, axis=1), lambda t: t.log_softmax(1)),
    "logsumexp": (lambda x: ad.logsumexp(x, axis=1), lambda t: t.logsumexp(1)),
    "logsumexp_keep": (lambda x: ad.logsumexp(x, axis=1, keepdims=True),
                       lambda t: t.logsumexp(1, keepdim=True)),
    "logsumexp_other": (lambda x: ad.logsumexp(x, axis=0), lambda t: t.logsumexp(0)),
}
EXTREMA = {
    "max": (lambda x: x.max(axis=1), lambda t: t.amax(1)),
    "min": (lambda x: x.min(axis=1), lambda t: t.amin(1)),
    "norm_inf": (lambda x: ad.norm(x, math.inf, axis=1),
                 lambda t: __import__("torch").linalg.vector_norm(t, math.inf, dim=1)),
    "norm_-inf": (lambda x: ad.norm(x, -math.inf, axis=1, keepdims=True),
                  lambda t: __import__("torch").linalg.vector_norm(t, -math.inf, dim=1,
                                                                   keepdim=True)),
}
EMPTY_CASES = [(name, fns, (2, 0)) for name, fns in SOFTMAXES.items()] + \
              [(name, fns, (0, 3)) for name, fns in EXTREMA.items()]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name, fns, shape", EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_empty_reductions_match_torch(name, fns, shape, device, monkeypatch):
    ours, theirs = fns
    want, wg = _torch_empty(theirs, shape)
    with cuda_or_stand_in(monkeypatch):
        for create_graph in (False, True):
            x = ad.zeros(shape, dtype=ad.float64, device=device, requires_grad=True)
            out = ours(x)
            (g,) = ad.grad(out.sum(), x, create_graph=create_graph)
            assert out.device == device
            _same(out.numpy(), want, device=device)
            _same(g.numpy(), wg, device=device)
        x = ad.zeros(shape, dtype=ad.float64, device=device)
        _, tangent = ad.jvp(ours, x, ad.ones_like(x))
        # (a sum of no terms, or no values)
        _same(tangent.numpy(), np.zeros(want.shape), device=device)


@pytest.mark.parametrize("fn, what", [
    (lambda x: x.max(axis=0), r"max of an empty tensor \(shape \(0, 3\)\) along axes \(0,\)"),
    (lambda x: x.min(), r"min of an empty tensor \(shape \(0, 3\)\) has no value"),
    (lambda x: ad.norm(x, math.inf, axis=0), r"norm\(ord=inf\) of an empty tensor .* along"),
    (lambda x: ad.norm(x, -math.inf), r"norm\(ord=-inf\) of an empty tensor \(shape"),
])
def test_extremum_over_an_empty_axis_is_a_clear_error(fn, what):
    with pytest.raises(ValueError, match=what):
        fn(ad.zeros(0, 3))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("fn, shapes, out_shape", [
    (lambda a, b: ad.tensordot(a, b, 1), [(2, 0), (0, 3)], (2, 3)),
    (lambda a, b: ad.tensordot(a, b, ([0, 2], [1, 0])), [(0, 2, 4), (4, 0, 5)], (2, 5)),
    (lambda a, b: ad.dot(a, b), [(2, 2, 0), (3, 0, 4)], (2, 2, 3, 4)),
    (lambda a, b: ad.dot(a, b), [(0,), (0,)], ()),
    (lambda a, b: ad.dot(a, b), [(2, 0), (0, 3)], (2, 3)),
])
def test_contraction_over_an_empty_axis_is_zeros(fn, shapes, out_shape, device, monkeypatch):
    with cuda_or_stand_in(monkeypatch):
        ts = [ad.ones(s, dtype=ad.float64, device=device, requires_grad=True) for s in shapes]
        out = fn(*ts)
        assert out.shape == out_shape and (out.numpy() == 0).all()
        grads = ad.grad(out.sum(), ts)
        assert [g.shape for g in grads] == shapes
        _, tangent = ad.jvp(fn, tuple(ad.ones(s, dtype=ad.float64, device=device)
                                      for s in shapes),
                            tuple(ad.ones(s, dtype=ad.float64, device=device) for s in shapes))
        assert tangent.shape == out_shape and (tangent.numpy() == 0).all()


# ---- nan inputs get PyTorch's gradient, not a clean zero ------------------------------------

def _torch_ops():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return {
        "relu": (ad.relu, torch.relu, 1),
        "leaky_relu": (lambda x: ad.leaky_relu(x, 0.1), lambda t: F.leaky_relu(t, 0.1), 1),
        "elu": (lambda x: ad.elu(x, 1.3), lambda t: F.elu(t, 1.3), 1),
        "softplus": (ad.softplus, F.softplus, 1),
        "clip": (lambda x: ad.clip(x, -0.5, 1.0), lambda t: t.clamp(-0.5, 1.0), 1),
        "maximum": (ad.maximum, torch.maximum, 2),
        "minimum": (ad.minimum, torch.minimum, 2),
        "max": (lambda x: x.max(), lambda t: t.max(), 1),
        "min": (lambda x: x.min(), lambda t: t.min(), 1),
    }


NAN_OPS = ["relu", "leaky_relu", "elu", "softplus", "clip", "maximum", "minimum", "max", "min"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("name", NAN_OPS)
def test_nan_inputs_get_torch_gradients(name, create_graph, device, monkeypatch):
    ours, theirs, arity = _torch_ops()[name]
    a = np.array([NAN, -1.0, 0.0, 2.0, NAN, 1.0, 3.0, -0.0])
    b = np.array([1.0, NAN, 0.0, 2.0, NAN, -1.0, 3.0, 0.0])
    xs = [a, b][:arity]
    if name in ("max", "min"):
        xs = [np.array([1.0, NAN, 2.0])]
    seed = None if name in ("max", "min") else np.linspace(0.5, 2, 8)
    want_out, want = _torch_grads(theirs, xs, seed)
    with cuda_or_stand_in(monkeypatch):
        out, got = _grads(ours, xs, create_graph=create_graph, device=device, seed=seed)
    _same(out, want_out, device=device)
    for g, w in zip(got, want):
        _same(g, w, device=device)
    if seed is not None:  # forward mode: a diagonal Jacobian, so the tangent is the gradient
        with cuda_or_stand_in(monkeypatch):
            for i, w in enumerate(want):
                ts = tuple(ad.tensor(seed if j == i else np.zeros(8), device=device)
                           for j in range(arity))
                _, tangent = ad.jvp(ours, tuple(ad.tensor(x, device=device) for x in xs), ts)
                _same(tangent.numpy(), w, device=device)


def test_relu_at_nan_on_the_fused_cpu_path_and_in_forward_mode():
    x = ad.tensor([NAN, -1.0, 0.0, 2.0], requires_grad=True)
    ad.relu(x).sum().backward()  # (plain backward: the raw-array rule of FUSED_GRADS)
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 1.0]
    _, t = ad.jvp(ad.relu, ad.tensor([NAN, -1.0, 0.0, 2.0]), ad.ones(4))
    assert t.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_maximum_of_nan_and_one_sends_the_gradient_to_the_nan():
    a, b = ad.tensor([NAN], requires_grad=True), ad.tensor([1.0], requires_grad=True)
    ad.maximum(a, b).sum().backward()
    assert a.grad.tolist() == [1.0]  # (and b gets it too, as in PyTorch)
    assert b.grad.tolist() == [1.0]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_reduction_along_an_axis_with_nan_and_ties(op, device, monkeypatch):
    pytest.importorskip("torch")
    x = np.array([[1.0, NAN, 2.0], [3.0, 1.0, 3.0], [NAN, 0.0, NAN]])
    reduce_all = {"max": lambda t: t.max(), "min": lambda t: t.min()}[op]
    along = {"max": lambda t: t.amax(1), "min": lambda t: t.amin(1)}[op]
    # ties split evenly (as amax), a row with nan: its nans share the gradient (torch's max())
    _, (tie,) = _torch_grads(along, [x[1:2]])
    _, (nan0,) = _torch_grads(reduce_all, [x[0]])
    _, (nan2,) = _torch_grads(reduce_all, [x[2]])
    with cuda_or_stand_in(monkeypatch):
        _, (g,) = _grads(lambda t: getattr(t, op)(axis=1), [x], device=device)
        _same(g, np.stack([nan0, tie[0], nan2]), device=device)
        directions = ad.tensor(np.ones((3, 3)) * [1, 2, 4], device=device)
        _, tangent = ad.jvp(lambda t: getattr(t, op)(axis=1), ad.tensor(x, device=device),
                            directions)
    _same(tangent.numpy(), [2.0, 2.5 if op == "max" else 2.0, 2.5], device=device)


# ---- an inf or nan upstream gradient through masks: a select, not 0 * inf --------------------

MASK_OPS = ["relu", "leaky_relu", "elu", "clip", "maximum", "minimum"]


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("create_graph", [False, True])
@pytest.mark.parametrize("name", MASK_OPS)
def test_nonfinite_upstream_gradients_match_torch(name, create_graph, device, monkeypatch):
    # relu multiplied g by a 0/1 mask: an inf or nan g where x <= 0 gave 0 * inf = nan
    # (PyTorch selects: 0); the others select (or multiply by a non-zero slope) already
    ours, theirs, arity = _torch_ops()[name]
    a = np.array([-1.0, 0.0, 2.0, -3.0, 0.5, 1.0, -0.25, 3.0])
    b = np.array([0.0, 0.0, 1.0, -3.0, 2.0, -1.0, 1.0, 3.0])
    xs = [a, b][:arity]
    seed = np.array([math.inf, NAN, math.inf, -math.inf, NAN, math.inf, NAN, -math.inf])
    want_out, want = _torch_grads(theirs, xs, seed)
    with cuda_or_stand_in(monkeypatch):
        out, got = _grads(ours, xs, create_graph=create_graph, device=device, seed=seed)
    _same(out, want_out, device=device)
    for g, w in zip(got, want):
        _same(g, w, device=device)


@pytest.mark.parametrize("dtype", [ad.float16, ad.float32, ad.float64])
@pytest.mark.parametrize("create_graph", [False, True])
def test_relu_pole_upstream_gives_zero(create_graph, dtype):
    # the reproducer: 2 / relu(x) at x = -1 sends inf to relu's rule (PyTorch: x.grad 0); the
    # plain pass runs the CPU's raw-array rule (FUSED_GRADS), create_graph the composed one
    x = ad.tensor([-1.0, 0.0, 2.0, NAN], dtype=dtype, requires_grad=True)
    (g,) = ad.grad((2.0 / ad.relu(x)).sum(), x, create_graph=create_graph)
    assert g.dtype == dtype
    _same(g.numpy().astype(np.float64), [0.0, 0.0, -0.5, NAN])
    if create_graph:  # the rule stays connected to x: its own derivative is 0 where x <= 0
        (h,) = ad.grad(g[:2].sum(), x)
        assert h.numpy()[:2].tolist() == [0.0, 0.0]


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


# ---- prod: empty axes, and zeros next to overflowing factors --------------------------------

def _torch_prod(t, axes):
    for a in sorted(axes, reverse=True):
        t = t.prod(dim=a)
    return t


@pytest.mark.parametrize("shape", [(2, 0, 3), (0, 2), (3, 0), (0, 0, 2), (1, 2, 0, 2)])
def test_prod_over_every_axis_combination_of_an_empty_tensor_matches_torch(shape):
    # the reproducer: prod over (0, 2) of a (2, 0, 3) tensor raised in backward ("reshape
    # cannot turn shape (0, 2, 3) (0 elements) into (0, -1)"); PyTorch: an empty gradient
    axes_sets = [c for k in range(1, len(shape) + 1)
                 for c in itertools.combinations(range(len(shape)), k)]
    for axes in axes_sets:
        ours = functools.partial(ad.prod, axis=axes)
        out, (g,) = _grads(ours, [np.zeros(shape)])
        want, (wg,) = _torch_grads(functools.partial(_torch_prod, axes=axes), [np.zeros(shape)])
        _same(out, want)
        _same(g, wg)
        _, (g2,) = _grads(ours, [np.zeros(shape)], create_graph=True)
        _same(g2, wg)


def _exact_products_of_others(values, dtype=np.float64):
    """For each element, the product of the others, exactly (as fractions), rounded once to
    ``dtype`` (inf where it is past the largest float)."""
    out = []
    for i in range(len(values)):
        p = math.prod(fractions.Fraction(float(v)) for j, v in enumerate(values) if j != i)
        out.append((1 if p > 0 else -1) * math.inf if abs(p) > np.finfo(dtype).max else float(p))
    return np.array(out, dtype=dtype)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("values", [[0.0, 0.0, 1e300, 1e300], [1e300, 1e300, 0.0, 0.0],
                                    [0.0, 1e300, 1e300, 0.0], [1e300, 0.0, 1e300, 0.0],
                                    [0.0, 1e300, 1e300], [2.0, 1e300, 1e300],
                                    [0.0, 0.0, 0.0, 3.0], [2.0, 0.0, 3.0, 0.5],
                                    [1e-200, 1e-200, 3.0], [1.5, -2.0, 0.25],
                                    # a prefix or suffix product past the float range where the
                                    # product of the others is not
                                    [0.0, 1e-200, 1e200, 1e300], [1, 1e200, 1e200, 1e-200, 0],
                                    [1e-300, 1e-300, 1e300, 1e300, 0.0, 5e-324],
                                    # a partial product in the subnormals: y / x_i 1e-5 off
                                    [3e-160, 3e-160, 1e300], [1e300, 3e-160, 3e-160]])
def test_prod_gradient_is_the_exact_product_of_the_others(values, device, monkeypatch):
    """d prod/dx_i is the product of the others, against its exact value. 0 * inf: the
    product of the others at the first zero of [0, 0, 1e300, 1e300] was 0 * (1e300 * 1e300) =
    nan; with another zero among them it is 0. Where the product overflows or underflows,
    PyTorch's prod / x_i loses partial derivatives that are representable: [2, 1e300, 1e300]
    gives PyTorch [inf, inf, inf] (exact: [inf, 2e300, 2e300]) and [1e-200, 1e-200, 3] gives
    [0, 0, 0] (exact: [3e-200, 3e-200, 1e-400 = 0])."""
    want = _exact_products_of_others(values)
    # (the products overflow: NumPy's warnings, as for multiply, are expected here)
    # (and log2(0) of the range test, where the stand-in's NumPy warns and CuPy does not)
    with cuda_or_stand_in(monkeypatch), np.errstate(over="ignore", invalid="ignore", under="ignore",
                                             divide="ignore"):
        for create_graph in (False, True):
            out, (g,) = _grads(ad.prod, [values], create_graph=create_graph, device=device)
            _same(out, math.prod(values), device=device)
            _same(g, want, device=device)
        _, tangent = ad.jvp(ad.prod, ad.tensor(values, dtype=ad.float64, device=device),
                            ad.tensor(np.ones(len(values)), dtype=ad.float64, device=device))
    _same(tangent.numpy(), np.sum(want), device=device)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("values", [[1e30, 1e30, 1e-30], [1e-30, 1e-30], [1e20, 1e20, 1e-20],
                                    [3e-39, 2.0], [2.0, 0.5, -4.0],
                                    # a subnormal factor: y / x_i was 12% and 7% off
                                    [1.4012985e-45, -2.6883411, -5.2793422, 1e30],
                                    [1.4012985e-45, -1.8682997, 3e38, 2.1992664],
                                    # past float64's range on the way
                                    [1e38] * 9 + [1e-38] * 9,
                                    # a subnormal partial product (not factor): 5e-6 off
                                    [1e-20, 1e-20, 1e30]])
def test_prod_gradient_past_a_float32_overflow_or_underflow(values, device, monkeypatch):
    # the reproducer: prod / x_i gave [inf, inf, 1e30 / 1e-30 = inf] where the first two are
    # 1, and [0, 0] where both are 1e-30
    x = np.array(values, dtype=np.float32)
    want = _exact_products_of_others(x, np.float32)
    with cuda_or_stand_in(monkeypatch), np.errstate(over="ignore", under="ignore"):
        for create_graph in (False, True):
            _, (g,) = _grads(ad.prod, [x], ad.float32, create_graph, device)
            _same(g, want.astype(np.float64), rtol=1e-6, device=device)
        rows = ad.tensor(np.stack([x, np.ones_like(x)]), device=device, requires_grad=True)
        (g,) = ad.grad(ad.prod(rows, axis=1).sum(), rows)  # a normal slice next to it
        _same(g.numpy()[0], want.astype(np.float64), rtol=1e-6, device=device)
        _same(g.numpy()[1], np.ones_like(x), device=device)


@np.errstate(over="ignore", invalid="ignore")
def test_prod_products_of_others_are_zero_next_to_a_zero_but_nan_carries():
    x = ad.tensor([[0.0, 0.0, 1e300, 1e300], [0.0, NAN, 1e300, 1e300]], dtype=ad.float64,
                  requires_grad=True)
    ad.prod(x, axis=1).sum().backward()
    # (the nan's own derivative is 0 * 1e300 * 1e300 = 0: no nan among the others)
    _same(x.grad.numpy(), [[0, 0, 0, 0], [NAN, 0, NAN, NAN]])
    # the others of a nan are still their product where a suffix of it overflows
    x = ad.tensor([NAN, 1e-200, 1e200, 1e300], dtype=ad.float64, requires_grad=True)
    ad.prod(x).backward()
    _same(x.grad.numpy(), [1e300, NAN, NAN, NAN])
    # and past the float maximum: row 1e-300 of the Hessian of [1e300, 1e300, 1e-300, 2]
    # holds inf (1e600) next to finite entries, which the y / x_i form made inf - inf = nan and
    # the matmul of a one-hot g with the pairs' infs 0 * inf = nan
    from gpuad.autograd.functional import hessian
    v = [1e300, 1e300, 1e-300, 2.0]
    h = hessian(ad.prod, ad.tensor(v, dtype=ad.float64)).numpy()
    want = [[0, 2e-300, 2e300, 1], [2e-300, 0, 2e300, 1], [2e300, 2e300, 0, math.inf],
            [1, 1, math.inf, 0]]
    _same(h, want)
    # second derivatives stay exact with two zeros: d2/dx0 dx1 prod([0, 0, 3]) = 3
    x = ad.tensor([0.0, 0.0, 3.0], requires_grad=True)
    (g,) = ad.grad(ad.prod(x), x, create_graph=True)
    hess = np.stack([ad.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(3)])
    _same(hess, [[0, 3, 0], [3, 0, 0], [0, 0, 0]])


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
