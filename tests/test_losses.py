"""ad.nn.functional losses against PyTorch (values and gradients, every reduction,
ignore_index, label smoothing, probability targets), against finite differences to second
order, and the fused cross-entropy path (CUDA, here the CuPy stand-in) against the composed
one."""
import numpy as np
import pytest
from fake_cupy import installed

import gpuad as ad
from gpuad.backends.numpy_backend import NumpyBackend

F = ad.nn.functional
REDUCTIONS = ["mean", "sum", "none"]


def _pair(shape=(6, 5), seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), rng


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    return t


def _compare(ours, theirs, inputs, tinputs, torch):
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-13)
    g = np.random.default_rng(9).standard_normal(ours.shape)
    grads = ad.grad(ours, inputs, ad.tensor(g, dtype=ad.float64), allow_unused=True)
    tgrads = torch.autograd.grad(theirs, tinputs, torch.tensor(g), allow_unused=True)
    for a, b in zip(grads, tgrads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(6, 5), (5,), (3, 4, 2)], ids=["rows", "one", "spatial"])
def test_cross_entropy_against_torch(shape, smoothing, reduction, torch):
    xn, rng = _pair(shape)
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    labels = rng.integers(0, c, tshape)
    if labels.ndim:
        labels.flat[1] = -100
    x = ad.tensor(xn, dtype=ad.float64, requires_grad=True)
    tx = torch.tensor(xn, requires_grad=True)
    ours = F.cross_entropy(x, ad.tensor(labels), reduction=reduction, label_smoothing=smoothing)
    theirs = torch.nn.functional.cross_entropy(tx, torch.tensor(labels), reduction=reduction,
                                               label_smoothing=smoothing)
    _compare(ours, theirs, [x], [tx], torch)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probability_targets(reduction, torch):
    xn, rng = _pair()
    p = rng.random((6, 5))
    p /= p.sum(1, keepdims=True)
    x, tx = ad.tensor(xn, requires_grad=True), torch.tensor(xn, requires_grad=True)
    ours = F.cross_entropy(x, ad.tensor(p), reduction=reduction, label_smoothing=0.1)
    theirs = torch.nn.functional.cross_entropy(tx, torch.tensor(p), reduction=reduction,
                                               label_smoothing=0.1)
    _compare(ours, theirs, [x], [tx], torch)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_mse_bce_against_torch(reduction, torch):
    xn, rng = _pair()
    labels = rng.integers(0, 5, 6)
    labels[3] = -100
    x, tx = ad.tensor(xn, requires_grad=True), torch.tensor(xn, requires_grad=True)
    _compare(F.nll_loss(ad.log_softmax(x, axis=1), ad.tensor(labels), reduction=reduction),
             torch.nn.functional.nll_loss(torch.log_softmax(tx, 1), torch.tensor(labels),
                                          reduction=reduction), [x], [tx], torch)
    yn = rng.standard_normal((6, 5))
    y, ty = ad.tensor(yn, requires_grad=True), torch.tensor(yn, requires_grad=True)
    _compare(F.mse_loss(x, y, reduction=reduction),
             torch.nn.functional.mse_loss(tx, ty, reduction=reduction), [x, y], [tx, ty], torch)
    tn = rng.random((6, 5))
    t, tt = ad.tensor(tn, requires_grad=True), torch.tensor(tn, requires_grad=True)
    _compare(F.binary_cross_entropy_with_logits(x * 10, t, reduction=reduction),
             torch.nn.functional.binary_cross_entropy_with_logits(tx * 10, tt,
                                                                  reduction=reduction),
             [x, t], [tx, tt], torch)
    pw = rng.random(5) + 0.5
    _compare(F.binary_cross_entropy_with_logits(x, t, reduction=reduction,
                                                pos_weight=ad.tensor(pw)),
             torch.nn.functional.binary_cross_entropy_with_logits(
                 tx, tt, reduction=reduction, pos_weight=torch.tensor(pw)),
             [x, t], [tx, tt], torch)


def test_cross_entropy_second_order_against_differences():
    xn, rng = _pair((4, 3))
    labels = ad.tensor(rng.integers(0, 3, 4))
    v = rng.standard_normal((4, 3))

    def grad(a):
        x = ad.tensor(a, requires_grad=True)
        return ad.grad(F.cross_entropy(x, labels, label_smoothing=0.1), x)[0].numpy()

    x = ad.tensor(xn, requires_grad=True)
    (g,) = ad.grad(F.cross_entropy(x, labels, label_smoothing=0.1), x, create_graph=True)
    (hv,) = ad.grad((g * ad.tensor(v)).sum(), x)
    eps = 1e-6
    np.testing.assert_allclose(hv.numpy(), (grad(xn + eps * v) - grad(xn - eps * v)) / (2 * eps),
                               rtol=1e-5, atol=1e-7)
    assert ad.gradcheck(lambda x: F.cross_entropy(x, labels, label_smoothing=0.1),
                        [ad.tensor(xn, requires_grad=True)])


@pytest.mark.usefixtures("cpu_default")  # the check raises at the op on the CPU
def test_loss_errors():
    x = ad.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(x, ad.tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match=r"outside \[0, 3\)"):
        F.cross_entropy(x, ad.tensor([0, 3]))
    with pytest.raises(ValueError, match="2 rows of logits but target shape"):
        F.cross_entropy(x, ad.tensor([0, 1, 2]))


