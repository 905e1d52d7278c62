"""One harness for every op in tests/op_cases.py, over device x dtype x contiguity:

- the forward pass against a NumPy float64 reference (float16, float32, float64);
- reverse mode against float64 central differences of the reference (float32, float64);
- double backward against float64 differences of the first-order gradient (float64);
- forward and gradients against PyTorch, where torch is installed (cpu).
"""
import pickle

import numpy as np
import pytest
from op_cases import CASES
from tolerance import assert_close

import gpuad as ad
from gpuad.backends.kernel_table import UNARY as UNARY_ROWS
from gpuad.ops.registry import EXPORTS

FWD_TOL = {ad.float16: (2e-2, 2e-2), ad.float32: (2e-5, 2e-5), ad.float64: (1e-11, 1e-12)}
GRAD_TOL = {ad.float32: (2e-3, 2e-4), ad.float64: (1e-5, 1e-6)}
EPS = 1e-6

ids = [c.name for c in CASES]


def _tensor(data, dtype, device, contiguous, requires_grad=False):
    """A leaf tensor holding ``data``; non-contiguous ones are strided views of a wider array."""
    if contiguous or data.ndim == 0:
        t = ad.tensor(data, dtype=dtype, device=device)
    else:
        wide = np.zeros(data.shape[:-1] + (2 * data.shape[-1],))
        wide[..., ::2] = data
        t = ad.tensor(wide, dtype=dtype, device=device)[..., ::2].detach()
        assert not t.array.flags.c_contiguous
    return t.requires_grad_() if requires_grad else t


def _rounded(xs, dtype):
    return [x.astype(dtype).astype(np.float64) for x in xs]


def _numeric_grad(f, xs, i):
    """d f(*xs) / d xs[i] by central differences in float64 (f returns a float)."""
    x = xs[i]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        vals = []
        for step in (EPS, -EPS):
            xp = x.copy()
            xp[idx] += step
            args = list(xs)
            args[i] = xp
            vals.append(f(*args))
        out[idx] = (vals[0] - vals[1]) / (2 * EPS)
    return out


@pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "strided"])
@pytest.mark.parametrize("dtype", [ad.float16, ad.float32, ad.float64], ids=str)
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_forward(case, dtype, contiguous, device):
    if not contiguous and not case.noncontig:
        pytest.skip("contiguous inputs only")
    rng = np.random.default_rng(0)
    xs = _rounded(case.inputs(rng), dtype)
    out = case.fn(*[_tensor(x, dtype, device, contiguous) for x in xs])
    ref = np.asarray(case.ref(*xs))
    assert isinstance(out, ad.Tensor)
    assert out.dtype == (case.dtype or dtype)
    assert out.shape == ref.shape
    if case.dtype is not None:  # (booleans and indices: exactly)
        np.testing.assert_array_equal(out.numpy(), ref)
        return
    rtol, atol = FWD_TOL[dtype]
    assert_close(out.numpy(), ref, rtol=rtol, atol=atol, device=device)


@pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "strided"])
@pytest.mark.parametrize("dtype", [ad.float32, ad.float64], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=[c.name for c in CASES
                                                                     if c.grad])
def test_backward_vs_finite_differences(case, dtype, contiguous, device):
    rng = np.random.default_rng(1)
    xs = _rounded(case.inputs(rng), dtype)
    ts = [_tensor(x, dtype, device, contiguous, requires_grad=True) for x in xs]
    out = case.fn(*ts)
    u = rng.standard_normal(out.shape)
    grads = ad.grad(out, ts, ad.tensor(u, dtype=dtype, device=device), allow_unused=True)
    rtol, atol = GRAD_TOL[dtype]
    for i, (g, t) in enumerate(zip(grads, ts)):
        numeric = _numeric_grad(lambda *a: float(np.sum(np.asarray(case.ref(*a)) * u)), xs, i)
        if g is None:
            assert_close(numeric, 0, atol=atol, device=device)
            continue
        assert g.shape == t.shape and g.dtype == dtype and g.device == t.device
        assert_close(g.numpy().astype(np.float64), numeric, rtol=rtol, atol=atol,
                     err_msg=f"gradient of input {i}", device=device)


def _first_grads(case, xs, u, device):
    ts = [ad.tensor(x, dtype=ad.float64, device=device, requires_grad=True) for x in xs]
    gs = ad.grad(case.fn(*ts), ts, ad.tensor(u, device=device, dtype=ad.float64),
                 allow_unused=True)
    return [np.zeros_like(x) if g is None else g.numpy() for g, x in zip(gs, xs)]


@pytest.mark.parametrize("case", [c for c in CASES if c.grad and c.second],
                         ids=[c.name for c in CASES if c.grad and c.second])
