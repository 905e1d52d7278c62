"""What the differential fuzz against PyTorch found: ``PINNED`` keeps one reproducer for
each family of bugs it or issue 15 found (sections 1-3), run against PyTorch by
``test_pinned_reproducer``; and the regression tests of what it found and fixed.
"""
import warnings

import numpy as np
import pytest

import gpuad as ad

torch = pytest.importorskip("torch")

from fuzz_torch_ops import (  # noqa: E402  (needs torch first)
    Table,
    _check_no_sharing,
    both_raise_or_neither,
    compare,
    use_torch,
)

pytestmark = pytest.mark.usefixtures("cpu_default")

use_torch(torch)
T = Table()


# ---- the families of bugs found: one reproducer each -------------------------------------------

def _mk(m, values, dtype="float64", rg=False):
    if m is ad:
        return ad.tensor(np.array(values, dtype=dtype), requires_grad=rg)
    return torch.tensor(np.array(values, dtype=dtype), requires_grad=rg)


def _grad_twice(m):
    a, b, c = _mk(m, [1.0, 2.0], rg=True), _mk(m, [1.0, 2.0], rg=True), _mk(m, [3.0, 5.0])
    ((a + b) * c).sum().backward(create_graph=True)
    ((a + b) * c).sum().backward()
    x, g = _mk(m, [1.0, 2.0], rg=True), _mk(m, [1.0, 1.0])
    y = x * 1
    y.backward(g, create_graph=True, retain_graph=True)
    y.backward(g)
    return [a.grad, b.grad, x.grad, g]


def _element_view(m):
    x = _mk(m, [[1.0, 2.0], [3.0, 4.0]], rg=True)
    y = x * 1
    y[1, 1].mul_(10)
    y[0][1].add_(5)
    y.sum().backward()
    return [y, x.grad]


def _empty_view(m):
    x, u = _mk(m, [1.5, 2.0], rg=True), _mk(m, 0.5, rg=True)
    y = x * 1
    y[0:0].add_(u * 1)
    y.sum().backward()
    return [y, u.grad]


def _div16(m):
    x = _mk(m, [100.0, 200.0], "float16", rg=True)
    (x / x.sum()).backward(_mk(m, [1.0, 0.0], "float16"))
    return [x.grad]


def _pow_tiny(m):
    x, z = _mk(m, 5e-324, rg=True), _mk(m, 5e-324, rg=True)
    (x ** z).backward(_mk(m, 0.5))
    return [x.grad, z.grad]


def _norm_huge(m):
    x = _mk(m, 1e300, rg=True)
    n = ad.norm(x) if m is ad else torch.linalg.vector_norm(x)
    n.backward()
    z = _mk(m, [0.0, 0.0, 3e38], "float32")
    return [n, x.grad, ad.std(z) if m is ad else torch.std(z, correction=0)]


def _var_one(m):
    x = _mk(m, [1.0], rg=True)
    v = ad.var(x, ddof=1) if m is ad else torch.var(x, correction=1)
    v.backward()
    return [v, x.grad]


def _empty_axes(m):
    x = _mk(m, np.zeros((2, 0)), rg=True)
    s = ad.softmax(x, axis=1) if m is ad else torch.softmax(x, dim=1)
    z = _mk(m, np.zeros((0, 3)), rg=True)
    mx = ad.max(z, axis=1) if m is ad else torch.amax(z, dim=1)
    (s.sum() + mx.sum()).backward()
    return [s, mx, x.grad, z.grad]


def _nan_max(m):
    a, b = _mk(m, [float("nan"), 1.0], rg=True), _mk(m, [1.0, 2.0], rg=True)
    r = _mk(m, [float("nan"), -1.0], rg=True)
    (m.maximum(a, b).sum() + m.relu(r).sum()).backward()
    return [a.grad, b.grad, r.grad]


def _relu_pole(m):
    x = _mk(m, [-1.0, 2.0], rg=True)
    (2.0 / m.relu(x)).sum().backward()
    return [x.grad]


def _log_softmax_large(m):
    x = _mk(m, [3e5, 3e5], "float32")
    return [ad.log_softmax(x, axis=-1) if m is ad else torch.log_softmax(x, -1)]


def _copy_whole(m):
    x, u = _mk(m, [1.5, 2.0], rg=True), _mk(m, [0.5, 0.25], rg=True)
    y = x * 1
    y.copy_(u * 1)
    y.sum().backward()
    x2 = _mk(m, [1.5, 2.0], rg=True)
    y2 = x2 * 1
    y2.copy_(_mk(m, [0.5, 0.25]))
    y2.sum().backward()
    return [x.grad, u.grad, x2.grad]


def _prod_zeros_huge(m):
    x = _mk(m, [0.0, 0.0, 1e300, 1e300], rg=True)
    m.prod(x).backward()
    return [x.grad]


def _prod_empty_axes(m):
    x = _mk(m, np.zeros((2, 0, 3)), rg=True)
    p = ad.prod(x, axis=(0, 2)) if m is ad else torch.prod(torch.prod(x, 2), 0)
    p.sum().backward()
    return [p, x.grad]


PINNED = {  # each family's reproducer, run in both frameworks
    "create_graph_shared_grad": _grad_twice, "element_view": _element_view,
    "empty_view_inplace": _empty_view, "div_grad_overflow": _div16,
    "pow_grad_overflow": _pow_tiny, "square_overflow": _norm_huge, "var_zero_dof": _var_one,
    "empty_reductions": _empty_axes, "nan_grads": _nan_max, "relu_nonfinite_grad": _relu_pole,
    "log_softmax_large": _log_softmax_large, "copy_disconnects": _copy_whole,
    "prod_grad_overflow": _prod_zeros_huge, "empty_prod_axes": _prod_empty_axes,
}


@pytest.mark.parametrize("family", sorted(PINNED))
def test_pinned_reproducer(family):
    """Each family's reproducer against PyTorch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, want = both_raise_or_neither(family, lambda: PINNED[family](ad),
                                          lambda: PINNED[family](torch))
    for k, (a, t) in enumerate(zip(got or [], want or [])):
        compare(f"{family}: value {k}", a, t)
    if family == "create_graph_shared_grad":
        _check_no_sharing([(f"value {k}", v) for k, v in enumerate(got)])


# ---- regression tests for what this fuzz found and fixed ----------------------------------------

@pytest.mark.parametrize("exponent", [2.0, 3, 0.5])
def test_pow_in_place_where_nothing_records(exponent):
    """pow_ on a tensor that records nothing wrote through NumPy's ``out=``, which the CPU
    backend's power did not take (it raised); the cube takes the a * a * a path."""
    base = np.array([1.5, 0.25, 4.0])
    x = ad.tensor(base.copy())
    view = x[1:]
    assert x.pow_(exponent) is x
    np.testing.assert_allclose(x.numpy(), base ** exponent, rtol=1e-6)
    w = ad.tensor(base.copy(), requires_grad=True)
    with ad.no_grad():
        w **= ad.tensor([2.0, 3.0, 0.5])
    np.testing.assert_allclose(w.numpy(), base ** np.array([2.0, 3.0, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(view.numpy(), x.numpy()[1:])