@pytest.mark.parametrize("ignore_a_row", [True, False])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_fused_cross_entropy_equals_the_composed_one(reduction, smoothing, ignore_a_row,
                                                      monkeypatch):
    """On CUDA (the stand-in) cross_entropy is the fused kernel, one launch forward, and on
    the CPU its NumPy twin: values, gradients, second derivatives and forward-mode tangents
    equal to the composed path (the CPU backend without its fused function)."""
    xn, rng = _pair((7, 6))
    labels = rng.integers(0, 6, 7)
    if ignore_a_row:
        labels[4] = -100
    v = rng.standard_normal((7, 6))

    def run(dev):
        x = ad.tensor(xn, dtype=ad.float64, device=dev, requires_grad=True)
        t = ad.tensor(labels, device=dev)
        kernels = x.device.backend.kernels if dev == "cuda" else None
        before = kernels.launches if kernels else 0
        loss = F.cross_entropy(x, t, reduction=reduction, label_smoothing=smoothing)
        if kernels:
            assert kernels.launches - before == 1
        out = loss if loss.ndim == 0 else (loss * ad.arange(7.0, device=dev,
                                                               dtype=ad.float64)).sum()
        (g,) = ad.grad(out, x, create_graph=True)
        (h,) = ad.grad((g * ad.tensor(v, device=dev)).sum(), x)
        _, tangent = ad.jvp(lambda a: F.cross_entropy(a, t, reduction=reduction,
                                                      label_smoothing=smoothing),
                            x.detach(), ad.tensor(v, device=dev))
        return [loss.numpy(), g.numpy(), h.numpy(), tangent.numpy()]

    with installed(monkeypatch):
        with monkeypatch.context() as patch:
            patch.setattr(NumpyBackend, "fused_cross_entropy", lambda *args: None)
            composed = run("cpu")
        for dev in ("cpu", "cuda"):
            for a, b in zip(run(dev), composed):
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13, err_msg=dev)


def test_all_rows_ignored_and_empty_batches(monkeypatch):
    with installed(monkeypatch):
        for dev in ("cpu", "cuda"):
            x = ad.tensor(np.ones((3, 4)), dtype=ad.float64, device=dev, requires_grad=True)
            loss = F.cross_entropy(x, ad.tensor([-100, -100, -100], device=dev))
            (g,) = ad.grad(loss, x)
            assert np.isnan(loss.item()) and not g.numpy().any(), dev
            empty = ad.zeros((0, 4), dtype=ad.float64, device=dev)
            assert np.isnan(F.cross_entropy(empty, ad.tensor(np.zeros(0, np.int64),
                                                             device=dev)).item())


def test_float16_means_do_not_overflow():
    x = ad.full((70000,), 0.01, dtype=ad.float16)
    loss = F.mse_loss(x, ad.zeros(70000, dtype=ad.float16))
    assert loss.dtype == ad.float16 and loss.item() == pytest.approx(1e-4, rel=1e-2)


@pytest.mark.parametrize("classes", [5, 40])  # reduced across the transpose, and along rows
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_one_pass_cross_entropy_against_the_formula(classes, smoothing, dtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((9, classes)) * 4).astype(dtype)
    labels = rng.integers(0, classes, 9)
    labels[3] = -7
    loss, d = NumpyBackend().fused_cross_entropy(x, labels, -7, smoothing)
    assert loss.dtype == dtype and d.dtype == dtype and d.flags.c_contiguous
    xd = x.astype(np.float64)
    logp = xd - xd.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    q = np.full((9, classes), smoothing / classes)
    q[np.arange(9), np.where(labels == -7, 0, labels)] += 1 - smoothing
    want_loss, want_d = -(q * logp).sum(1), np.exp(logp) - q
    want_loss[3], want_d[3] = 0, 0
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, want_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(d, want_d, rtol=tol, atol=tol)
    assert NumpyBackend().fused_cross_entropy(x.astype(np.float16), labels, -7, 0.0) is None


def test_ignored_rows_take_no_gradient_even_when_not_finite(monkeypatch):
    """The documented difference from PyTorch (which passes nan through ignored rows): the loss
    does not depend on an ignored row, so its gradient is 0, on the CPU and on CUDA."""
    x = np.array([[1.0, 2.0, 0.5], [np.nan, 1.0, 0.0], [-np.inf, -np.inf, -np.inf],
                  [0.3, -0.2, 0.1]])
    labels = np.array([0, 2, 2, 1])
    with installed(monkeypatch):
        for dev in ("cpu", "cuda"):
            xt = ad.tensor(x, device=dev, requires_grad=True)
            loss = F.cross_entropy(xt, ad.tensor(labels, device=dev), ignore_index=2)
            (g,) = ad.grad(loss, xt)
            g = g.numpy()
            assert not g[1:3].any(), dev
            z = x[[0, 3]] - x[[0, 3]].max(1, keepdims=True)
            p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
            p[[0, 1], [0, 1]] -= 1
            np.testing.assert_allclose(g[[0, 3]], p / 2, rtol=1e-12, err_msg=dev)
            assert np.isfinite(loss.item())
