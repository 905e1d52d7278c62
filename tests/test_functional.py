"""jvp, vjp, jacobian, hessian and hvp (SPEC section 6): values against analytic formulas,
finite differences and PyTorch; argument handling and errors."""
import numpy as np
import pytest
from tolerance import assert_close
from transform_refs import F64, _fd_jacobian, _NoJvp, _t

import gpuad as ad

# ---- the seed article's examples ----------------------------------------------------------

def test_eigen_sigmoid_at_two(device):
    """Eigen's AutoDiffScalar example: sigmoid and its derivative at 2 in one forward pass."""
    y, dy = ad.jvp(ad.sigmoid, _t(2.0, device), _t(1.0, device))
    assert y.item() == pytest.approx(0.8807970779778823, rel=1e-15)
    assert dy.item() == pytest.approx(0.10499358540350662, rel=1e-15)


def test_eigen_derivative_vector_is_a_jacobian(device):
    """A vector of derivatives per value: one batched pass gives the whole gradient."""
    x = _t([0.5, -1.0, 2.0], device)

    def f(x):
        return ad.sigmoid(x[0] * x[1] + x[2])

    y, grad = ad.jvp(f, x, ad.eye(3, dtype=F64, device=device), batched=True)
    z = 0.5 * -1.0 + 2.0
    s = 1 / (1 + np.exp(-z))
    assert_close(grad.numpy(), s * (1 - s) * np.array([-1.0, 0.5, 1.0]),
                 rtol=1e-14, device=device)


def _dense(x, w):
    """The seed article's custom layer without bias: sin(x @ W)."""
    return ad.sin(x @ w)


def test_custom_dense_layer_jacobian_wrt_weights(device):
    rng = np.random.default_rng(0)
    x = _t([[-1.0, 0.0, 1.0], [2.0, 3.0, 4.0], [-1.0, -5.0, 2.0]], device)
    w = _t(rng.standard_normal((3, 2)) * 0.3, device)
    fwd = ad.jacobian(lambda w: _dense(x, w), w, mode="forward")
    rev = ad.jacobian(lambda w: _dense(x, w), w, mode="reverse")
    assert fwd.shape == rev.shape == (3, 2, 3, 2)
    assert_close(fwd.numpy(), rev.numpy(), rtol=1e-13, atol=1e-14, device=device)
    xn, wn = x.numpy(), w.numpy()
    assert_close(fwd.numpy(), _fd_jacobian(lambda w: np.sin(xn @ w), wn),
                 rtol=1e-6, atol=1e-8, device=device)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # (torch.func's own imports)
def test_custom_dense_layer_against_torch_func():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    xn, wn = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    ours = ad.jacobian(lambda w: _dense(_t(xn, "cpu"), w), _t(wn, "cpu"), mode="forward")
    theirs = torch.func.jacfwd(lambda w: torch.sin(torch.tensor(xn) @ w))(torch.tensor(wn))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-13, atol=1e-14)


# ---- jacobian -----------------------------------------------------------------------------

def _two_in_two_out(a, b):
    return ad.tanh(a[:, None] * b), (a ** 2).sum() * b


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_jacobian_several_arguments_and_outputs(mode, device):
    rng = np.random.default_rng(2)
    an, bn = rng.standard_normal(3), rng.standard_normal(2)
    jac = ad.jacobian(_two_in_two_out, (_t(an, device), _t(bn, device)), mode=mode)
    assert isinstance(jac, tuple) and len(jac) == 2 and all(len(row) == 2 for row in jac)
    refs = [
        (_fd_jacobian(lambda a: np.tanh(a[:, None] * bn), an),
         _fd_jacobian(lambda b: np.tanh(an[:, None] * b), bn)),
        (_fd_jacobian(lambda a: (a ** 2).sum() * bn, an),
         _fd_jacobian(lambda b: (an ** 2).sum() * b, bn)),
    ]
    for row, ref_row in zip(jac, refs):
        for j, ref in zip(row, ref_row):
            assert j.shape == ref.shape and j.device == device
            assert_close(j.numpy(), ref, rtol=1e-6, atol=1e-8, device=device)


