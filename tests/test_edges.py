"""Gradients at the edges (SPEC section 5: PyTorch's conventions), numerical stability, and the
errors ops raise for bad input."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad


def _grad(f, values, device="cpu", dtype=ad.float64):
    x = ad.tensor(values, dtype=dtype, device=device, requires_grad=True)
    (g,) = ad.grad(f(x).sum(), x)
    return g.numpy()


def test_kink_conventions(device):
    zero = [0.0, 1.0, -1.0]
    np.testing.assert_array_equal(_grad(ad.relu, zero, device), [0, 1, 0])
    np.testing.assert_array_equal(_grad(ad.abs, zero, device), [0, 1, -1])
    np.testing.assert_array_equal(_grad(ad.sqrt, [0.0, 4.0], device), [math.inf, 0.25])
    np.testing.assert_array_equal(_grad(lambda x: ad.leaky_relu(x, 0.2), zero, device),
                                  [0.2, 1, 0.2])
    np.testing.assert_array_equal(_grad(ad.norm, [0.0, 0.0, 0.0], device), [0, 0, 0])
    np.testing.assert_array_equal(_grad(ad.sign, zero, device), [0, 0, 0])
    np.testing.assert_array_equal(_grad(lambda x: ad.clip(x, -1, 1), [-1.0, 0.5, 1.0, 2.0],
                                        device), [1, 1, 1, 0])


_KINKED = {
    "relu": (ad.relu, "relu"), "abs": (ad.abs, "abs"),
    "leaky_relu": (lambda x: ad.leaky_relu(x, 0.2),
                   lambda x: __import__("torch").nn.functional.leaky_relu(x, 0.2)),
    "elu": (lambda x: ad.elu(x, 1.5), lambda x: __import__("torch").nn.functional.elu(x, 1.5)),
    "clip": (lambda x: ad.clip(x, -1.0, 1.0), lambda x: x.clamp(-1.0, 1.0)),
}


@pytest.mark.parametrize("name", sorted(_KINKED))
def test_first_and_second_derivatives_at_the_kinks_match_torch(name, device):
    """At 0, -0, the clip bounds and next to them, the first and second derivatives are
    PyTorch's (elu''(0) was alpha: PyTorch takes the exp of x only where x < 0, so 0)."""
    torch = pytest.importorskip("torch")
    values = [0.0, -0.0, 1e-300, -1e-300, 1.0, -1.0, 2.0, -2.0]
    ours, theirs = _KINKED[name]
    theirs = getattr(torch, theirs) if isinstance(theirs, str) else theirs
    x = ad.tensor(values, dtype=ad.float64, device=device, requires_grad=True)
    (g,) = ad.grad(ours(x).sum(), x, create_graph=True)
    (h,) = ad.grad(g.sum(), x, allow_unused=True) if g.requires_grad else (None,)
    t = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    (tg,) = torch.autograd.grad(theirs(t).sum(), t, create_graph=True)
    th = torch.autograd.grad(tg.sum(), t)[0] if tg.requires_grad else torch.zeros_like(t)
    np.testing.assert_array_equal(g.numpy(), tg.detach().numpy())
    np.testing.assert_array_equal(np.zeros(len(values)) if h is None else h.numpy(),
                                  th.numpy(force=True))


def test_max_min_split_ties_evenly(device):
    assert_close(_grad(ad.max, [1.0, 3.0, 3.0, 2.0], device), [0, 0.5, 0.5, 0], device=device)
    assert_close(_grad(lambda x: x.min(axis=1), [[1.0, 1.0, 1.0], [0.0, 2.0, 5.0]],
                                     device), [[1 / 3] * 3, [1, 0, 0]], device=device)
    x = ad.tensor([2.0, 1.0, 3.0], dtype=ad.float64, device=device, requires_grad=True)
    y = ad.tensor([2.0, 2.0, 2.0], dtype=ad.float64, device=device, requires_grad=True)
    ad.maximum(x, y).sum().backward()
    assert_close(x.grad.numpy(), [0.5, 0, 1], device=device)
    assert_close(y.grad.numpy(), [0.5, 1, 0], device=device)


def test_max_ties_match_torch():
    torch = pytest.importorskip("torch")
    data = [[1.0, 4.0, 4.0], [2.0, 2.0, 2.0]]
    x = ad.tensor(data, requires_grad=True)
    ad.max(x, axis=1).sum().backward()
    t = torch.tensor(data, requires_grad=True)
    t.amax(dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy())


def test_prod_gradient_with_zeros(device):
    # d/dx_i prod(x) = product of the others, also where some x are zero.
    values = [2.0, 0.0, 3.0, 0.5]
    assert_close(_grad(ad.prod, values, device), [0, 3.0, 0, 0], device=device)
    values = [2.0, 0.0, 3.0, 0.0]
    assert_close(_grad(ad.prod, values, device), [0, 0, 0, 0], device=device)
    # Second derivatives: d2/dxi dxj prod(x) = product of the others but i, j (0 on diagonal).
    x = ad.tensor([2.0, 0.0, 3.0], dtype=ad.float64, device=device, requires_grad=True)
    (g,) = ad.grad(ad.prod(x), x, create_graph=True)
    hess = np.stack([ad.grad(g[i], x, retain_graph=True)[0].numpy() for i in range(3)])
    assert_close(hess, [[0, 3, 0], [3, 0, 2], [0, 2, 0]], device=device)


