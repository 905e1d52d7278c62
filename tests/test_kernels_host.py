"""The math of kernels/elementwise.cuh, compiled for the host and run against the NumPy
backend (forward) and the ops' own rules (derivatives), in float32 and float64, on random
values and on the edges: 0, -0, +-1, +-1e4, +-inf, nan and the smallest normal. Also: every
elementwise op has a kernel, and every kernel a check here."""
import re
import warnings

import numpy as np
import pytest
from kernel_harness import KERNELS, Harness, build_host_library, host_compiler

import gpuad as ad
import gpuad.ops.elementwise as ew
from gpuad.autograd.forward import DIAGONAL
from gpuad.autograd.node import Op
from gpuad.backends.kernel_table import BINARY, SELECTION, UNARY, kernel_functions

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=4e-6, atol=1e-6), np.float64: dict(rtol=1e-13, atol=1e-13)}
PARAMS = {"leaky_relu": (0.1,), "elu": (1.3,), "softplus": (1.5, 20.0)}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    if host_compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) on this machine to build the "
                    "host harness of kernels/elementwise.cuh")
    return Harness(build_host_library(tmp_path_factory.mktemp("kernels")))


def _values(dtype, n=600, lo=-3.0, hi=3.0):
    tiny = np.finfo(dtype).tiny
    edges = [0.0, -0.0, 1.0, -1.0, 1e4, -1e4, np.inf, -np.inf, np.nan, tiny, -tiny, 0.5, -0.5]
    rng = np.random.default_rng(0)
    return np.concatenate([np.array(edges), rng.uniform(lo, hi, n)]).astype(dtype)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _same(got, want, dtype, what):
    want = np.asarray(want, dtype=dtype)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: nan places")
    np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **TOL[dtype])


def _op(row):
    fn = ew.step if row.op == "step" else getattr(ad, row.op)
    if row.kernel == "gelu_tanh":
        return lambda x: fn(x, approximate="tanh")
    return lambda x: fn(x, *PARAMS.get(row.op, ()))


def _forward_ref(row, x):
    backend = ad.device("cpu").backend
    method = getattr(backend, row.method)
    if row.op == "gelu":
        return method(x, "tanh" if row.kernel == "gelu_tanh" else "none")
    return method(x, *PARAMS.get(row.op, ()))