def test_jacobian_argnums(device):
    a, b = _t([1.0, 2.0], device), _t([3.0, 4.0, 5.0], device)
    j1 = ad.jacobian(lambda a, b: a[:, None] * b, (a, b), argnums=1)
    assert_close(j1.numpy(), _fd_jacobian(lambda b: a.numpy()[:, None] * b,
                                                        b.numpy()), rtol=1e-7, device=device)
    both = ad.jacobian(lambda a, b: a[:, None] * b, (a, b), argnums=(1, 0), mode="forward")
    assert_close(both[0].numpy(), j1.numpy(), device=device)
    assert both[1].shape == (2, 3, 2)
    with pytest.raises(TypeError, match="argument 1 is a float"):
        ad.jacobian(lambda a, s: a * s, (a, 2.0))
    assert ad.jacobian(lambda a, s: a * s, (a, 2.0), argnums=0).shape == (2, 2)


def test_auto_mode_picks_forward_for_few_inputs(device):
    """Auto picks forward when the input is smaller than the output: it evaluates f a second
    time, in forward mode. A custom op without a JVP rule sends it back to reverse mode."""
    calls = []

    def f(x):
        calls.append(1)
        return x[:, None] * ad.arange(5.0, dtype=F64, device=device)

    wide = _t(np.ones(2), device)
    ad.jacobian(f, wide)
    assert len(calls) == 2
    calls.clear()
    long = _t(np.arange(5.0), device)
    ad.jacobian(lambda x: f(x).sum(axis=1), long)
    assert len(calls) == 1
    jac = ad.jacobian(lambda x: _NoJvp.apply(x[:, None] * ad.ones(5, dtype=F64,
                                                                 device=device)), wide)
    assert_close(jac.numpy(), np.broadcast_to(2 * np.eye(2)[:, None, :],
                                                            (2, 5, 2)), device=device)
    with pytest.raises(ad.ForwardModeError, match="_NoJvp"):
        ad.jacobian(lambda x: _NoJvp.apply(x), wide, mode="forward")


def test_reverse_jacobian_through_custom_rules_goes_row_by_row(device):
    x = _t([1.0, 2.0, 3.0], device)
    jac = ad.jacobian(lambda x: _NoJvp.apply(x) * x, x, mode="reverse")
    assert_close(jac.numpy(), np.diag([4.0, 8.0, 12.0]), device=device)


def test_jacobian_of_constant_output_is_zero(device):
    x = _t([1.0, 2.0], device)
    for mode in ("forward", "reverse"):
        jac = ad.jacobian(lambda x: ad.ones(3, dtype=F64, device=device), x, mode=mode)
        assert jac.shape == (3, 2) and not jac.numpy().any()


