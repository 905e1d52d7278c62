"""Custom gradients (SPEC section 4): ``class F(ad.Function)``: ``save_for_backward``,
``needs_input_grad``, ``mark_dirty``, ``mark_non_differentiable``, ``setup_context``, under tapes,
``backward()``, ``ad.grad`` and ``create_graph``, with its error messages.

References: analytic derivatives, float64 central differences, and PyTorch's
``torch.autograd.Function`` where torch is installed.
"""
import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad

try:
    import torch
except ImportError:  # the PyTorch comparisons are skipped
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


# ---- class Function -----------------------------------------------------------------------

class Cube(ad.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x ** 2


class Exp(ad.Function):
    """Saves its output, as torch's exp does."""

    @staticmethod
    def forward(ctx, x):
        y = ad.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y


class ScaleShift(ad.Function):
    """(x * a + b, x - b) with a number ``a``: two outputs, a non-tensor argument."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.a = a
        ctx.flags = ctx.needs_input_grad
        return x * a + b, x - b

    @staticmethod
    def backward(ctx, g1, g2):
        return g1 * ctx.a + g2, None, (g1 - g2).sum()


def test_function_first_and_second_order(device):
    x = ad.tensor([0.5, -1.0], dtype=ad.float64, device=device, requires_grad=True)
    Cube.apply(x).sum().backward(create_graph=True)
    assert_close(x.grad.numpy(), 3 * np.array([0.5, -1.0]) ** 2, device=device)
    (h,) = ad.grad(x.grad.sum(), x)
    assert_close(h.numpy(), 6 * np.array([0.5, -1.0]), device=device)


def test_function_saving_its_output_differentiates_twice(device):
    x = ad.tensor([0.5, 2.0], dtype=ad.float64, device=device, requires_grad=True)
    (g,) = ad.grad(Exp.apply(x).sum(), x, create_graph=True)
    (h,) = ad.grad(g.sum(), x)
    assert_close(g.numpy(), np.exp([0.5, 2.0]), device=device)
    assert_close(h.numpy(), np.exp([0.5, 2.0]), device=device)  # through the saved output


def test_function_saved_output_changed_in_place_is_caught():
    x = ad.tensor([0.5, 2.0], requires_grad=True)
    y = Exp.apply(x)
    loss = y.sum()
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()


def test_function_saved_input_changed_in_place_is_caught():
    x = ad.tensor([0.5, 2.0], requires_grad=True)
    h = x * 1.0
    y = Cube.apply(h).sum()
    h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_function_multi_output_needs_input_grad_and_non_tensor_arguments(device):
    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = ad.tensor(0.5, device=device)
    y1, y2 = ScaleShift.apply(x, 3.0, b)
    assert y1.grad_fn is not None and y2.grad_fn is not None
    (y1 * 2.0 + y2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [7.0, 7.0])
    assert b.grad is None
    b.requires_grad_()
    with ad.GradientTape() as tape:
        y1, y2 = ScaleShift.apply(x, 3.0, b)
        loss = (y1 * 2.0 + y2).sum()
    gx, gb = tape.gradient(loss, [x, b])
    np.testing.assert_array_equal(gx.numpy(), [7.0, 7.0])
    assert gb.item() == 2.0


def test_function_needs_input_grad():
    seen = {}

    class Spy(ad.Function):
        @staticmethod
        def forward(ctx, x, y, k):
            seen["flags"] = ctx.needs_input_grad
            return x * y * k

        @staticmethod
        def backward(ctx, g):
            return g, g, None

    x = ad.tensor(1.0, requires_grad=True)
    Spy.apply(x, ad.tensor(2.0), 3)
    assert seen["flags"] == (True, False, False)
    c = ad.constant(1.0)
    with ad.GradientTape() as tape:
        tape.watch(c)
        Spy.apply(c, ad.tensor(2.0), 3)
    assert seen["flags"] == (True, False, False)
    with ad.no_grad():
        Spy.apply(x, ad.tensor(2.0), 3)
    assert seen["flags"] == (False, False, False)


def test_function_errors():
    class TooMany(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return g, g

    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"TooMany.backward returned 2 gradients.*1 arguments"):
        TooMany.apply(x).sum().backward()

    class TrailingNone(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return g * 2.0, None

    TrailingNone.apply(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])

    class BadShape(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, g):
            return ad.ones(3)

    with pytest.raises(ValueError, match=r"BadShape.backward.*shape \(3,\).*\(2,\)"):
        BadShape.apply(x).sum().backward()

    ctx = ad.FunctionCtx(())
    with pytest.raises(RuntimeError, match="in backward only"):
        ctx.saved_tensors  # noqa: B018
    with pytest.raises(TypeError, match="save_for_backward takes tensors"):
        ctx.save_for_backward(1.0)


def test_function_gradient_that_broadcasts_is_summed_down():
    class Broadcasting(ad.Function):
        @staticmethod
        def forward(ctx, b):
            return b * 1.0

        @staticmethod
        def backward(ctx, g):
            return ad.ones((4, 3))  # sums down to b's shape (3,)

    b = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    Broadcasting.apply(b).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [4.0, 4.0, 4.0])


def test_function_graph_is_freed_after_backward():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    y = Cube.apply(x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 3 * (3 * np.array([1.0, 2.0]) ** 2))  # 3 passes


@needs_torch
def test_function_matches_torch_autograd_function():
    class TorchScaleShift(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, a, b):
            ctx.a = a
            return x * a + b, x - b

        @staticmethod
        def backward(ctx, g1, g2):
            return g1 * ctx.a + g2, None, (g1 - g2).sum()

    xv = np.array([0.3, -1.2, 2.0])
    x = ad.tensor(xv, requires_grad=True)
    b = ad.tensor(0.25, dtype=ad.float64, requires_grad=True)
    y1, y2 = ScaleShift.apply(x, 1.5, b)
    (ad.sin(y1) * y2).sum().backward()
    tx = torch.tensor(xv, requires_grad=True)
    tb = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    t1, t2 = TorchScaleShift.apply(tx, 1.5, tb)
    (torch.sin(t1) * t2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-12)


def test_function_under_a_tape_and_nested_tapes(device):
    x = ad.constant([0.5, 2.0], dtype=ad.float64, device=device)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = Exp.apply(x * 2.0).sum()
        g = inner.gradient(y, x)
    h = outer.gradient(g, x)
    assert_close(g.numpy(), 2 * np.exp(2 * np.array([0.5, 2.0])), device=device)
    assert_close(h.numpy(), 4 * np.exp(2 * np.array([0.5, 2.0])), device=device)


def test_function_apply_refuses_keyword_tensors_that_need_gradients():
    class Scale(ad.Function):
        @staticmethod
        def forward(ctx, x, scale=None):
            return x * scale

        @staticmethod
        def backward(ctx, g):
            return g

    w = ad.tensor(3.0, requires_grad=True)
    with pytest.raises(TypeError, match="keyword argument 'scale'.*positionally"):
        Scale.apply(ad.tensor(1.0), scale=w)
    assert Scale.apply(ad.tensor(1.0), scale=ad.tensor(3.0)).item() == 3.0


def test_function_mark_non_differentiable_and_materialize_grads(device):
    seen = {}

    class Sort(ad.Function):
        """Sorted values, and the positions they came from (as floats, not differentiable)."""

        @staticmethod
        def forward(ctx, x):
            order = ad.tensor(np.argsort(x.numpy()), device=x.device)
            positions = order.astype(ad.float32)
            ctx.mark_non_differentiable(positions)
            ctx.set_materialize_grads(False)
            ctx.order = order
            return x[order], positions

        @staticmethod
        def backward(ctx, g_values, g_positions):
            seen["g_positions"] = g_positions
            out = ad.zeros(g_values.shape, device=g_values.device)
            out[ctx.order] = g_values
            return out

    x = ad.tensor([3.0, 1.0, 2.0], device=device, requires_grad=True)
    values, positions = Sort.apply(x)
    assert values.requires_grad and not positions.requires_grad
    np.testing.assert_array_equal(positions.numpy(), [1.0, 2.0, 0.0])
    (values * ad.tensor([1.0, 10.0, 100.0], device=device)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [100.0, 1.0, 10.0])
    assert seen["g_positions"] is None  # not materialized


def test_function_setup_context_form(device):
    class Mul(ad.Function):
        @staticmethod
        def forward(x, y):
            return x * y

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_tensors
            return g * y, g * x

    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = ad.tensor([3.0, 4.0], device=device, requires_grad=True)
    Mul.apply(x, y).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(y.grad.numpy(), [1.0, 2.0])


def test_function_mark_dirty(device):
    class Double_(ad.Function):
        """x *= 2 in place."""

        @staticmethod
        def forward(ctx, x):
            x.mul_(2.0)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2.0

    a = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    h = a * 3.0
    out = Double_.apply(h)
    assert out is h and h.grad_fn is not None
    np.testing.assert_array_equal(h.numpy(), [6.0, 12.0])
    (h * h).sum().backward()  # d/da (6a)^2 = 72 a
    np.testing.assert_array_equal(a.grad.numpy(), [72.0, 144.0])
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        Double_.apply(ad.tensor([1.0], device=device, requires_grad=True))


def test_gradient_count_errors_are_value_and_runtime_errors():
    assert issubclass(ad.CustomGradientError, ValueError)
    assert issubclass(ad.CustomGradientError, RuntimeError)

    class One(ad.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return (g,)

    x = ad.tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 1 gradients"):  # as PyTorch
        One.apply(x, x).backward()


def test_outputs_aliasing_each_other_are_separate_values(device):
    class Twice(ad.Function):
        @staticmethod
        def forward(ctx, x):
            y = x * 2.0
            return y, y

        @staticmethod
        def backward(ctx, ga, gb):
            return 2.0 * (ga + gb)

    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    a, b = Twice.apply(x)
    c = b * b
    a.add_(10.0)  # must not change b, which c's gradient reads
    c.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [8.0, 16.0])


def test_mark_dirty_counts_a_change_made_through_the_array(device):
    class RawDouble(ad.Function):
        @staticmethod
        def forward(ctx, x):
            x.array[...] *= 2  # the change bypasses gpuad's in-place ops
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2.0

    a = ad.tensor([0.5, 1.0], device=device, requires_grad=True)
    x = a * 1.0
    s = ad.sin(x)  # saves x
    RawDouble.apply(x)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        s.sum().backward()


def test_mark_dirty_with_the_output_saved(device):
    class Double_(ad.Function):
        @staticmethod
        def forward(ctx, x):
            x.mul_(2.0)
            ctx.mark_dirty(x)
            ctx.save_for_backward(x)
            return x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 2.0 + 0.0 * x

    a = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    Double_.apply(a * 1.0).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [2.0, 2.0])


def test_mark_dirty_and_non_differentiable_together(device):
    class Flag_(ad.Function):
        @staticmethod
        def forward(ctx, x):
            x.mul_(2.0)
            ctx.mark_dirty(x)
            ctx.mark_non_differentiable(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return None

    a = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    x = a * 1.0
    out = Flag_.apply(x)
    assert out is x and not x.requires_grad and x.grad_fn is None


def test_a_saved_non_differentiable_output_stays_constant_in_double_backward(device):
    class SquareAndScale(ad.Function):
        @staticmethod
        def forward(ctx, x):
            y, s = x * x, x * 3.0
            ctx.mark_non_differentiable(s)
            ctx.save_for_backward(x, s)
            return y, s

        @staticmethod
        def backward(ctx, g, gs):
            x, s = ctx.saved_tensors
            assert not s.requires_grad
            return g * s * x * 2.0 / 3.0

    x = ad.tensor([1.0, 2.0], dtype=ad.float64, device=device, requires_grad=True)
    y, s = SquareAndScale.apply(x)
    (g,) = ad.grad(y.sum(), x, create_graph=True)
    (h,) = ad.grad(g.sum(), x)
    assert_close(g.numpy(), [2.0, 8.0], device=device)
    assert_close(h.numpy(), [2.0, 4.0], device=device)  # s counts as a constant 3x
