"""The CUDA backend's fused kernels, on the stand-in for CuPy (which runs the kernels'
functions through their host build): each derivative rule is one launch, it agrees with the
composed rule on the CPU, its node differentiates again (create_graph), float16 is computed in
float32, other dtypes fall back, and failures name the kernel."""
import numpy as np
import pytest
from fake_cupy import installed
from op_cases import REAL, UNARY_REFERENCE

import gpuad as ad
from gpuad.backends.kernel_table import OPTIM, ROWWISE, kernel_functions, kernel_rows

PARAMS = {"leaky_relu": (0.1,), "elu": (1.3,), "softplus": (1.5, 20.0)}


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


def _op(row):
    return lambda x: row.op(x, *PARAMS.get(row.name, ()))


def _x(row):
    """Inputs from the op's domain in tests/op_cases.py (REAL for the ops behind a public
    function with parameters)."""
    domain = UNARY_REFERENCE.get(row.name, (None, REAL))[1]
    return domain(np.random.default_rng(0), (3, 5))


@pytest.mark.parametrize("row", kernel_rows(), ids=[r.kernel for r in kernel_rows()])
def test_fused_derivative_is_one_launch_and_matches_the_rule(row, fake_cuda):
    xn, gn = _x(row), np.random.default_rng(1).standard_normal((3, 5))
    results = {}
    for dev in ("cpu", "cuda"):
        x = ad.tensor(xn, dtype=ad.float64, device=dev, requires_grad=True)
        y = _op(row)(x)
        kernels = x.device.backend.kernels if dev == "cuda" else None
        before = kernels.launches if kernels else 0
        (g,) = ad.grad(y, x, ad.tensor(gn, dtype=ad.float64, device=dev))
        if kernels:
            assert kernels.launches - before == 1, "a fused derivative is one kernel launch"
        results[dev] = (y.numpy(), g.numpy())
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(results["cuda"][1], results["cpu"][1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("row", kernel_rows(), ids=[r.kernel for r in kernel_rows()])
def test_fused_derivative_differentiates_again(row, fake_cuda):
    xn = _x(row)
    rng = np.random.default_rng(2)
    gn, vn = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    results = {}
    for dev in ("cpu", "cuda"):
        x = ad.tensor(xn, dtype=ad.float64, device=dev, requires_grad=True)
        g = ad.tensor(gn, dtype=ad.float64, device=dev, requires_grad=True)
        (gx,) = ad.grad(_op(row)(x), x, g, create_graph=True)
        if dev == "cuda":
            assert gx.grad_fn.name().lower().startswith(row.name.replace("_", ""))
        second = ad.grad((gx * ad.tensor(vn, dtype=ad.float64, device=dev)).sum(), (x, g),
                         allow_unused=True)
        results[dev] = [np.zeros_like(xn) if s is None else s.numpy() for s in second]
    for a, b in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_float16_computes_in_float32_and_ints_fall_back(fake_cuda):
    xn = np.linspace(-3, 3, 11)
    x = ad.tensor(xn, dtype=ad.float16, device="cuda", requires_grad=True)
    y = ad.sigmoid(x)
    assert y.dtype == ad.float16
    want = (1 / (1 + np.exp(-xn.astype(np.float16).astype(np.float32)))).astype(np.float16)
    np.testing.assert_array_equal(y.numpy(), want)
    (g,) = ad.grad(y.sum(), x)
    assert g.dtype == ad.float16
    i = ad.tensor([-1, 0, 2], device="cuda")
    np.testing.assert_allclose(ad.sigmoid(i).numpy(), 1 / (1 + np.exp([1.0, 0.0, -2.0])))


@pytest.mark.parametrize("row", kernel_rows(), ids=[r.kernel for r in kernel_rows()])
def test_forward_is_one_launch_exactly_where_the_table_says(row, fake_cuda):
    """The rows with ``kernel_forward`` run their forward in one kernel; the others launch none of
    the backend's kernels (CuPy's own ufuncs compute them)."""
    x = ad.tensor(_x(row), device="cuda")
    kernels = x.device.backend.kernels
    before = kernels.launches
    _op(row)(x)
    assert kernels.launches - before == (1 if row.kernel_forward else 0)


def test_warmup_builds_exactly_the_kernels_the_ops_launch(fake_cuda, monkeypatch):
    """Every op of the table run forward and backward on CUDA, in every float dtype, builds
    a set of elementwise kernels; warmup, on a fresh cache, builds that same set (no kernel
    that no op launches, none missing), and every row-wise and optimizer kernel."""
    backend = ad.device("cuda").backend
    fresh = type(backend.kernels)
    monkeypatch.setattr(backend, "kernels", fresh())
    for row in kernel_rows():
        for dtype in (ad.float16, ad.float32, ad.float64):
            x = ad.tensor(_x(row), dtype=dtype, device="cuda", requires_grad=True)
            ad.grad(_op(row)(x).sum(), x)
    used = {key for key in backend.kernels._cache if key[0] != "all_finite"}
    assert len(used) == 3 * len(kernel_functions())
    monkeypatch.setattr(backend, "kernels", fresh())
    n = ad.cuda.warmup()
    assert set(backend.kernels._cache) == used
    assert n == len(used) + 3 * len(ROWWISE + OPTIM)
    with pytest.raises(ValueError, match="not a CUDA device"):
        ad.cuda.warmup("cpu")


def test_compile_failure_names_the_kernel(fake_cuda, monkeypatch):
    import cupy

    from gpuad.backends import cupy_kernels  # (imports CuPy: here the stand-in)

    def broken(self, *values):
        raise cupy.cuda.compiler.CompileException("error: identifier 'x' is undefined",
                                                  "<source>", "gpuad_kernel", ())

    monkeypatch.setattr(cupy.ElementwiseKernel, "__call__", broken)
    x = ad.tensor([1.0], device="cuda")
    x.device.backend.kernels._cache.clear()
    with pytest.raises(cupy_kernels.KernelCompileError,
                       match=r"(?s)gpuad_sigmoid_fwd_float32.*failed to compile.*undefined"):
        ad.sigmoid(x)


SOFTMAX_FAMILY = {
    "softmax": lambda t: ad.softmax(t, axis=1),
    "log_softmax": lambda t: ad.log_softmax(t, axis=0),
    "logsumexp": lambda t: ad.logsumexp(t, axis=(0, 2)),
    "logsumexp_keepdims": lambda t: ad.logsumexp(t, axis=1, keepdims=True),
    "logsumexp_all": lambda t: ad.logsumexp(t),
}


@pytest.mark.parametrize("cols", [7, 1500], ids=["warp_rows", "block_rows"])
@pytest.mark.parametrize("name", list(SOFTMAX_FAMILY))
def test_softmax_family_kernels(name, cols, fake_cuda):
    """Forward and backward are one launch each, equal to the CPU; the fused backward node
    differentiates again (create_graph) and carries tangents (forward mode)."""
    fn = SOFTMAX_FAMILY[name]
    rng = np.random.default_rng(3)
    xn = rng.standard_normal((3, cols, 2))
    results = {}
    for dev in ("cpu", "cuda"):
        wide = ad.tensor(np.concatenate([xn, xn], axis=2), dtype=ad.float64, device=dev)
        x = wide[:, :, ::2].detach().requires_grad_()  # not contiguous
        kernels = x.device.backend.kernels if dev == "cuda" else None
        before = kernels.launches if kernels else 0
        y = fn(x)
        if kernels:
            assert kernels.launches - before == 1
        g = ad.tensor(rng.standard_normal(y.shape), dtype=ad.float64, device=dev)
        before = kernels.launches if kernels else 0
        (gx,) = ad.grad(y, x, g, create_graph=True)
        if kernels:
            assert kernels.launches - before == 1
        v = ad.tensor(np.linspace(-1, 1, x.size).reshape(x.shape), dtype=ad.float64,
                      device=dev)
        (second,) = ad.grad((gx * v).sum(), x)
        _, tangent = ad.jvp(lambda t, g=g: ad.grad(fn(t.requires_grad_()), t, g)[0], x.detach(),
                            v)
        results[dev] = [y.numpy(), gx.numpy(), second.numpy(), tangent.numpy()]
        rng = np.random.default_rng(3)  # the same g on both devices
        rng.standard_normal(xn.shape)
    for a, b in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_softmax_family_float16_and_edges(fake_cuda):
    x = np.array([[0.0, 1e4, -1e4], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0]])
    for fn in (lambda t: ad.softmax(t), lambda t: ad.log_softmax(t), ad.logsumexp):
        with np.errstate(all="ignore"):
            want = fn(ad.tensor(x, device="cpu")).numpy()
            got = fn(ad.tensor(x, device="cuda")).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
    h = ad.tensor(np.linspace(-3, 3, 12).reshape(3, 4), dtype=ad.float16, device="cuda")
    np.testing.assert_allclose(ad.softmax(h).numpy().astype(np.float32),
                               ad.softmax(h.cpu()).numpy().astype(np.float32), rtol=1e-3)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("cols", [10, 1200], ids=["warp_rows", "block_rows"])
def test_fused_cross_entropy_matches_the_composition(cols, smoothing, fake_cuda):
    rng = np.random.default_rng(7)
    xn = rng.standard_normal((6, cols))
    labels = rng.integers(0, cols, 6)
    labels[2] = -100
    backend = ad.device("cuda").backend
    x = ad.tensor(xn, dtype=ad.float64, device="cuda")
    before = backend.kernels.launches
    loss, dlogits = backend.fused_cross_entropy(x.array, ad.tensor(labels, device="cuda").array,
                                                -100, smoothing)
    assert backend.kernels.launches - before == 1
    xt = ad.tensor(xn, dtype=ad.float64)  # the same, composed from ops on the CPU
    q = np.full(xn.shape, smoothing / cols)
    q[np.arange(6), np.where(labels < 0, 0, labels)] += 1 - smoothing
    want_loss = (ad.logsumexp(xt, axis=1) - (xt * ad.tensor(q)).sum(axis=1)).numpy()
    want_d = (ad.softmax(xt, axis=1) - ad.tensor(q)).numpy()
    want_loss[2], want_d[2] = 0.0, 0.0
    np.testing.assert_allclose(loss.get(), want_loss, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dlogits.get(), want_d, rtol=1e-12, atol=1e-13)


def test_composed_rule_would_launch_three_kernels(fake_cuda, monkeypatch):
    """Without the fused kernel, sigmoid's derivative is a chain of CuPy calls (three
    launches: y * (1 - y) times g); with it, one."""
    x = ad.tensor(np.linspace(-2, 2, 5), device="cuda", requires_grad=True)
    backend = x.device.backend
    calls = []
    for name in ("multiply", "subtract", "add", "true_divide", "negative"):
        original = getattr(backend, name)
        monkeypatch.setattr(backend, name,
                            lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    y = ad.sigmoid(x)
    before = backend.kernels.launches
    ad.grad(y, x, ad.ones_like(y))
    assert backend.kernels.launches - before == 1 and not calls
    monkeypatch.setattr(type(backend), "fused_unary_grad", None)
    ad.grad(ad.sigmoid(x), x, ad.ones_like(y))
    assert len(calls) >= 3, calls


def test_few_long_rows_use_cupy_reductions(fake_cuda):
    """A single row of 100k values would be one block: the composed path (CuPy's reductions,
    which split the row) is used instead, with the same result."""
    xn = np.random.default_rng(5).standard_normal(100_000)
    x = ad.tensor(xn, dtype=ad.float64, device="cuda", requires_grad=True)
    kernels = x.device.backend.kernels
    before = kernels.launches
    y = ad.logsumexp(x)
    (g,) = ad.grad(y, x)
    assert kernels.launches == before
    m = xn.max()
    assert y.item() == pytest.approx(m + np.log(np.exp(xn - m).sum()), rel=1e-13)
    np.testing.assert_allclose(g.numpy(), np.exp(xn - y.item()), rtol=1e-12)