def test_jacobian_matches_tape_jacobian(device):
    x = _t([0.3, -0.7, 1.1], device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.softmax(x) * ad.exp(x[0])
    assert_close(ad.jacobian(lambda x: ad.softmax(x) * ad.exp(x[0]), x).numpy(),
                 tape.jacobian(y, x).numpy(), rtol=1e-13, atol=1e-15, device=device)


# ---- hessian and hvp ---------------------------------------------------------------------

def test_hessian_of_quadratic_form_is_analytic(device):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal(4)
    at, bt = _t(a, device), _t(b, device)
    x = _t(rng.standard_normal(4), device)
    h = ad.hessian(lambda x: x @ at @ x + bt @ x, x)
    assert_close(h.numpy(), a + a.T, rtol=1e-13, atol=1e-13, device=device)


def _scalar(x, y):
    return (ad.sin(x) ** 3).sum() + ad.logsumexp(x * y[0]) + (x[:2] * y).sum() ** 2


def _grad_np(x, y, wrt, device):
    xs = [_t(x, device, requires_grad=True), _t(y, device, requires_grad=True)]
    return ad.grad(_scalar(*xs), xs[wrt])[0].numpy()


def test_hessian_against_differences_of_gradients(device):
    rng = np.random.default_rng(4)
    xn, yn = rng.standard_normal(3), rng.standard_normal(2)
    h = ad.hessian(_scalar, (_t(xn, device), _t(yn, device)))
    for i in range(2):
        for j in range(2):
            def grad_i(v, j=j, i=i):
                args = [xn, yn]
                args[j] = v
                return _grad_np(*args, i, device)
            ref = _fd_jacobian(grad_i, [xn, yn][j])
            assert h[i][j].shape == ref.shape
            assert_close(h[i][j].numpy(), ref, rtol=1e-6, atol=1e-7, device=device)
    assert_close(h[0][1].numpy(), np.swapaxes(h[1][0].numpy(), 0, 1),
                 rtol=1e-12, device=device)


def test_hessian_matrix_argument_shape(device):
    x = _t(np.arange(6.0).reshape(2, 3) / 5, device)
    h = ad.hessian(lambda x: (x ** 3).sum(), x)
    assert h.shape == (2, 3, 2, 3)
    assert_close(h.numpy().reshape(6, 6), np.diag(6 * x.numpy().ravel()),
                 atol=1e-14, device=device)


def test_hvp_equals_hessian_times_vector(device):
    rng = np.random.default_rng(5)
    x, v = _t(rng.standard_normal(3), device), _t(rng.standard_normal(3), device)

    def f(x):
        return (ad.sin(x) ** 3).sum() + ad.logsumexp(x)

    value, hv = ad.hvp(f, x, v)
    assert value.item() == pytest.approx(f(x).item())
    assert_close(hv.numpy(), ad.hessian(f, x).numpy() @ v.numpy(), rtol=1e-12, device=device)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_second_order_against_torch():
    torch = pytest.importorskip("torch")
    xn = np.random.default_rng(6).standard_normal(5)
    ours = ad.hessian(lambda x: (ad.sin(x) ** 3).sum() * ad.norm(x), _t(xn, "cpu"))
    theirs = torch.func.hessian(lambda x: (torch.sin(x) ** 3).sum() * torch.linalg.norm(x))(
        torch.tensor(xn))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12, atol=1e-13)


def test_hessian_needs_a_scalar(device):
    with pytest.raises(ValueError, match=r"hessian: the function must return a scalar"):
        ad.hessian(lambda x: x * 2, _t([1.0, 2.0], device))


# ---- vjp -------------------------------------------------------------------------------

def test_vjp_several_outputs_and_argnums(device):
    a, b = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    out, vjp_fn = ad.vjp(lambda a, b: (a * b, (a ** 2).sum()), a, b)
    ga, gb = vjp_fn((_t([1.0, 1.0], device), _t(2.0, device)))
    assert_close(ga.numpy(), [3.0 + 4.0, 4.0 + 8.0], device=device)
    assert_close(gb.numpy(), [1.0, 2.0], device=device)
    _, vjp_b = ad.vjp(lambda a, b: a * b, a, b, argnums=1)
    (gb,) = vjp_b(_t([1.0, -1.0], device))
    assert_close(gb.numpy(), [1.0, -2.0], device=device)
    assert_close(vjp_b(_t([1.0, -1.0], device))[0].numpy(), [1.0, -2.0], device=device)
    with pytest.raises(ValueError, match="2 cotangents for 1 outputs"):
        vjp_b((_t([1.0], device), _t([1.0], device)))


# ---- argument errors and edge cases ---------------------------------------------------------