def test_stable_forms_do_not_overflow(device):
    big = ad.tensor([1000.0, -1000.0, 0.0], device=device)
    assert_close(ad.sigmoid(big).numpy(), [1, 0, 0.5], device=device)
    assert_close(ad.softplus(big).numpy(), [1000, 0, math.log(2)], rtol=1e-6, device=device)
    assert_close(ad.logsumexp(big).numpy(), 1000, rtol=1e-6, device=device)
    assert_close(ad.softmax(big).numpy(), [1, 0, 0], atol=1e-7, device=device)
    assert_close(ad.log_softmax(ad.tensor([1000.0, 0.0], device=device)).numpy(),
                 [0, -1000], atol=1e-4, device=device)
    assert_close(ad.elu(big).numpy(), [1000, -1, 0], device=device)
    x = ad.tensor([-1000.0, 1000.0], device=device, requires_grad=True)
    ad.sigmoid(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0])


def test_eigen_sigmoid_example():
    # Seed article 003: the sigmoid at 2 and its derivative.
    x = ad.tensor(2.0, dtype=ad.float64, requires_grad=True)
    y = ad.sigmoid(x)
    y.backward()
    assert y.item() == pytest.approx(0.8807970779778823, abs=1e-15)
    assert x.grad.item() == pytest.approx(0.10499358540350662, abs=1e-15)


def test_scipy_is_imported_at_the_first_erf_not_at_start_up(tmp_path):
    """import gpuad and a first gradient never import scipy.special (~0.15 s); erf does, and
    uses it. A stand-in scipy on the path reports when it is imported, and gives erf's values
    from math.erf, scaled by 2 so that its use shows."""
    (tmp_path / "scipy").mkdir()
    (tmp_path / "scipy" / "__init__.py").write_text("")
    (tmp_path / "scipy" / "special.py").write_text(
        "import math, numpy as np\nprint('scipy.special imported')\n"
        "def erf(x):\n"
        "    if np.asarray(x).dtype not in (np.float32, np.float64):\n"
        "        raise TypeError('erf: no loop for this type, as SciPy')\n"
        "    return 2 * np.vectorize(math.erf)(x)\n")
    code = ("import sys, gpuad as ad\n"
            "x = ad.tensor([0.5], requires_grad=True); (x * x).sum().backward()\n"
            "print('after first gradient:', 'scipy.special' in sys.modules)\n"
            "print(ad.erf(ad.tensor([0.5])).numpy()[0])\n"
            "from gpuad.backends.numpy_backend import NumpyBackend as B\n"
            "import numpy as np; print(B().erf(np.array([0.5], np.longdouble))[0])\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["after first gradient: False", "scipy.special imported"]
    assert float(out[2]) == pytest.approx(2 * math.erf(0.5), rel=1e-6)
    assert float(out[3]) == pytest.approx(math.erf(0.5), rel=1e-3)  # (no such loop: math.erf)


def test_erf_without_scipy_matches_math_erf(monkeypatch):
    from gpuad.backends import numpy_backend

    monkeypatch.setattr(numpy_backend, "_scipy_erf", None)
    values = np.array([-3.0, -0.5, 0.0, 1e-8, 0.7, 2.5, 6.0], dtype=np.float32)
    out = numpy_backend.NumpyBackend().erf(values)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [math.erf(v) for v in values.astype(np.float64)], rtol=1e-6)


# ---- bad input -----------------------------------------------------------------------------

def test_broadcast_error_names_op_and_shapes():
    a, b = ad.ones(2, 3), ad.ones(4)
    with pytest.raises(ValueError, match=r"mul cannot broadcast shapes \(2, 3\) and \(4,\)"):
        a * b


def test_matmul_error_names_shapes():
    with pytest.raises(ValueError, match=r"matmul shape mismatch: \(2, 3\) @ \(2, 3\)"):
        ad.ones(2, 3) @ ad.ones(2, 3)


def test_reshape_and_axis_errors():
    with pytest.raises(ValueError, match="reshape cannot turn shape"):
        ad.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match="sum: axis 2 is out of range"):
        ad.ones(2, 3).sum(axis=2)
    with pytest.raises(ValueError, match="squeeze: cannot remove axis 0"):
        ad.squeeze(ad.ones(2, 3), 0)
    with pytest.raises(ValueError, match="split cannot divide"):
        ad.split(ad.ones(5), 2)


def test_unsupported_norm_order():
    with pytest.raises(ValueError, match="ord='nuc' is not supported"):
        ad.norm(ad.ones(2, 2), ord="nuc")


def test_integer_results_never_require_grad():
    x = ad.tensor([1.5, -0.5], requires_grad=True)
    assert not ad.argmax(x).requires_grad
    assert not (x > 0).requires_grad
    assert not x.astype(ad.int64).requires_grad
    assert (x > 0).dtype == ad.bool_
