"""Custom gradients (SPEC section 4): ``@ad.custom_gradient``, under tapes, ``backward()``,
``ad.grad`` and ``create_graph``, with its error messages.

References: analytic derivatives and float64 central differences.
"""
import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad

# ---- @custom_gradient ---------------------------------------------------------------------

@ad.custom_gradient
def inv_exp(x):
    """1 / exp(x), with the stable derivative -exp(-x)."""
    e = ad.exp(x)

    def grad(upstream):
        return upstream * -ad.exp(-x)

    return 1.0 / e, grad


def test_autodiff_of_inv_exp_is_nan_custom_gradient_fixes_it():
    x = ad.Variable(100.0)
    with ad.GradientTape() as tape:
        out = 1.0 / ad.exp(x)
    assert out.numpy() == 0.0 and np.isnan(tape.gradient(out, x).numpy())
    with ad.GradientTape() as tape:
        out = inv_exp(x)
    g = tape.gradient(out, x).numpy()
    assert out.numpy() == 0.0
    assert g == -np.exp(np.float32(-100.0)) and g < 0  # a float32 subnormal, not nan


def test_custom_gradient_on_device_float64(device):
    x = ad.constant([1.0, 50.0, 100.0], dtype=ad.float64, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = inv_exp(x).sum()
    assert_close(tape.gradient(y, x).numpy(), -np.exp(-np.array([1.0, 50, 100])),
                 rtol=1e-14, device=device)


@ad.custom_gradient
def log1pexp(x):
    e = ad.exp(x)

    def grad(upstream):
        return upstream * (1 - 1 / (1 + e))

    return ad.log(1 + e), grad


def test_log1pexp_is_stable_at_100(device):
    x = ad.constant(100.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = log1pexp(x)
    assert tape.gradient(y, x).item() == 1.0


def test_backward_and_ad_grad_use_the_custom_rule(device):
    calls = []

    @ad.custom_gradient
    def doubled_grad(x):
        def grad(g):
            calls.append(1)
            return 2 * g

        return x * 1.0, grad

    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    doubled_grad(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    (g,) = ad.grad(doubled_grad(x).sum(), x)
    np.testing.assert_array_equal(g.numpy(), [2.0, 2.0])
    assert len(calls) == 2
    y = doubled_grad(x)
    assert repr(y.grad_fn) == "<DoubledGradBackward>"


def test_keyword_arguments_get_their_gradients(device):
    @ad.custom_gradient
    def scaled(x, scale=1.0):
        def grad(g):
            return g * scale, (g * x).sum()

        return x * scale, grad

    x = ad.constant([1.0, 2.0], device=device)
    s = ad.constant(3.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch([x, s])
        by_keyword = scaled(x=x, scale=s).sum()
        mixed = scaled(x, scale=s).sum()
    for y in (by_keyword, mixed):
        gx, gs = tape.gradient(y, [x, s])
        np.testing.assert_array_equal(gx.numpy(), [3.0, 3.0])
        assert gs.item() == 3.0

    @ad.custom_gradient
    def with_number(x, power):
        return x ** power, lambda g: (g * power * x ** (power - 1), None)

    with ad.GradientTape() as tape:
        tape.watch(x)
        y = with_number(x, power=3).sum()  # a number argument: its gradient may be None
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [3.0, 12.0])


def test_wrong_number_of_gradients_is_an_error_naming_the_function():
    @ad.custom_gradient
    def two_grads(x):
        return x * 2.0, lambda g: (g, g)

    x = ad.constant([1.0, 2.0])
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = two_grads(x).sum()
    with pytest.raises(ValueError, match=r"two_grads.*returned 2 gradients.*1 tensor inputs \(x\)"):
        tape.gradient(y, x)


def test_wrong_gradient_shape_is_an_error_naming_the_shapes():
    @ad.custom_gradient
    def bad_shape(x):
        return x * 2.0, lambda g: ad.ones(3)

    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"bad_shape.*input 0 \(x\) has shape \(3,\).*\(2,\)"):
        bad_shape(x).sum().backward()


def test_grad_fn_must_be_returned():
    @ad.custom_gradient
    def no_grad_fn(x):
        return x * 2.0

    with pytest.raises(TypeError, match="must return \\(output, grad_fn\\)"):
        no_grad_fn(ad.constant([1.0, 2.0]))


class Dense:
    """The seed article's custom layer: y = activation(x @ kernel)."""

    def __init__(self, kernel):
        self.kernel = ad.Variable(kernel, name="kernel")

    @property
    def trainable_variables(self):
        return [self.kernel]


def test_variables_form_for_variables_used_inside(device):
    rng = np.random.default_rng(0)
    layer = Dense(rng.normal(size=(3, 2)))
    layer.kernel = ad.Variable(layer.kernel.numpy(), device=device, name="kernel")
    x = ad.constant(rng.normal(size=(4, 3)), device=device)

    @ad.custom_gradient
    def sin_dense(x):
        z = x @ layer.kernel

        def grad(upstream, variables=None):
            dz = upstream * ad.cos(z)
            return dz @ layer.kernel.T, [x.T @ dz]

        return ad.sin(z), grad

    with ad.GradientTape() as tape:
        tape.watch(x)
        loss = (sin_dense(x) ** 2).sum()
    gx, gw = tape.gradient(loss, [x, layer.kernel])
    with ad.GradientTape() as tape:  # plain autodiff as the reference
        tape.watch(x)
        loss = (ad.sin(x @ layer.kernel) ** 2).sum()
    rx, rw = tape.gradient(loss, [x, layer.kernel])
    assert_close(gx.numpy(), rx.numpy(), rtol=1e-12, device=device)
    assert_close(gw.numpy(), rw.numpy(), rtol=1e-12, device=device)


def test_variables_used_inside_without_the_variables_argument_is_an_error():
    w = ad.Variable([1.0, 2.0], name="w")

    @ad.custom_gradient
    def uses_w(x):
        return x * w, lambda g: g * w

    with pytest.raises(TypeError, match=r"uses_w.*Variable 'w'.*variables=None"):
        uses_w(ad.constant([1.0, 1.0]))


def test_custom_gradient_second_order_with_create_graph_and_tapes(device):
    @ad.custom_gradient
    def cube(x):
        return x ** 3, lambda g: g * 3 * x ** 2

    x = ad.tensor([1.5, -2.0], dtype=ad.float64, device=device, requires_grad=True)
    (g,) = ad.grad(cube(x).sum(), x, create_graph=True)
    (h,) = ad.grad(g.sum(), x)
    assert_close(g.numpy(), 3 * np.array([1.5, -2.0]) ** 2, device=device)
    assert_close(h.numpy(), 6 * np.array([1.5, -2.0]), device=device)

    c = ad.constant([1.5, -2.0], dtype=ad.float64, device=device)
    with ad.GradientTape() as outer:
        outer.watch(c)
        with ad.GradientTape() as inner:
            inner.watch(c)
            y = cube(c).sum()
        d1 = inner.gradient(y, c)
    assert_close(outer.gradient(d1, c).numpy(), 6 * np.array([1.5, -2.0]), device=device)


def test_multi_output_custom_gradient_runs_its_rule_once(device):
    calls = []

    @ad.custom_gradient
    def sincos(x):
        def grad(gs, gc):
            calls.append(1)
            return gs * ad.cos(x) - gc * ad.sin(x)

        return (ad.sin(x), ad.cos(x)), grad

    x = ad.tensor([0.3, 1.2], dtype=ad.float64, device=device, requires_grad=True)
    s, c = sincos(x)
    (2 * s + 3 * c).sum().backward()
    assert_close(x.grad.numpy(), 2 * np.cos([0.3, 1.2]) - 3 * np.sin([0.3, 1.2]), device=device)
    assert len(calls) == 1
    x.grad = None
    s, c = sincos(x)
    s.sum().backward()  # the unused output's gradient is zeros
    assert_close(x.grad.numpy(), np.cos([0.3, 1.2]), device=device)


def test_nested_custom_gradients(device):
    @ad.custom_gradient
    def inner(x):
        return x * 2.0, lambda g: g * 10.0

    @ad.custom_gradient
    def outer(x):
        y = inner(x)
        return y * 3.0, lambda g: g * 7.0

    x = ad.tensor(1.0, device=device, requires_grad=True)
    outer(x).backward()
    assert x.grad.item() == 7.0  # outer's rule replaces everything inside
    x.grad = None
    (inner(x) * outer(x)).backward()
    assert x.grad.item() == 10.0 * 6.0 + 2.0 * 7.0


def test_custom_gradient_under_no_grad_records_nothing():
    x = ad.tensor(1.0, requires_grad=True)
    with ad.no_grad():
        y = inv_exp(x)
    assert not y.requires_grad and y.grad_fn is None


# ---- review regressions ------------------------------------------------------------------

def test_a_tape_inside_grad_fn_records(device):
    """The recompute pattern: grad_fn differentiates its own computation with a tape."""

    @ad.custom_gradient
    def recompute(x):
        def grad(dy):
            with ad.GradientTape() as t:
                t.watch(x)
                y2 = ad.sin(x) * x
            return t.gradient(y2, x, output_gradients=dy)

        return ad.sin(x) * x, grad

    x = ad.Variable(0.5, dtype=ad.float64, device=device)
    with ad.GradientTape() as t:
        y = recompute(x)
    assert t.gradient(y, x).item() == pytest.approx(np.cos(0.5) * 0.5 + np.sin(0.5), rel=1e-12)
    xr = ad.tensor(0.5, dtype=ad.float64, device=device, requires_grad=True)
    recompute(xr).backward()
    assert xr.grad.item() == pytest.approx(np.cos(0.5) * 0.5 + np.sin(0.5), rel=1e-12)


def test_a_tape_inside_the_forward_function_records(device):
    @ad.custom_gradient
    def with_inner_tape(x):
        with ad.GradientTape() as t:
            t.watch(x)
            y = x * x * x
        slope = t.gradient(y, x)
        return y, lambda g: g * slope

    x = ad.constant(2.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = with_inner_tape(x)
    assert y.item() == 8.0 and tape.gradient(y, x).item() == 12.0


def test_second_order_through_values_grad_fn_keeps_from_the_forward(device):
    x = ad.Variable(0.5, dtype=ad.float64, device=device)
    with ad.GradientTape() as t2:
        with ad.GradientTape() as t1:
            y = log1pexp(x)
        g = t1.gradient(y, x)
    sig = 1 / (1 + np.exp(-0.5))
    assert g.item() == pytest.approx(sig, rel=1e-12)
    assert t2.gradient(g, x).item() == pytest.approx(sig * (1 - sig), rel=1e-12)


def test_keyword_gradients_follow_the_signature_not_the_call(device):
    @ad.custom_gradient
    def f(x, *, a, b):
        return x * a * b, lambda g: (g * a * b, g * x * b, g * x * a)

    x, a, b = (ad.constant(v, device=device) for v in (1.0, 2.0, 3.0))
    for kwargs in ({"a": a, "b": b}, {"b": b, "a": a}):
        with ad.GradientTape() as tape:
            tape.watch([x, a, b])
            y = f(x, **kwargs)
        assert [g.item() for g in tape.gradient(y, [x, a, b])] == [6.0, 3.0, 2.0]


def test_grad_fn_may_return_nested_gradients(device):
    @ad.custom_gradient
    def f(pair, w):
        a, (b,) = pair
        return a * b * w, lambda g: ([g * b * w, [g * a * w]], g * a * b)

    a, b, w = (ad.constant(v, device=device) for v in (2.0, 3.0, 5.0))
    with ad.GradientTape() as tape:
        tape.watch([a, b, w])
        y = f([a, [b]], w)
    assert [g.item() for g in tape.gradient(y, [a, b, w])] == [15.0, 10.0, 6.0]


def test_an_output_that_aliases_an_input_gets_its_own_storage(device):
    @ad.custom_gradient
    def ident(a):
        return a, lambda g: g

    x = ad.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    z = x * 1.0
    w = z * z
    y = ident(z)
    y.add_(10.0)  # must not change z, which w's gradient reads
    w.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])
    v = ad.Variable([1.0, 2.0], device=device)
    snapshot = ident(v)
    v.assign_add(1.0)
    np.testing.assert_array_equal(snapshot.numpy(), [1.0, 2.0])


def test_inputs_changed_in_place_after_the_call_are_caught(device):
    @ad.custom_gradient
    def cube(x):
        return x * x * x, lambda g: g * 3 * x * x

    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    z = x * 1.0
    y = cube(z)
    z.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.sum().backward()
    v = ad.Variable(2.0, device=device)
    with ad.GradientTape() as tape:
        y = cube(v)
    v.assign(3.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        tape.gradient(y, v)


def test_custom_gradient_shapes_must_match_exactly(device):
    @ad.custom_gradient
    def f(x):
        return ad.reduce_sum(x), lambda g: ad.ones((3, 3), device=device)

    x = ad.Variable([1.0, 2.0, 3.0], device=device)
    with ad.GradientTape() as tape:
        y = f(x)
    with pytest.raises(ValueError, match=r"'.*f'.*shape \(3, 3\).*shape \(3,\)"):
        tape.gradient(y, x)


def test_a_gradient_the_rule_returns_is_never_taken_over_by_grad(device):
    @ad.custom_gradient
    def half_sq(x):
        return 0.5 * (x * x).sum(), lambda up: x  # returns the input itself

    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    half_sq(x).backward()
    half_sq(x).backward()
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])  # the parameter is untouched
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    w = ad.tensor([1.0, 2.0], device=device)

    class ReturnsW(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, g):
            return w

    y = ad.tensor([0.0, 0.0], device=device, requires_grad=True)
    for _ in range(3):
        ReturnsW.apply(y).backward()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    np.testing.assert_array_equal(y.grad.numpy(), [3.0, 6.0])


def test_checkpoint_pattern_differentiates_twice_with_create_graph(device):
    @ad.custom_gradient
    def checkpointed(x):
        def grad(dy):
            with ad.GradientTape() as t:
                t.watch(x)
                y = ad.sin(x) * x
            return t.gradient(y, x, output_gradients=dy)

        return ad.sin(x) * x, grad

    x = ad.tensor(0.7, dtype=ad.float64, device=device, requires_grad=True)
    (g,) = ad.grad(checkpointed(x), x, create_graph=True)
    (h,) = ad.grad(g, x)
    assert g.item() == pytest.approx(np.cos(0.7) * 0.7 + np.sin(0.7), rel=1e-12)
    assert h.item() == pytest.approx(-np.sin(0.7) * 0.7 + 2 * np.cos(0.7), rel=1e-12)