def test_argument_errors(device):
    x = _t([1.0, 2.0], device)
    with pytest.raises(ValueError, match=r"tangent for argument 0 has shape \(3,\), expected "
                                         r"\(2,\)"):
        ad.jvp(ad.exp, x, _t([1.0, 2.0, 3.0], device))
    with pytest.raises(ValueError, match="1 tangents for 2"):
        ad.jvp(lambda a, b: a * b, (x, x), (x,))
    with pytest.raises(TypeError, match="argument 0 is int64"):
        ad.jvp(lambda a: a, ad.tensor([1, 2], device=device), ad.tensor([1, 2], device=device))
    with pytest.raises(ValueError, match="mode must be one of"):
        ad.jacobian(ad.exp, x, mode="sideways")
    with pytest.raises(ValueError, match="argnums names argument 3"):
        ad.jacobian(ad.exp, (x,), argnums=3)
    with pytest.raises(ValueError, match="leading axis of directions"):
        ad.jvp(ad.exp, x, x, batched=True)


def test_tape_jacobian_falls_back_to_rows_for_user_code(device):
    """Custom rules and hooks are user code: the tape's Jacobian then loops over rows, and is
    right whatever that code does (here: it leaves gpuad through NumPy)."""

    class ViaNumpy(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return ad.tensor(g.numpy() * 2, device=g.device)

    x = _t([1.0, 2.0, 3.0], device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ViaNumpy.apply(x) * x
        z = x * 3
    assert_close(tape.jacobian(y, x).numpy(), np.diag([4.0, 8.0, 12.0]), device=device)

    def hooked(h):
        w = h * 1
        w.register_hook(lambda g: ad.tensor(g.numpy() * 10, device=g.device))
        return w ** 2

    h = _t([1.0, 2.0], device)
    assert_close(ad.jacobian(hooked, h, mode="reverse").numpy(),
                 np.diag([20.0, 40.0]), device=device)
    assert_close(tape.jacobian(z, x).numpy(), 3 * np.eye(3), device=device)


def test_one_tensor_at_several_places(device):
    """A gradient or output that is one tensor at two places has its tangent at both."""
    a, b = _t([1.0, 2.0], device), _t([3.0, 4.0], device)
    ja, jb = ad.jacobian(lambda a, b: a + b, (a, b))
    assert_close(ja.numpy(), np.eye(2), device=device)
    assert_close(jb.numpy(), np.eye(2), device=device)
    h = ad.hessian(lambda a, b: ((a + b) ** 2).sum(), (a, b))
    for row in h:
        for block in row:
            assert_close(block.numpy(), 2 * np.eye(2), device=device)
    _, (t1, t2) = ad.jvp(lambda a: (a * 2,) * 2, (a,), (ad.ones_like(a),))
    assert_close(t1.numpy(), [2.0, 2.0], device=device)
    assert_close(t2.numpy(), [2.0, 2.0], device=device)


def test_forward_jacobian_of_integer_output_is_zero(device):
    x = _t([1.0, 3.0, 2.0], device)
    j, k = ad.jacobian(lambda a: (a * 2, ad.argmax(a)), x, mode="forward")
    assert k.shape == (3,) and not k.numpy().any()
    assert_close(j.numpy(), 2 * np.eye(3), device=device)


def test_empty_contraction(device):
    z = ad.zeros((2, 0), dtype=F64, device=device)
    _, t = ad.jvp(lambda a: a @ ad.ones((0, 3), dtype=F64, device=device), z, z)
    assert t.shape == (2, 3) and not t.numpy().any()
    ja, jb = ad.jacobian(lambda a, b: a @ b, (ad.zeros((0, 4), dtype=F64, device=device),
                                              ad.ones((4, 3), dtype=F64, device=device)),
                         mode="reverse")
    assert ja.shape == (0, 3, 0, 4) and jb.shape == (0, 3, 4, 3)


def test_hvp_is_differentiable_in_v(device):
    x = _t([1.0, 2.0, 3.0], device)
    v = _t([1.0, 0.0, 2.0], device, requires_grad=True)
    _, hv = ad.hvp(lambda a: (a ** 3).sum(), x, v)
    assert_close(ad.grad(hv.sum(), v)[0].numpy(), 6 * x.numpy(), device=device)


def test_softmax_of_a_scalar(device):
    x = _t(0.7, device, requires_grad=True)
    assert ad.softmax(x).item() == 1.0 and ad.log_softmax(x).item() == 0.0
    (g,) = ad.grad(ad.softmax(x), x)
    assert g.item() == 0.0


def test_norm_and_std_at_their_edges(device):
    _, t = ad.jvp(lambda a: ad.norm(a, ord=0.5), _t([0.0, 1.0, 2.0], device),
                  _t([0.0, 1.0, 0.0], device))
    assert t.item() == pytest.approx(1 + np.sqrt(2), rel=1e-13)
    x = _t([0.0, 1.0, 2.0], device, requires_grad=True)
    (g,) = ad.grad(ad.norm(x, ord=0.5), x)
    assert_close(g.numpy(), [0.0, 1 + np.sqrt(2), (1 + np.sqrt(2)) / np.sqrt(2)],
                 rtol=1e-13, device=device)
    _, t = ad.jvp(ad.std, ad.ones(3, dtype=F64, device=device), _t([1.0, 0.0, 0.0], device))
    assert t.item() == 0.0
    c = ad.ones(3, dtype=F64, device=device, requires_grad=True)
    (g,) = ad.grad(ad.std(c), c)
    assert not g.numpy().any()


def test_reverse_jacobian_stays_batched_beside_user_code(device):
    """User code off the path to the inputs does not force one backward pass per row."""
    import gpuad.autograd.functional as fn

    @ad.custom_gradient
    def ident(a):
        return a * 1.0, lambda g: g

    w = ident(_t(np.eye(3), device, requires_grad=True))
    calls = []
    rows = fn._jacobian_rows
    fn._jacobian_rows = lambda *a: calls.append(1) or rows(*a)
    try:
        jac = ad.jacobian(lambda a: w @ ad.sin(a), _t([0.1, 0.2, 0.3], device), mode="reverse")
        assert not calls
        ad.jacobian(lambda a: ident(ad.sin(a)), _t([0.1, 0.2, 0.3], device), mode="reverse")
        assert calls
    finally:
        fn._jacobian_rows = rows
    assert_close(jac.numpy(), np.diag(np.cos([0.1, 0.2, 0.3])), rtol=1e-14, device=device)


def test_results_are_writable(device):
    x = _t([1.0, 2.0, 3.0], device)
    _, t = ad.jvp(lambda a: a + ad.zeros((2, 3), dtype=F64, device=device), x, ad.ones_like(x))
    t.add_(1.0)
    assert_close(t.numpy(), np.full((2, 3), 2.0), device=device)


def test_jvp_keeps_only_what_backward_needs(device):
    w = _t([1.0, 2.0], device, requires_grad=True)

    def f(c):
        y = w * 2.0
        return (y * c).sum(), y

    (z, y), _ = ad.jvp(f, _t([5.0, 7.0], device), ad.ones(2, dtype=F64, device=device))
    y.add_(1.0)  # y was saved for the JVP only, not for z's backward (c needs no gradient)
    z.backward()
    assert_close(w.grad.numpy(), [10.0, 14.0], device=device)


def test_second_derivatives_at_kinks_follow_pytorch(device):
    h = ad.hessian(ad.norm, ad.zeros(3, dtype=F64, device=device))
    assert not h.numpy().any()
    h = ad.hessian(lambda a: ad.std(a, ddof=1), ad.ones(3, dtype=F64, device=device))
    assert not h.numpy().any()


def test_scalar_tangents_and_numpy_argnums(device):
    _, t = ad.jvp(ad.sin, _t(1.0, device), 1.0)
    assert t.item() == pytest.approx(np.cos(1.0))
    j = ad.jacobian(lambda a, b: a * b, (_t([1.0], device), _t([2.0], device)),
                    argnums=np.int64(1))
    assert j.item() == 1.0
