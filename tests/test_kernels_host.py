"""The math of kernels/elementwise.cuh, compiled for the host and run against the NumPy
backend (forward) and the ops' own rules (derivatives), in float32 and float64, on random
values and on the edges: 0, -0, +-1, +-1e4, +-inf, nan and the smallest normal. Also: every
elementwise op whose rule reads a value has a kernel, the header holds exactly the functions
the backend launches, and each has a check here."""
import re
import warnings

import numpy as np
import pytest
from kernel_harness import KERNELS, Harness, build_host_library, host_compiler

import gpuad as ad
from gpuad.backends.kernel_table import UNARY, kernel_functions, kernel_rows, launched

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
    return lambda x: row.op(x, *PARAMS.get(row.name, ()))


def _forward_ref(row, x):
    return row.backend_forward(ad.device("cpu").backend, x, *PARAMS.get(row.name, ()))


def _grad(fn, xs, g, dtype):
    ts = [ad.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
    out = _quiet(fn, *ts)
    grads = _quiet(ad.grad, out, ts, ad.tensor(g, dtype=dtype), allow_unused=True)
    return [np.zeros_like(x) if gr is None else gr.numpy() for gr, x in zip(grads, xs)]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("row", kernel_rows(), ids=[r.kernel for r in kernel_rows()])
def test_unary_kernel_matches_backend_and_rule(row, dtype, kernel):
    """Each function the backend launches for the row (kernel_table.launched): the forward
    against the NumPy backend, the derivative against the op's rule."""
    x = _values(dtype)
    params = PARAMS.get(row.name, ())
    y = _quiet(_forward_ref, row, x)
    g = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    for function, n_inputs in launched(row):
        if n_inputs == 1:
            _same(kernel(function, dtype, x, params=params), y, dtype, function)
        else:
            want = _grad(_op(row), [x], g, dtype)[0]
            s = {"x": x, "y": y}[row.reads]
            _same(kernel(function, dtype, g, s, params=params), want, dtype, function)


def test_every_rule_that_reads_a_value_has_a_kernel():
    """A unary op whose derivative reads x or y runs it as one CUDA kernel: its row names the
    kernel (the rule of an op that reads nothing is a constant or -g, no kernel needed)."""
    assert len(UNARY) > 25
    missing = [row.name for row in UNARY if row.reads and not row.kernel]
    assert not missing, f"rows whose rule reads a value but name no kernel: {missing}"
    assert all(row.reads for row in kernel_rows())


def test_the_header_holds_exactly_the_launched_functions_each_with_a_host_check():
    """A function of elementwise.cuh that no backend kernel launches, or a table row naming a
    function the header lacks, fails here; the host build (what the tests above call, per
    row's ``launched``) wraps exactly those functions."""
    header = (KERNELS / "elementwise.cuh").read_text()
    defined = re.findall(r"GPUAD_HD T (\w+_(?:fwd|bwd)\w*)\(", header)
    launched_ = kernel_functions()
    assert defined, "no kernel functions found in kernels/elementwise.cuh"
    assert sorted(defined) == sorted(set(defined)), "a function defined twice"
    assert not set(defined) - set(launched_), \
        f"functions no backend kernel launches: {sorted(set(defined) - set(launched_))}"
    assert not set(launched_) - set(defined), \
        f"table rows without a kernel: {sorted(set(launched_) - set(defined))}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_kernel_rules_past_the_overflow_of_squares(dtype, kernel):
    """(float16 is computed in float32.) arctan' where x*x overflows, rsqrt' where y^3
    overflows but g y^3 does not: the exact values."""
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
    """relu'(nan) = 1, elu'(nan) = 1, leaky_relu'(nan) = slope, as PyTorch (values from
    torch, float64)."""
    nan = np.nan
    g = [2.0, 2.0, 2.0, 2.0]
    assert kernel("relu_bwd", dtype, g, [nan, 0.0, 1.0, -0.0]).tolist() == [2, 0, 2, 0]
    assert kernel("elu_bwd", dtype, g, [nan, 0.0, 1.0, -1.0], params=(1.0,))[:3].tolist() == \
        [2, 2, 2]
    assert kernel("leaky_relu_bwd", dtype, g, [nan, 0.0, 1.0, -1.0], params=(0.1,)).tolist() \
        == pytest.approx([0.2, 0.2, 2, 0.2])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_relu_kernel_rule_with_a_nonfinite_upstream(dtype, kernel):
    """relu selects g: an inf or nan g where y <= 0 gives 0, not 0 * inf (values from
    PyTorch, float64)."""
    inf, nan = np.inf, np.nan
    got = kernel("relu_bwd", dtype, [inf, nan, -inf, inf, nan], [0.0, 0.0, 0.0, 2.0, 1.0])
    _same(got, [0.0, 0.0, 0.0, inf, nan], dtype, "relu_bwd")
