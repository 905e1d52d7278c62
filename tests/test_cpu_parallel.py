"""The CPU backend's speed paths give the very same numbers as the plain ones: composite
elementwise functions split into chunks over threads, the branch-free sigmoid, the cube, the
matmul gradient laid out as its operand, and Adam on a transposed gradient."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gpuad as ad
from gpuad.backends import cpu_parallel
from gpuad.backends.kernel_table import UNARY as UNARY_ROWS
from gpuad.backends.numpy_backend import NumpyBackend


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    """These tests are about the CPU backend's work (the default
    device is cuda:0 where a GPU is usable)."""


N = cpu_parallel.MIN_SIZE + cpu_parallel.CHUNK // 3  # several chunks, the last one partial


@pytest.fixture
def threads():
    before = ad.get_num_threads()
    yield ad.set_num_threads
    ad.set_num_threads(before)


def _inputs(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(N) * 6).astype(dtype)
    x[:8] = [0.0, -0.0, 50.0, -50.0, 100.0, -100.0, np.inf, -np.inf]
    x[-1] = np.nan
    return x


CASES = [("sigmoid", ()), ("softplus", (1.5, 20.0)), ("gelu", ("none",)), ("gelu", ("tanh",)),
         ("silu", ()), ("rsqrt", ()), ("leaky_relu", (0.1,)), ("elu", (1.0,))]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,params", CASES)
def test_split_composites_are_bit_identical(threads, n_threads, dtype, name, params):
    threads(n_threads)
    backend = NumpyBackend()
    x = _inputs(dtype)
    with np.errstate(all="ignore"):  # (silu(-inf) is -inf * 0, as before any split)
        split = getattr(backend, name)(x, *params)
    plain = _unsplit(backend, name)(x, *params)
    assert split.dtype == plain.dtype and split.shape == plain.shape
    np.testing.assert_array_equal(split, plain)


def _unsplit(backend, name):
    """The backend's function on one whole-array call (chunks of the whole size)."""
    def call(*args):
        saved = cpu_parallel.MIN_SIZE
        cpu_parallel.MIN_SIZE = 1 << 62
        try:
            with np.errstate(all="ignore"):
                return getattr(backend, name)(*args)
        finally:
            cpu_parallel.MIN_SIZE = saved
    return call


def test_sigmoid_matches_the_masked_form_exactly():
    x = _inputs(np.float32)
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    np.testing.assert_array_equal(ad.sigmoid(ad.tensor(x)).numpy(), np.where(x >= 0, r, e * r))
    assert ad.sigmoid(ad.tensor(np.float32(-100))).numpy() == np.float32(3.783506e-44)


def test_strided_and_mixed_shapes_fall_back(threads):
    threads(2)
    backend = NumpyBackend()
    x = _inputs(np.float64)
    strided = x[::2]
    np.testing.assert_array_equal(backend.sigmoid(strided), _unsplit(backend, "sigmoid")(strided))
    big = np.linspace(-3, 3, N).reshape(-1, 1).repeat(2, axis=1)
    col = big.T.copy().T  # Fortran order
    np.testing.assert_array_equal(backend.silu(col), _unsplit(backend, "silu")(col))


def test_the_quiet_error_state_reaches_the_helper_threads(threads):
    """rsqrt of negatives gives nan without a RuntimeWarning on every thread (the helpers run
    in a copy of the caller's context, where NumPy keeps its error state)."""
    threads(2)
    x = -np.ones(N)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ad.rsqrt(ad.tensor(x)).numpy()
    assert np.isnan(out).all()


def test_an_error_in_a_helper_reaches_the_caller(threads):
    threads(2)
    seen = []

    def piece(start, stop):
        seen.append(start)
        if start == cpu_parallel.CHUNK:  # the second chunk: most likely a helper's
            raise ZeroDivisionError("from a chunk")

    with pytest.raises(ZeroDivisionError, match="from a chunk"):
        cpu_parallel.for_chunks(piece, 4 * cpu_parallel.CHUNK)
    assert sorted(seen) == [i * cpu_parallel.CHUNK for i in range(4)]  # every chunk ran


