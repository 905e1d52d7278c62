"""jvp, vjp, jacobian, hessian and hvp (SPEC section 6) composed with each other, with
reverse mode, tapes, custom gradients (with and without JVP rules), grad mode and in-place ops."""
import numpy as np
import pytest
from tolerance import assert_close
from transform_refs import F64, _fd_jacobian, _NoJvp, _t

import gpuad as ad


def _f(x):
    return (ad.sin(x) * ad.exp(x[0])).sum()


def test_reverse_over_forward(device):
    """The gradient of a JVP's tangent is the Hessian times the direction."""
    x = _t([0.2, -0.4, 0.9], device, requires_grad=True)
    v = _t([1.0, 0.5, -2.0], device)
    _, jv = ad.jvp(_f, x, v)
    (hv,) = ad.grad(jv, x)
    assert_close(hv.numpy(), ad.hessian(_f, x.detach()).numpy() @ v.numpy(),
                 rtol=1e-12, device=device)
    y = _t([0.3, 0.1, 0.2], device, requires_grad=True)  # the tangent itself, differentiated
    _, jv = ad.jvp(_f, _t([0.2, -0.4, 0.9], device), y)
    (g,) = ad.grad(jv, y)  # J y is linear in y: its gradient is the gradient of f
    x0 = _t([0.2, -0.4, 0.9], device, requires_grad=True)
    assert_close(g.numpy(), ad.grad(_f(x0), x0)[0].numpy(), rtol=1e-14, device=device)


def test_forward_over_forward(device):
    """Nested jvp gives u^T H v without confusing the two levels' tangents."""
    x = _t([0.2, -0.4, 0.9], device)
    u, v = _t([1.0, 0.0, 2.0], device), _t([0.5, -1.0, 1.0], device)
    _, uhv = ad.jvp(lambda x: ad.jvp(_f, x, v)[1], x, u)
    ref = u.numpy() @ ad.hessian(_f, x).numpy() @ v.numpy()
    assert uhv.item() == pytest.approx(ref, rel=1e-12)
    # the same point and direction at both levels: the second derivative along v
    _, vhv = ad.jvp(lambda x: ad.jvp(lambda y: ad.sin(y) * y, x, v)[1], x, v)
    xn, vn = x.numpy(), v.numpy()
    assert_close(vhv.numpy(), (2 * np.cos(xn) - xn * np.sin(xn)) * vn * vn,
                 rtol=1e-12, device=device)


def test_forward_over_gradient_tape(device):
    x = _t([0.2, -0.4, 0.9], device)
    v = _t([1.0, 0.5, -2.0], device)

    def grad_by_tape(x):
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = _f(x)
        return tape.gradient(y, x)

    _, hv = ad.jvp(grad_by_tape, x, v)
    assert_close(hv.numpy(), ad.hessian(_f, x).numpy() @ v.numpy(), rtol=1e-12, device=device)


def test_tape_over_jvp(device):
    x = ad.Variable([0.2, -0.4, 0.9], dtype=F64, device=device)
    v = _t([1.0, 0.5, -2.0], device)
    with ad.GradientTape() as tape:
        _, jv = ad.jvp(_f, x, v)
    hv = tape.gradient(jv, x)
    assert_close(hv.numpy(), ad.hessian(_f, _t(x.numpy(), device)).numpy()
                 @ v.numpy(), rtol=1e-12, device=device)


def test_hessian_of_hessian_input_requires_grad(device):
    """Third order: the Hessian stays differentiable in x when x requires grad."""
    x = _t([0.3, 0.7], device, requires_grad=True)
    h = ad.hessian(lambda x: (x ** 4).sum(), x)
    (g,) = ad.grad(h.sum(), x)
    assert_close(g.numpy(), 24 * x.numpy(), rtol=1e-13, device=device)


def test_forward_mode_ignores_grad_mode(device):
    x = _t([1.0, 2.0], device)

    def f(x):
        with ad.no_grad():
            return ad.exp(x) * x

    _, t = ad.jvp(f, x, _t([1.0, 1.0], device))
    assert_close(t.numpy(), np.exp(x.numpy()) * (x.numpy() + 1), rtol=1e-14, device=device)


