"""The row-wise math of kernels/rowwise.cuh (softmax family, fused softmax cross-entropy),
compiled for the host and run one row at a time, against the NumPy backend, the ops' rules,
and PyTorch's cross-entropy where torch is installed. The device kernels in kernels/rowwise.cu
run the same functions with a warp or a block per row. Also: the kernel files hold exactly the
kernels of the table, and the host build wraps exactly those."""
import ctypes
import re
import warnings

import numpy as np
import pytest
from kernel_harness import KERNELS, build_rowwise_library, host_compiler, rowwise_source

import gpuad as ad
from gpuad.backends.kernel_table import MODULES

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
P = ctypes.c_void_p


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if host_compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++) to build the row-wise host harness")
    return build_rowwise_library(tmp_path_factory.mktemp("rowwise"))


def _fn(lib, name, dtype, *argtypes):
    fn = getattr(lib, f"k_{name}_{'f32' if dtype == np.float32 else 'f64'}")
    fn.argtypes = list(argtypes)
    fn.restype = None
    return fn


def _p(a):
    return a.ctypes.data_as(P)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _logits(dtype, rows=8, cols=37):
    x = np.random.default_rng(0).uniform(-4, 4, (rows, cols))
    x[1, 3] = 1e4  # a large value: the shift by the max keeps it finite
    x[2, :5] = -np.inf
    x[3, :] = -np.inf  # a row of -inf: logsumexp -inf, softmax nan (as NumPy)
    x[4, 7] = np.inf
    x[5, 2] = np.nan
    return np.ascontiguousarray(x, dtype=dtype)