def test_thread_count_settings(threads):
    threads(3)
    assert ad.get_num_threads() == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="set_num_threads"):
            ad.set_num_threads(bad)
    code = "import gpuad; print(gpuad.get_num_threads())"
    env = {**os.environ, "GPUAD_NUM_THREADS": "5"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "5"
    for bad in ("many", "0", "-2"):
        env["GPUAD_NUM_THREADS"] = bad
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True)
        assert out.returncode != 0, bad
        assert "GPUAD_NUM_THREADS must be a positive integer" in out.stderr


def test_cube_is_the_triple_product_pytorch_computes():
    x = np.random.default_rng(1).uniform(-3, 3, 1001)
    for dtype in (np.float32, np.float64):
        a = x.astype(dtype)
        for exponent in (3, 3.0):
            got = (ad.tensor(a) ** exponent).numpy()
            np.testing.assert_array_equal(got, a * a * a)
        np.testing.assert_allclose(got, np.power(a, 3), rtol=4 * np.finfo(dtype).eps)
    half = (x * 10).astype(np.float16)  # one rounding, as NumPy's pow and PyTorch
    np.testing.assert_array_equal((ad.tensor(half) ** 3).numpy(), np.power(half, 3))
    assert (ad.tensor(np.arange(-3, 4)) ** 3).numpy().tolist() == [-27, -8, -1, 0, 1, 8, 27]
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal((ad.tensor(x) ** 3).numpy(),
                                  (torch.from_numpy(x) ** 3).numpy())


@pytest.mark.parametrize("transpose_weight", [True, False])
def test_matmul_gradient_takes_its_operands_layout(transpose_weight):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 7))
    w = ad.tensor(rng.standard_normal((5, 7) if transpose_weight else (7, 5)),
                  requires_grad=True)
    y = x @ (ad.transpose(w) if transpose_weight else w)
    g = rng.standard_normal((16, 5))
    y.backward(ad.tensor(g))
    expect = (g.T @ x) if transpose_weight else (x.T @ g)
    np.testing.assert_allclose(w.grad.numpy(), expect, rtol=1e-12, atol=1e-12)
    assert w.grad._a.flags.c_contiguous, "the leaf's gradient must be row-major like the leaf"


def test_linear_weight_gradients_are_row_major_and_second_order_still_works():
    layer = ad.nn.Linear(6, 3)
    x = ad.tensor(np.random.default_rng(3).standard_normal((4, 6)), requires_grad=True)
    (gw,) = ad.grad(layer(x).tanh().sum(), layer.weight, create_graph=True)
    assert gw._a.flags.c_contiguous
    (gx,) = ad.grad(gw.sum(), x)  # through the transposed product
    w, xv = layer.weight.numpy(), x.numpy()
    # gw = (1 - t²)ᵀ x with t = tanh(x Wᵀ + b): d sum(gw) / dx by central differences
    eps, num = 1e-6, np.zeros_like(xv)
    for i in np.ndindex(xv.shape):
        for s in (1, -1):
            xp = xv.copy()
            xp[i] += s * eps
            tp = np.tanh(xp @ w.T + layer.bias.numpy())
            num[i] += s * ((1 - tp * tp).T @ xp).sum() / (2 * eps)
    np.testing.assert_allclose(gx.numpy(), num, rtol=1e-6, atol=1e-6)


def test_adam_on_a_transposed_gradient_is_bit_identical():
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal((300, 200)).astype(np.float32)
    grads = [rng.standard_normal((200, 300)).astype(np.float32).T for _ in range(3)]
    results = []
    for layout in ("transposed", "contiguous"):
        p = ad.nn.Parameter(ad.tensor(w0.copy()))
        opt = ad.optim.Adam([p], lr=1e-2)
        for g in grads:
            p.grad = ad.tensor(g)
            if layout == "transposed":
                p.grad._a = g  # the view itself, as a backward pass leaves it
            else:
                assert p.grad._a.flags.c_contiguous
            opt.step()
        results.append(p.numpy())
    np.testing.assert_array_equal(results[0], results[1])


# ---- F.linear: one node for x Wᵀ + b --------------------------------------------------------

LINEAR_SHAPES = [((5, 4), True), ((4,), True), ((2, 3, 4), True), ((5, 4), False)]