def test_in_place_ops_carry_tangents(device):
    def f(x):
        y = x * 1
        y[0] = x[1] ** 2
        y += x
        y.mul_(ad.sin(x))
        z = y[1:]
        z.add_(x[:2] * 3)  # through a view: the base sees the change
        return y

    xn = np.array([0.5, -1.5, 2.0])

    def ref(x):
        y = x.copy()
        y[0] = x[1] ** 2
        y = (y + x) * np.sin(x)
        y[1:] += x[:2] * 3
        return y

    x = _t(xn, device)
    jac = ad.jacobian(f, x, mode="forward")
    assert_close(jac.numpy(), _fd_jacobian(ref, xn), rtol=1e-6, atol=1e-8, device=device)
    assert_close(ad.jacobian(f, x, mode="reverse").numpy(), jac.numpy(),
                 rtol=1e-13, atol=1e-14, device=device)


def test_results_do_not_keep_tangents(device):
    x = _t([1.0, 2.0], device)
    out, _ = ad.jvp(lambda x: ad.exp(x), x, _t([1.0, 0.0], device))
    assert not getattr(out, "_tan", None)
    assert not getattr(x, "_tan", None)
    _, t2 = ad.jvp(lambda x: out * x, x, _t([0.0, 1.0], device))  # out is a constant now
    assert_close(t2.numpy(), [0.0, np.exp(2.0)], device=device)


def test_dtype_and_device_kept(device):
    x = ad.tensor([1.0, 2.0], dtype=ad.float32, device=device)
    y, t = ad.jvp(lambda x: ad.sigmoid(x) * 2.0, x, ad.ones(2, dtype=ad.float32, device=device))
    assert t.dtype == ad.float32 and t.device == device
    j = ad.jacobian(lambda x: x * 2.0, x)
    assert j.dtype == ad.float32 and j.device == device


# ---- custom gradients under forward mode ---------------------------------------------------

def test_custom_gradient_without_jvp_rule_names_it(device):
    @ad.custom_gradient
    def clip_gradient(x):
        return x * 1.0, lambda g: ad.clip(g, -0.5, 0.5)

    x = _t([1.0, 2.0], device)
    with pytest.raises(ad.ForwardModeError, match="clip_gradient.*no JVP rule.*defjvp"):
        ad.jvp(clip_gradient, x, x)
    assert ad.jacobian(clip_gradient, x, mode="reverse").shape == (2, 2)  # reverse still works


def test_custom_gradient_with_jvp_rule(device):
    @ad.custom_gradient
    def log1pexp(x):
        e = ad.exp(x)
        return ad.log(1 + e), lambda g: g * (1 - 1 / (1 + e))

    log1pexp.defjvp(lambda primals, tangents: tangents[0] * ad.sigmoid(primals[0]))
    x = _t([0.0, 1.0, -3.0], device)
    v = _t([1.0, 2.0, -1.0], device)
    _, t = ad.jvp(log1pexp, x, v)
    sig = 1 / (1 + np.exp(-x.numpy()))
    assert_close(t.numpy(), sig * v.numpy(), rtol=1e-14, device=device)
    fwd = ad.jacobian(log1pexp, x, mode="forward")
    assert_close(fwd.numpy(), ad.jacobian(log1pexp, x, mode="reverse").numpy(),
                 rtol=1e-14, device=device)