def _same(got, want, dtype, what):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: nan places")
    np.testing.assert_allclose(got, np.asarray(want, dtype=dtype), equal_nan=True,
                               err_msg=what, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", [0, 1, 2], ids=["softmax", "log_softmax", "logsumexp"])
def test_softmax_family(mode, dtype, lib):
    x = _logits(dtype)
    rows, cols = x.shape
    out = np.empty(rows if mode == 2 else x.shape, dtype=dtype)
    C = ctypes.c_longlong
    _fn(lib, "softmax", dtype, ctypes.c_int, P, P, C, C)(mode, _p(x), _p(out), rows, cols)
    backend = ad.device("cpu").backend
    want = _quiet([lambda a: backend.softmax(a, -1), lambda a: backend.log_softmax(a, -1),
                   lambda a: backend.logsumexp(a, -1, False)][mode], x)
    _same(out, want, dtype, "forward")
    ok = slice(0, 2) if mode != 2 else slice(0, 8)  # finite rows for the gradients
    xs = np.ascontiguousarray(np.concatenate([x[ok], x[6:]]) if mode != 2 else x[6:])
    rows = xs.shape[0]
    g = np.random.default_rng(1).standard_normal(rows if mode == 2 else xs.shape).astype(dtype)
    op = [ad.softmax, ad.log_softmax, lambda t, axis: ad.logsumexp(t, axis=axis)][mode]
    xt = ad.tensor(xs, requires_grad=True)
    y = op(xt, axis=-1)
    (want_dx,) = ad.grad(y, xt, ad.tensor(g))
    dx = np.empty_like(xs)
    yv = np.ascontiguousarray(y.numpy())
    _fn(lib, "softmax_backward", dtype, ctypes.c_int, P, P, P, P, C, C)(
        mode, _p(g), _p(yv), _p(xs), _p(dx), rows, xs.shape[1])
    _same(dx, want_dx.numpy(), dtype, "backward")


def _cross_entropy(lib, x, labels, eps, ignore=-100):
    rows, cols = x.shape
    loss, dlogits = np.empty(rows, dtype=x.dtype), np.empty_like(x)
    C = ctypes.c_longlong
    _fn(lib, "cross_entropy", x.dtype, P, P, ctypes.c_longlong, ctypes.c_double, P, P, C, C)(
        _p(x), _p(labels), ignore, eps, _p(loss), _p(dlogits), rows, cols)
    return loss, dlogits


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_cross_entropy(eps, dtype, lib):
    rng = np.random.default_rng(2)
    x = np.ascontiguousarray(rng.uniform(-5, 5, (9, 13)), dtype=dtype)
    labels = rng.integers(0, 13, 9).astype(np.int64)
    labels[4] = -100
    loss, dlogits = _cross_entropy(lib, x, labels, eps)
    x64 = x.astype(np.float64)
    lse = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
    q = np.full(x.shape, eps / 13)
    q[np.arange(9), np.where(labels < 0, 0, labels)] += 1 - eps
    want_loss = lse - (q * x64).sum(1)
    want_d = np.exp(x64 - lse[:, None]) - q
    want_loss[4], want_d[4] = 0, 0
    _same(loss, want_loss, dtype, "loss")
    _same(dlogits, want_d, dtype, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cross_entropy_rows_with_a_label_outside_them_are_nan(dtype, lib):
    """A label outside [0, C) (reported later, at gpuad's next host read) makes its row nan and
    reads nothing outside the row; the other rows and an ignored row are as usual."""
    rng = np.random.default_rng(5)
    x = np.ascontiguousarray(rng.uniform(-3, 3, (5, 4)), dtype=dtype)
    labels = np.array([1, 4, -100, -1, 3], dtype=np.int64)
    loss, dlogits = _cross_entropy(lib, x, labels, 0.1)
    good, _ = _cross_entropy(lib, x[[0, 4]], labels[[0, 4]], 0.1)
    assert np.isnan(loss[[1, 3]]).all() and np.isnan(dlogits[[1, 3]]).all()
    assert loss[2] == 0 and not dlogits[2].any()
    np.testing.assert_array_equal(loss[[0, 4]], good)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fused_cross_entropy_against_torch(lib):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 10))
    labels = rng.integers(0, 10, 16).astype(np.int64)
    labels[[2, 9]] = -100
    loss, dlogits = _cross_entropy(lib, x, labels, 0.05)
    xt = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(xt, torch.tensor(labels), reduction="none",
                                           ignore_index=-100, label_smoothing=0.05)
    tl.sum().backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dlogits, xt.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_log_softmax_and_cross_entropy_next_to_a_large_max(dtype, lib):
    """log_softmax as (x - max) - log(sum), not x - (max + log(sum)), which rounded log(sum)
    away: float32 [1e8, 1e8] gave [0, 0] (and the cross-entropy loss 0), against the exact
    float64 values of the same inputs."""
    big = 1e8 if dtype == np.float32 else 1e300
    x = np.array([[big, big, big], [3e5, 3e5, 3e5 - 0.5], [-big, -big, -big]], dtype=dtype)
    rows, cols = x.shape
    out = np.empty_like(x)
    C = ctypes.c_longlong
    _fn(lib, "softmax", dtype, ctypes.c_int, P, P, C, C)(1, _p(x), _p(out), rows, cols)
    z = x.astype(np.float64) - x.astype(np.float64).max(axis=1, keepdims=True)
    want = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    _same(out, want, dtype, "log_softmax")
    np.testing.assert_allclose(out[0], -np.log(3), rtol=1e-6)
    labels = np.array([0, 2, 1], dtype=np.int64)
    loss, _ = _cross_entropy(lib, x, labels, 0.1)
    q = np.full(x.shape, 0.1 / cols)
    q[np.arange(rows), labels] += 0.9
    _same(loss, -(q * want).sum(axis=1), dtype, "cross-entropy loss")


def test_kernel_files_hold_the_table_and_the_host_build_wraps_each():
    """Every ``__global__`` kernel of rowwise.cu and optim.cu is in the table (what the backend
    builds and warmup compiles) and the reverse; the host build wraps each kernel's math (the
    warp and block kernels of a row function share one wrapper), and nothing else."""
    for source, kernels in MODULES.items():
        defined = re.findall(r"__global__ void (\w+)\(", (KERNELS / source).read_text())
        assert sorted(defined) == sorted(kernels), source
    wrapped = set(re.findall(r"void k_(\w+)_f32\(", rowwise_source()))
    want = {re.sub(r"_(warp|block)$", "", k) for kernels in MODULES.values() for k in kernels}
    assert wrapped == want