def test_double_backward_vs_finite_differences(case, device):
    rng = np.random.default_rng(2)
    xs = case.inputs(rng)
    ts = [ad.tensor(x, dtype=ad.float64, device=device, requires_grad=True) for x in xs]
    out = case.fn(*ts)
    u = rng.standard_normal(out.shape)
    gs = ad.grad(out, ts, ad.tensor(u, device=device, dtype=ad.float64), create_graph=True,
                 allow_unused=True)
    vs = [rng.standard_normal(x.shape) for x in xs]
    pairs = [(g, v) for g, v in zip(gs, vs) if g is not None and g.requires_grad]
    if not pairs:
        pytest.skip("the first derivative does not depend on the inputs")
    s = ad.sum(ad.stack([(g * ad.tensor(v, device=device, dtype=ad.float64)).sum()
                         for g, v in pairs]))
    second = ad.grad(s, ts, allow_unused=True)

    def inner(*a):
        return float(sum(np.sum(g * v) for g, v in zip(_first_grads(case, list(a), u, device),
                                                       vs)))

    for i, h in enumerate(second):
        numeric = _numeric_grad(inner, xs, i)
        got = np.zeros_like(xs[i]) if h is None else h.numpy()
        assert_close(got, numeric, rtol=1e-4, atol=1e-5,
                     err_msg=f"second derivative for input {i}", device=device)


@pytest.mark.parametrize("dtype", [ad.float32, ad.float64], ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c.torch is not None],
                         ids=[c.name for c in CASES if c.torch is not None])
def test_against_torch(case, dtype):
    torch = pytest.importorskip("torch")
    tdtype = {ad.float32: torch.float32, ad.float64: torch.float64}[dtype]
    rng = np.random.default_rng(3)
    xs = _rounded(case.inputs(rng), dtype)
    ts = [ad.tensor(x, dtype=dtype, requires_grad=True) for x in xs]
    tt = [torch.tensor(x, dtype=tdtype, requires_grad=True) for x in xs]
    out = case.fn(*ts)
    tout = case.torch(torch)(*tt)
    rtol, atol = FWD_TOL[dtype]
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=rtol * 10, atol=atol * 10)
    u = rng.standard_normal(out.shape)
    grads = ad.grad(out, ts, ad.tensor(u, dtype=dtype), allow_unused=True)
    tgrads = torch.autograd.grad(tout, tt, torch.tensor(u, dtype=tdtype), allow_unused=True)
    for g, tg in zip(grads, tgrads):
        if tg is None:
            assert g is None or not np.any(g.numpy())
            continue
        np.testing.assert_allclose(g.numpy(), tg.numpy(), rtol=rtol * 10, atol=atol * 10)


def test_every_public_op_has_a_case():
    """Every op registered in gpuad.ops (gpuad/ops/registry.py: what ``gpuad`` exports) has a
    case in tests/op_cases.py named after it (or ``<name>_<form>``); an op under a second name
    (``cat``, ``clamp``) is covered by the case of its first."""
    def owner(case_name):
        """The public op a case is of: the longest public name that is the case's name or
        its prefix before ``_<form>`` (so ``log_softmax_axis0`` tests log_softmax, not log)."""
        fits = [name for name in EXPORTS if case_name == name or case_name.startswith(name + "_")]
        return max(fits, key=len) if fits else None

    covered = {EXPORTS[name] for name in map(owner, (c.name for c in CASES)) if name}
    missing = [name for name, fn in EXPORTS.items() if fn not in covered]
    assert not missing, f"public ops without a case in tests/op_cases.py: {missing}"
    assert len(EXPORTS) > 80
    for name, fn in EXPORTS.items():
        assert getattr(ad, name) is fn, name


def test_every_public_op_pickles_as_its_public_name():
    """An op made by a factory (a row, a comparison, a reduction) pickles, as ``gpuad.<name>``:
    a pickled model or a multiprocessing worker holding an op finds it after any refactor."""
    for name, fn in EXPORTS.items():
        assert pickle.loads(pickle.dumps(fn)) is fn, name
    assert pickle.loads(pickle.dumps([ad.exp, ad.sum, ad.less, ad.gelu])) == [
        ad.exp, ad.sum, ad.less, ad.gelu]
    assert (ad.exp.__module__, ad.exp.__qualname__) == ("gpuad", "exp")


@pytest.mark.parametrize("row", [r for r in UNARY_ROWS if r.fast], ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_rows_raw_array_path_gives_its_rules_bits(row, dtype):
    """``fast`` (the row's rule on raw arrays, which the CPU runs where nothing records) gives
    the bits of the composed rule, signs of zeros and nans included, edge values too (large,
    squares that overflow, zero, inf, nan in x and in the output gradient). (arctan's rule is
    a node of its own over the same backend method, so there the two agree by construction.)"""
    rng = np.random.default_rng(11)
    big, root = float(np.finfo(dtype).max) / 2, float(np.sqrt(np.finfo(dtype).max)) * 2
    edges = np.array([0.0, -0.0, 1e4, -1e4, big, -big, root, -root, np.inf, -np.inf, np.nan],
                     dtype)
    x = np.concatenate([(rng.standard_normal(40) * 3).astype(dtype), edges, edges])
    g = np.concatenate([rng.standard_normal(40).astype(dtype), np.ones(11, dtype),
                        edges[::-1]])
    cpu = ad.device("cpu")  # (the CPU's path, whatever the default device)
    backend = cpu.backend
    with np.errstate(all="ignore"):
        s = x if row.reads == "x" else row.backend_forward(backend, x)
        fast = backend.fused_unary_grad(row, g, s, ())
        with ad.no_grad():
            composed = row.rule(ad.tensor(g, device=cpu), ad.tensor(s, device=cpu)).numpy()
    assert fast is not None and fast.dtype == composed.dtype == dtype
    np.testing.assert_array_equal(fast, composed)
    assert (np.signbit(fast) == np.signbit(composed)).all()