@pytest.mark.parametrize("x_shape,bias", LINEAR_SHAPES)
def test_linear_against_torch(x_shape, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    xn, wn, bn = rng.standard_normal(x_shape), rng.standard_normal((3, 4)), \
        rng.standard_normal(3)
    gn = rng.standard_normal(x_shape[:-1] + (3,))
    x, w = ad.tensor(xn, requires_grad=True), ad.tensor(wn, requires_grad=True)
    b = ad.tensor(bn, requires_grad=True) if bias else None
    tx, tw = torch.tensor(xn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    tb = torch.tensor(bn, requires_grad=True) if bias else None
    y = ad.nn.functional.linear(x, w, b)
    ty = torch.nn.functional.linear(tx, tw, tb)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    ours = ad.grad((y * ad.tensor(gn)).sum(), [x, w] + ([b] if bias else []))
    theirs = torch.autograd.grad((ty * torch.tensor(gn)).sum(), [tx, tw] + ([tb] if bias else []))
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), t.numpy(), rtol=1e-12, atol=1e-12)
    assert ours[1]._a.flags.c_contiguous


def test_linear_higher_orders_and_forward_mode():
    rng = np.random.default_rng(6)
    x = ad.tensor(rng.standard_normal((3, 4)))
    w = ad.tensor(rng.standard_normal((2, 4)))
    b = ad.tensor(rng.standard_normal(2))

    def f(x, w, b):
        return ad.tanh(ad.nn.functional.linear(x, w, b)).sum()

    watched = [ad.tensor(a.numpy(), requires_grad=True) for a in (x, w, b)]
    assert ad.gradcheck(lambda x, w, b: ad.tanh(ad.nn.functional.linear(x, w, b)), watched)
    composed = ad.hessian(lambda x, w, b: ad.tanh(x @ ad.transpose(w) + b).sum(), (x, w, b))
    fused = ad.hessian(f, (x, w, b))
    for row_f, row_c in zip(fused, composed):
        for a, c in zip(row_f, row_c):
            np.testing.assert_allclose(a.numpy(), c.numpy(), rtol=1e-10, atol=1e-12)
    for mode in ("forward", "reverse"):
        jac = ad.jacobian(lambda x, w, b: ad.nn.functional.linear(x, w, b), (x, w, b), mode=mode)
        np.testing.assert_allclose(jac[2].numpy(), np.broadcast_to(np.eye(2), (3, 2, 2)))
        np.testing.assert_allclose(jac[0].numpy()[1, :, 1], w.numpy())


def test_linear_promotes_like_the_composition_and_names_bad_shapes():
    x = ad.tensor(np.ones((2, 3), np.float32))
    w = ad.tensor(np.ones((4, 3), np.float32))
    b = ad.tensor(np.full(4, 0.1))  # float64: the result is float64, as x @ W.T + b
    y = ad.nn.functional.linear(x, w, b)
    assert y.dtype == ad.float64 and np.allclose(y.numpy(), 3.1)
    with pytest.raises(ValueError, match=r"linear: input \(2, 3\) @ weight \(3, 4\)"):
        ad.nn.functional.linear(x, ad.transpose(w))
    with pytest.raises(ValueError, match="bias"):
        ad.nn.functional.linear(x, w, ad.ones(3))