class _Scale(ad.Function):
    """Two outputs: x * 3 and x * y; jvp from save_for_forward."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        ctx.save_for_forward(x, y)
        return x * 3, x * y

    @staticmethod
    def backward(ctx, g1, g2):
        x, y = ctx.saved_tensors
        return g1 * 3 + g2 * y, g2 * x

    @staticmethod
    def jvp(ctx, tx, ty):
        x, y = ctx.saved_tensors
        return tx * 3, tx * y + x * ty


def test_function_jvp_several_outputs(device):
    x, y = _t([1.0, 2.0], device), _t([3.0, -1.0], device)
    (a, b), (ta, tb) = ad.jvp(_Scale.apply, (x, y), (_t([1.0, 0.0], device),
                                                      _t([0.0, 1.0], device)))
    assert_close(ta.numpy(), [3.0, 0.0], device=device)
    assert_close(tb.numpy(), [3.0 * 1.0, 2.0], device=device)
    fwd = ad.jacobian(_Scale.apply, (x, y), mode="forward")
    rev = ad.jacobian(_Scale.apply, (x, y), mode="reverse")
    for rf, rr in zip(fwd, rev):
        for jf, jr in zip(rf, rr):
            assert_close(jf.numpy(), jr.numpy(), rtol=1e-14, device=device)


def test_function_jvp_wrong_count(device):
    class Bad(_NoJvp):
        @staticmethod
        def jvp(ctx, t):
            return t, t

    with pytest.raises(ad.CustomGradientError, match="Bad.jvp returned 2 tangents for 1"):
        ad.jvp(Bad.apply, _t([1.0], device), _t([1.0], device))


def test_transforms_inside_custom_functions(device):
    x = _t([1.0, 2.0, 3.0], device)

    @ad.custom_gradient
    def f(a):
        with ad.GradientTape() as t:
            t.watch(a)
            y = a ** 2
        return t.jacobian(y, a).sum(axis=0), lambda g: g * 2

    assert_close(f(x).numpy(), [2.0, 4.0, 6.0], device=device)

    class F(ad.Function):
        @staticmethod
        def forward(ctx, a):
            return ad.jvp(ad.sin, a, ad.ones_like(a))[1] + ad.hessian(
                lambda a: (a ** 3).sum(), a).sum(axis=0)

        @staticmethod
        def backward(ctx, g):
            return g

    assert_close(F.apply(x).numpy(), np.cos([1.0, 2.0, 3.0]) + [6.0, 12.0, 18.0], device=device)


def test_forward_over_reverse_through_custom_gradients(device):
    x = _t([0.5, -1.0, 2.0], device)
    sig = 1 / (1 + np.exp(-x.numpy()))

    @ad.custom_gradient
    def log1pexp(a):
        e = ad.exp(a)
        return ad.log(1 + e), lambda g: g * (1 - 1 / (1 + e))

    log1pexp.defjvp(lambda primals, tangents: [tangents[0] * ad.sigmoid(primals[0])])
    assert_close(ad.hessian(lambda a: log1pexp(a).sum(), x).numpy(),
                 np.diag(sig * (1 - sig)), rtol=1e-13, atol=1e-15, device=device)

    class Exp(ad.Function):  # PyTorch's example: backward reads the saved output
        @staticmethod
        def forward(ctx, a):
            y = ad.exp(a)
            ctx.save_for_backward(y)
            ctx.save_for_forward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * y

        @staticmethod
        def jvp(ctx, t):
            (y,) = ctx.saved_tensors
            return t * y

    e = np.exp(x.numpy())
    assert_close(ad.hessian(lambda a: Exp.apply(a).sum(), x).numpy(), np.diag(e),
                 rtol=1e-13, device=device)
    _, second = ad.jvp(lambda a: ad.jvp(Exp.apply, a, ad.ones_like(a))[1], x, ad.ones_like(x))
    assert_close(second.numpy(), e, rtol=1e-13, device=device)
    xr = _t(x.numpy(), device, requires_grad=True)
    _, t = ad.jvp(Exp.apply, xr, ad.ones_like(x))
    assert_close(ad.grad(t.sum(), xr)[0].numpy(), e, rtol=1e-13, device=device)


def test_views_see_in_place_changes_in_forward_mode(device):
    def f(a):
        c = a * 1.0
        d = c[:2]
        c.mul_(2.0)
        return d * 1.0

    x = _t([1.0, 2.0, 3.0], device)
    _, t = ad.jvp(f, x, ad.ones_like(x))
    assert_close(t.numpy(), [2.0, 2.0], device=device)
    assert_close(ad.jacobian(f, x, mode="forward").numpy(),
                 ad.jacobian(f, x, mode="reverse").numpy(), device=device)


def test_backward_inside_jvp(device):
    def h(a):
        a.requires_grad_()
        (a ** 3).sum().backward()
        (a ** 2).sum().backward()  # accumulated: the tangent adds up too
        return a.grad

    x = _t([1.0, 2.0, 3.0], device)
    _, t = ad.jvp(h, x, ad.ones_like(x))
    assert_close(t.numpy(), 6 * x.numpy() + 2, device=device)


def test_custom_jvp_rule_of_wrong_shape_raises(device):
    f = ad.custom_gradient(lambda a: (a * 2, lambda g: g * 2))
    f.defjvp(lambda p, t: [t[0][0] * 2])  # forgot the axis of directions
    x = _t([1.0, 2.0, 3.0], device)
    with pytest.raises(ad.CustomGradientError, match=r"shape \(3,\).*expected shape \(3, 3\)"):
        ad.jacobian(f, x, mode="forward")


def test_tensors_that_outlive_a_level_drop_its_tangents(device):
    """Intermediates kept in a closure (or a graph) do not keep n tangents alive."""
    import weakref

    kept = []

    def f(x):
        y = ad.sin(x)
        kept.append(y)
        return y * 2

    x = _t(np.ones(50), device, requires_grad=True)
    ad.jacobian(f, x, mode="forward")
    assert not getattr(kept[0], "_tan", None)
    _, t = ad.jvp(f, x, ad.ones_like(x))
    ref = weakref.ref(kept[1]._grad_fn)  # the graph lives on, through the output
    assert ref() is not None and not getattr(kept[1], "_tan", None)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_transforms_stay_differentiable_in_closure_parameters(mode, device):
    x = _t([0.5, -1.0, 2.0], device)
    w = _t([0.3, 0.7, -1.1], device, requires_grad=True)
    jac = ad.jacobian(lambda a: ad.sin(a) * w, x, mode=mode)
    ((jac * jac).sum() + w.sum()).backward()
    assert_close(w.grad.numpy(), 2 * w.numpy() * np.cos(x.numpy()) ** 2 + 1,
                 rtol=1e-13, device=device)
    _, vjp_fn = ad.vjp(lambda a: ad.sin(a) * w, x)
    (g,) = vjp_fn(ad.ones_like(x))
    (gw,) = ad.grad(g.sum(), w)
    assert_close(gw.numpy(), np.cos(x.numpy()), rtol=1e-13, device=device)
    h = ad.hessian(lambda a: (ad.sin(a) * w).sum(), x)
    (hw,) = ad.grad(h.sum(), w)
    assert_close(hw.numpy(), -np.sin(x.numpy()), rtol=1e-13, device=device)


def test_function_changing_its_input_in_place(device):
    class Double(ad.Function):
        @staticmethod
        def forward(ctx, a):
            a.mul_(2.0)
            ctx.mark_dirty(a)
            return a

        @staticmethod
        def backward(ctx, g):
            return g * 2

        @staticmethod
        def jvp(ctx, t):
            return t * 2

    x = _t([0.5, -1.0, 2.0], device)
    _, t = ad.jvp(lambda a: Double.apply(a * 1.0), x, ad.ones_like(x))
    assert_close(t.numpy(), [2.0, 2.0, 2.0], device=device)


def test_custom_rule_covers_a_body_without_rules(device):
    class Inner(ad.Function):
        @staticmethod
        def forward(ctx, a):
            return a ** 3

        @staticmethod
        def backward(ctx, g):
            raise NotImplementedError

    kept = []

    @ad.custom_gradient
    def cube(a):
        y = Inner.apply(a) * 1.0
        kept.append(y)
        return y, lambda g: g * 3 * a ** 2

    cube.defjvp(lambda p, t: [t[0] * 3 * p[0] ** 2])
    x = _t([0.5, -1.0, 2.0], device)
    _, t = ad.jvp(cube, x, ad.ones_like(x))
    assert_close(t.numpy(), 3 * x.numpy() ** 2, device=device)
    with pytest.raises(ad.ForwardModeError, match="Inner"):  # read outside the body: refused
        ad.jvp(lambda a: cube(a) + kept[-1], x, ad.ones_like(x))


def test_in_place_through_a_stale_view_inside_jvp(device):
    x = _t([1.0, 2.0, 3.0], device, requires_grad=True)

    def f(c):
        y = x * 1.0
        v = y[0:2]
        y.mul_(3.0)  # v is stale now
        v.add_(x[0:2] * c)
        return y

    out, t = ad.jvp(f, _t(2.0, device), _t(1.0, device))
    assert_close(t.numpy(), [1.0, 2.0, 0.0], device=device)
    out.sum().backward()
    assert_close(x.grad.numpy(), [5.0, 5.0, 3.0], device=device)


def test_no_grad_update_inside_a_level_keeps_requires_grad(device):
    w = _t([1.0, 2.0, 3.0], device, requires_grad=True)

    def step(lr):
        loss = (w * w).sum()
        (g,) = ad.grad(loss, w, create_graph=True)
        with ad.no_grad():
            w.sub_(g * 0.0)  # a parameter update inside forward mode
        return (w * lr).sum()

    _, t = ad.jvp(step, _t(0.1, device), _t(1.0, device))
    assert w.requires_grad and w.is_leaf
    assert t.item() == pytest.approx(6.0)


def test_reverse_transforms_of_variables_stay_on_the_tape(device):
    x = ad.Variable(np.linspace(0.1, 1.0, 4), dtype=F64, device=device)
    with ad.GradientTape() as tape:
        h = ad.hessian(lambda a: (a ** 3).sum(), x)
        s = h.sum()
    assert not h.requires_grad
    assert_close(tape.gradient(s, x).numpy(), np.full(4, 6.0), device=device)