def _grad(fn, xs, g, dtype):
    ts = [ad.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
    out = _quiet(fn, *ts)
    grads = _quiet(ad.grad, out, ts, ad.tensor(g, dtype=dtype), allow_unused=True)
    return [np.zeros_like(x) if gr is None else gr.numpy() for gr, x in zip(grads, xs)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("row", UNARY, ids=[r.kernel for r in UNARY])
def test_unary_kernel_matches_backend_and_rule(row, dtype, kernel):
    x = _values(dtype)
    params = PARAMS.get(row.op, ())
    y = kernel(f"{row.kernel}_fwd", dtype, x, params=params)
    _same(y, _quiet(_forward_ref, row, x), dtype, f"{row.kernel}_fwd")
    g = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    want = _grad(_op(row), [x], g, dtype)[0]
    reads = {"x": [x], "y": [_quiet(_forward_ref, row, x)], None: []}[row.reads]
    got = kernel(f"{row.kernel}_bwd", dtype, g, *reads, params=params)
    _same(got, want, dtype, f"{row.kernel}_bwd")


def _pairs(dtype, positive_base=False):
    edges = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 1e4, -1e4, np.inf, -np.inf, np.nan, 0.5])
    a, b = np.meshgrid(edges, edges)
    rng = np.random.default_rng(2)
    ra, rb = rng.uniform(-3, 3, 400), rng.uniform(-3, 3, 400)
    if positive_base:
        ra = np.abs(ra) + 0.1
    rb[:50] = ra[:50]  # ties
    return (np.concatenate([a.ravel(), ra]).astype(dtype),
            np.concatenate([b.ravel(), rb]).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op", list(BINARY))
def test_binary_kernel_matches_backend_and_rules(op, dtype, kernel):
    a, b = _pairs(dtype, positive_base=op == "pow")
    backend = ad.device("cpu").backend
    _same(kernel(f"{op}_fwd", dtype, a, b), _quiet(getattr(backend, BINARY[op]), a, b), dtype,
          f"{op}_fwd")
    g = np.random.default_rng(3).standard_normal(a.size).astype(dtype)
    want_a, want_b = _grad(getattr(ad, op), [a, b], g, dtype)
    _same(kernel(f"{op}_bwd_a", dtype, g, a, b), want_a, dtype, f"{op}_bwd_a")
    _same(kernel(f"{op}_bwd_b", dtype, g, a, b), want_b, dtype, f"{op}_bwd_b")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_selection_kernels(dtype, kernel):
    x, y = _pairs(dtype)
    c = (np.random.default_rng(4).random(x.size) > 0.5).astype(dtype)
    _same(kernel("where_fwd", dtype, c, x, y), np.where(c != 0, x, y), dtype, "where_fwd")
    g = np.random.default_rng(5).standard_normal(x.size).astype(dtype)
    _, gx, gy = _grad(lambda c, x, y: ad.where(c != 0, x, y), [c, x, y], g, dtype)
    _same(kernel("where_bwd_x", dtype, g, c), gx, dtype, "where_bwd_x")
    _same(kernel("where_bwd_y", dtype, g, c), gy, dtype, "where_bwd_y")
    rng = np.random.default_rng(6)
    lo, hi = rng.uniform(-2, 1, x.size).astype(dtype), rng.uniform(-1, 2, x.size).astype(dtype)
    xs = rng.uniform(-3, 3, x.size).astype(dtype)
    xs[:30], xs[30:60] = lo[:30], hi[30:60]  # on the bounds (some with lo > hi)
    backend = ad.device("cpu").backend
    _same(kernel("clip_fwd", dtype, xs, lo, hi), backend.clip(xs, lo, hi), dtype, "clip_fwd")
    wx, wlo, whi = _grad(ad.clip, [xs, lo, hi], g, dtype)
    for name, want in (("clip_bwd_x", wx), ("clip_bwd_lo", wlo), ("clip_bwd_hi", whi)):
        _same(kernel(name, dtype, g, xs, lo, hi), want, dtype, name)


def _elementwise_ops():
    """The op names of gpuad/ops/elementwise.py whose Jacobian is diagonal, but for nodes of
    derivatives (``*_grad``: their values come from their op's ``_bwd`` kernel)."""
    names = set()
    for value in vars(ew).values():
        op = value if isinstance(value, Op) else getattr(value, "op", None)
        if isinstance(op, Op) and op.jvp is DIAGONAL and not op.name.endswith("_grad"):
            names.add(op.name)
    return names


def test_every_elementwise_op_has_a_kernel():
    have = {r.op for r in UNARY} | set(BINARY) | set(SELECTION)
    ops = _elementwise_ops()
    assert len(ops) > 35
    assert not ops - have, f"elementwise ops without a kernel: {sorted(ops - have)}"
    for row in UNARY:  # the table reads what the op's rule reads
        op = (ew.step if row.op == "step" else getattr(ew, "_" + row.op, None)
              or getattr(ew, row.op)).op
        assert op.save_out == (row.reads == "y"), row.op


def test_every_kernel_has_a_host_check():
    header = (KERNELS / "elementwise.cuh").read_text()
    defined = set(re.findall(r"GPUAD_HD T (\w+_(?:fwd|bwd\w*))\(", header))
    checked = set(kernel_functions())
    assert defined, "no kernel functions found in kernels/elementwise.cuh"
    assert not defined - checked, f"kernels without a host check: {sorted(defined - checked)}"
    assert not checked - defined, f"table rows without a kernel: {sorted(checked - defined)}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernel_rules_past_the_overflow_of_squares(dtype, kernel):
    """(float16 is computed in float32.) d(a/b)/db where b*b underflows, arctan' where x*x
    overflows, rsqrt' where y^3 overflows but g y^3 does not: the exact values."""
    v = 1e-23 if dtype == np.float32 else 1e-170
    np.testing.assert_allclose(kernel("div_bwd_b", dtype, [1.0, 1.0], [v, 100.0], [v, 300.0]),
                               [-1 / v, -100 / 300**2], rtol=1e-6)
    g, big = (1e30, 1e10) if dtype == np.float32 else (1e300, 1e10)  # g (a/b) overflows
    np.testing.assert_allclose(kernel("div_bwd_b", dtype, [g], [big * big], [big]), [-g],
                               rtol=1e-6)
    big = 1e20 if dtype == np.float32 else 1e155
    np.testing.assert_allclose(kernel("arctan_bwd", dtype, [1.0, 1.0], [big, -big]),
                               [(1 / big) ** 2 / (1 + (1 / big) ** 2)] * 2, rtol=1e-5)
    x = 1e-28 if dtype == np.float32 else 1e-210
    y = np.array([x ** -0.5], dtype)
    np.testing.assert_allclose(kernel("rsqrt_bwd", dtype, [1e-10], y),
                               [1e-10 * float(y[0]) * float(y[0]) * float(y[0]) * -0.5],
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_arctan_kernel_selects_its_form_as_the_cpu_does(dtype, kernel):
    """arctan_bwd picks g / (1 + x^2) or, where x^2 overflows, (g / x) / (x + 1 / x), as the
    backends' arctan_grad: the same bits on either side of the switch (sqrt of the float max),
    at 0, +-inf and nan, and for upstream gradients from tiny to huge."""
    edge = float(np.sqrt(np.finfo(dtype).max))
    near = [edge * f for f in (0.5, 0.999, 0.9999999, 1.0, 1.0000001, 1.001, 2.0)]
    mag = np.concatenate([_quiet(np.geomspace, 1e-3, float(np.finfo(dtype).max) / 2, 400),
                          near, [0.0, np.inf, np.nan, 1.0]])
    x = np.concatenate([mag, -mag]).astype(dtype)
    squares = _quiet(np.multiply, x, x)
    assert np.isinf(squares).sum() > 200 and np.isfinite(squares).sum() > 200
    for g in (np.ones_like(x), np.geomspace(1e-30, 1e30, x.size).astype(dtype)):
        want = _quiet(ad.device("cpu").backend.arctan_grad, g, x)
        np.testing.assert_array_equal(kernel("arctan_bwd", dtype, g, x), want)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernel_rules_at_nan_give_torchs_gradient(dtype, kernel):
    """relu'(nan) = 1, elu'(nan) = 1, and maximum/minimum give a nan operand (and the other)
    the gradient, as PyTorch (values from torch, float64); no clean zeros."""
    nan = np.nan
    g = [2.0, 2.0, 2.0, 2.0]
    assert kernel("relu_bwd", dtype, g, [nan, 0.0, 1.0, -0.0]).tolist() == [2, 0, 2, 0]
    assert kernel("elu_bwd", dtype, g, [nan, 0.0, 1.0, -1.0], params=(1.0,))[:3].tolist() == \
        [2, 2, 2]
    assert kernel("leaky_relu_bwd", dtype, g, [nan, 0.0, 1.0, -1.0], params=(0.1,)).tolist() \
        == pytest.approx([0.2, 0.2, 2, 0.2])
    a, b = [nan, 1.0, nan, 2.0], [1.0, nan, nan, 2.0]
    for op in ("maximum_bwd_a", "maximum_bwd_b", "minimum_bwd_a", "minimum_bwd_b"):
        assert kernel(op, dtype, g, a, b).tolist() == [2, 2, 2, 1], op


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernel_rules_with_nonfinite_upstream_and_extreme_operands(dtype, kernel):
    """relu selects g (an inf or nan g where y <= 0 gives 0, not 0 * inf); pow multiplies g
    by the whole derivative (g b underflowed next to a^(b-1) = inf); d(a/b)/db at a = 0 and
    a tiny b is -0, not inf * 0 (values from PyTorch, float64)."""
    inf, nan = np.inf, np.nan
    got = kernel("relu_bwd", dtype, [inf, nan, -inf, inf, nan], [0.0, 0.0, 0.0, 2.0, 1.0])
    _same(got, [0.0, 0.0, 0.0, inf, nan], dtype, "relu_bwd")
    tiny = np.finfo(dtype).smallest_subnormal
    assert kernel("pow_bwd_a", dtype, [0.5], [tiny], [tiny]).tolist() == [inf]
    big = np.finfo(dtype).max
    # d(a^b)/db = a^b log(a) = 1e-300-ish * log(tiny): g a^b underflowed first
    a, b = np.array([tiny, big], dtype), np.array([1.0, -1.0], dtype)
    want = [0.5 * (float(a[0]) * np.log(float(a[0]))), 0.5 * (1 / float(a[1]) * np.log(
        float(a[1])))]
    _same(kernel("pow_bwd_b", dtype, [0.5, 0.5], a, b), want, dtype, "pow_bwd_b")
    got = kernel("div_bwd_b", dtype, [1.0, 1.0], [0.0, 0.0], [tiny, -tiny])
    assert got.tolist() == [0.0, 0.0] and np.signbit(got).all()  # -a / b^2: -0