def test_cpu_fused_activation_derivatives_are_the_composed_rules_bits(monkeypatch):
    """The derivatives of the ops whose rows have a raw-array path (``fast``) run on raw
    arrays in a plain backward pass on the CPU: the same bits as the composed rules. Where the
    pass records (create_graph), the composed rules run, which differentiate again faster
    than a fused node. (A new such row needs its references below.)"""
    rng = np.random.default_rng(7)
    xn = rng.standard_normal((6, 5)).astype(np.float32)
    gn = rng.standard_normal((6, 5)).astype(np.float32)
    calls = []
    real = NumpyBackend.fused_unary_grad
    monkeypatch.setattr(NumpyBackend, "fused_unary_grad",
                        lambda self, row, *a: calls.append(row.name) or real(self, row, *a))
    for name in [row.name for row in UNARY_ROWS if row.fast]:
        fn = getattr(ad, name)
        y = fn(ad.tensor(xn)).numpy()
        composed = {"relu": np.where(y > 0, gn, np.float32(0)), "sigmoid": gn * y * (1 - y),
                    "tanh": gn * (1 - y * y), "sin": gn * np.cos(xn),
                    "cos": -gn * np.sin(xn), "exp": gn * y, "arctan": gn / (xn * xn + 1)}[name]
        x = ad.tensor(xn, requires_grad=True)
        (g,) = ad.grad((fn(x) * ad.tensor(gn)).sum(), x)
        assert calls[-1:] == [name]
        np.testing.assert_array_equal(g.numpy(), composed)
        assert (np.signbit(g.numpy()) == np.signbit(composed)).all()
        calls.clear()
        (g,) = ad.grad((fn(x) * ad.tensor(gn)).sum(), x, create_graph=True)
        assert not calls and g.grad_fn.name() == {  # (relu's rule selects)
            "relu": "WhereBackward", "arctan": "ArctanGradBackward"}.get(name, "MulBackward")
        np.testing.assert_array_equal(g.numpy(), composed)
        assert (np.signbit(g.numpy()) == np.signbit(composed)).all()
        (h,) = ad.grad(g.sum(), x)
        d2 = {"relu": np.zeros_like(y), "sigmoid": gn * y * (1 - y) * (1 - 2 * y),
              "tanh": gn * -2 * y * (1 - y * y), "sin": -gn * y, "cos": -gn * y,
              "exp": gn * y, "arctan": gn * -2 * xn / (xn * xn + 1) ** 2}[name]
        np.testing.assert_allclose(h.numpy(), d2, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_helper_threads(threads):
    """The parent's helpers do not exist in a child made by fork: the child starts its own
    (instead of waiting forever on a queue nobody reads)."""
    threads(2)
    x = _inputs(np.float32)
    want = ad.sigmoid(ad.tensor(x)).numpy()  # the parent's helpers now exist
    code = (
        "import os, sys, numpy as np, gpuad as ad\n"
        "ad.set_num_threads(2)\n"
        f"x = np.load({str(_save(x))!r})\n"
        "ad.sigmoid(ad.tensor(x))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    y = ad.sigmoid(ad.tensor(x)).numpy()\n"
        "    os._exit(0 if np.isfinite(y[:-1]).all() else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert np.isfinite(want[:-1]).all()


def _save(x):
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "x.npy")
    np.save(path, x)
    return path


def test_power_derivatives_stay_connected_to_any_order():
    """d³(x²)/dx³ is 0, not "does not require grad" (as PyTorch): the rules of x**2 keep
    x ** 1 in the graph."""
    x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (g1,) = ad.grad((x ** 2).sum(), x, create_graph=True)
    (g2,) = ad.grad(g1.sum(), x, create_graph=True)
    assert g2.requires_grad
    (g3,) = ad.grad(g2.sum(), x)
    assert g3.numpy().tolist() == [0.0, 0.0, 0.0]


def test_sigmoid_of_integers_is_computed_in_floating_point():
    for dtype, want in ((np.uint8, np.float16), (np.int8, np.float16), (np.int32, np.float64),
                        (np.bool_, np.float16)):
        x = np.array([0, 1, 2, 100] if dtype != np.bool_ else [False, True], dtype)
        got = ad.sigmoid(ad.tensor(x))
        assert got.dtype == want
        ref = 1 / (1 + np.exp(-x.astype(np.float64)))
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-3)


def test_a_raising_error_state_reaches_the_helper_threads(threads):
    """Under np.errstate(all="raise") a split silu of -inf raises, whichever thread meets it
    (NumPy 1 keeps the error state per thread; the helpers take the caller's)."""
    threads(2)
    x = np.zeros(4 * cpu_parallel.CHUNK)
    x[-1] = -np.inf  # in the last chunk: most likely a helper's
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):
        ad.silu(ad.tensor(x))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(ad.silu(ad.tensor(x)).numpy()[-1])


def _count_splits(monkeypatch):
    """A list that grows by one per split evaluation (cpu_parallel.for_chunks call)."""
    calls = []
    real = cpu_parallel.for_chunks

    def counting(fn, size):
        calls.append(size)
        return real(fn, size)

    monkeypatch.setattr(cpu_parallel, "for_chunks", counting)
    return calls


UNARY_FORWARDS = [r.name for r in UNARY_ROWS if hasattr(ad, r.name) and not r.params and not r.args]


