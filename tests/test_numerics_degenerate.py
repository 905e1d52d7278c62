"""Derivative rules at the numeric edges (issue 15, section 3), degenerate inputs: no exception
where PyTorch gives nan (var and std with no degrees of freedom), empty inputs NumPy and
PyTorch accept (softmax family, max/min/norm(inf), tensordot/dot, prod over empty axes), nan
inputs and inf or nan upstream gradients getting the gradient PyTorch gives them (relu, elu,
maximum/minimum, max/min reductions), and prod next to zeros. Each against analytic values or
PyTorch (float64), in reverse mode (plain and create_graph, which take different CPU paths), in
forward mode, and on CUDA: real CUDA where it is usable, else the CuPy stand-in
(tests/fake_cupy)."""
import fractions
import functools
import itertools
import math

import numpy as np
import pytest
from fake_cupy import cuda_or_stand_in
from numerics_refs import NAN, _grads, _same, _torch_grads

import gpuad as ad

# (A default device left unresolved would resolve to the stand-in GPU after a test's
# ``cuda_or_stand_in`` block, and stay so for the tests after it.)
pytestmark = pytest.mark.usefixtures("cpu_default")


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