@pytest.mark.parametrize("name", UNARY_FORWARDS)
def test_large_single_ops_split_over_threads_with_the_plain_bits(threads, monkeypatch, name):
    """Each elementwise op's forward on an array of LARGE elements or more runs in chunks over
    threads: the same bits as the backend's one whole-array call."""
    threads(2)
    x = _inputs(np.float32)
    calls = _count_splits(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (log of negatives, as NumPy)
        with np.errstate(all="ignore"):
            split = getattr(ad, name)(ad.tensor(x)).numpy()
            plain = _unsplit(NumpyBackend(), next(r.forward for r in UNARY_ROWS
                                                  if r.name == name))(x)
    assert calls == [N]
    np.testing.assert_array_equal(split, plain)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
def test_large_binary_ops_split_with_scalars_and_broadcast_values(threads, monkeypatch, op):
    """Two large arrays, an array and a Python scalar (either side), and an array with a value
    broadcast over it (stride 0) each split, and give the bits of a piece below the threshold
    (one call)."""
    threads(2)
    f = getattr(ad, op)
    x = np.abs(_inputs(np.float64)) + 0.5
    y = np.linspace(0.25, 3.0, N)
    value = "1.5 broadcast"  # (a stride-0 view, as ad.broadcast_to makes)
    cases = [(x, y), (x, 2.0), (3.0, y), (x, value)]

    def operand(v, n):
        if isinstance(v, str):
            t = ad.broadcast_to(ad.tensor(np.float64(1.5)), (n,))
            assert t._a.strides == (0,)
            return t
        return v if np.isscalar(v) else ad.tensor(v[:n])

    def run(a, b, n):
        return f(operand(a, n), operand(b, n)).numpy()

    calls = _count_splits(monkeypatch)
    with np.errstate(all="ignore"):
        whole = [run(a, b, N) for a, b in cases]
        assert calls == [N] * 4
        piece = N // 4
        parts = [run(a, b, piece) for a, b in cases]
    assert calls == [N] * 4
    for w, p in zip(whole, parts):
        np.testing.assert_array_equal(w[:piece], p)


def test_a_large_backward_pass_splits_and_gives_the_bits_of_small_pieces(threads, monkeypatch):
    """The gradient of an elementwise expression on a large array (forwards, the fast
    derivative rules, the sum's broadcast gradient times a value) equals, bit for bit, the
    gradient computed on pieces below the threshold, which run as one call each."""
    threads(2)
    x = _inputs(np.float32)[8:-1]  # (finite)

    def grad(values):
        t = ad.tensor(values, requires_grad=True)
        loss = (ad.sigmoid(t) * ad.tanh(t) * 0.5 + ad.sin(t) / 3).sum()
        return ad.grad(loss, t)[0].numpy()

    calls = _count_splits(monkeypatch)
    whole = grad(x)
    assert len(calls) >= 8  # (sigmoid, tanh, *, *, sin, /, +; their rules and products)
    calls.clear()
    pieces = np.concatenate([grad(p) for p in np.array_split(x, 4)])
    assert calls == []
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int64, np.uint8, np.bool_])
def test_sigmoid_of_a_0d_integer_is_its_value_in_an_array(monkeypatch, dtype):
    """A 0-d input takes the same formula as the array it came from, on every backend (the
    CUDA one has its own kernel for floats: integers take the generic formula there too)."""
    from fake_cupy import cuda_or_stand_in

    values = np.array([0, 1, 2, 5, 9, 100] if dtype in (np.uint8, np.bool_)
                      else [-3, -1, 0, 1, 2, 100]).astype(dtype)
    with cuda_or_stand_in(monkeypatch):
        for dev in ("cpu", "cuda"):
            whole = ad.sigmoid(ad.tensor(values, device=dev)).numpy()
            each = np.array([ad.sigmoid(ad.tensor(v, device=dev)).numpy() for v in values])
            assert whole.dtype == each.dtype
            np.testing.assert_array_equal(whole.view(np.uint8), each.view(np.uint8))


def test_a_split_op_warns_once_where_a_plain_call_does(threads):
    """The dtype probe on one element runs silently; the chunks warn from one place, so the
    default filter shows one warning, as for one whole-array call (and 'raise' raises)."""
    threads(2)
    x = np.ones(2 * N)
    x[0] = x[-1] = 1e200  # (overflows in the first chunk and in the last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        got = (ad.tensor(x) * ad.tensor(x)).numpy()
    assert [w.category for w in caught] == [RuntimeWarning]
    assert np.isinf(got[0]) and np.isinf(got[-1]) and got[1] == 1.0
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        ad.tensor(x) * ad.tensor(x)
