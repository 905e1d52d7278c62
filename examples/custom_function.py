"""Write your own derivative rules, in both styles gpuad offers:

- PyTorch style, a subclass of ``ad.Function`` with ``forward(ctx, ...)`` and
  ``backward(ctx, grad)``: SiLU (``x * sigmoid(x)``) that keeps ``sigmoid(x)`` from the
  forward pass for its backward;
- TensorFlow style, ``@ad.custom_gradient``: a vector norm whose gradient is 0 at the origin,
  where plain autodiff of ``sqrt(sum(x**2))`` gives nan.

Each gradient is checked against float64 central differences (``ad.gradcheck`` and by hand).

Run it: ``python examples/custom_function.py``.
"""
import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")


class SiLU(ad.Function):
    @staticmethod
    def forward(ctx, x):
        s = ad.sigmoid(x)
        ctx.save_for_backward(x, s)  # the tensors backward will need
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))  # d/dx x s(x) = s + x s (1 - s)


x = ad.tensor([-3.0, -0.5, 0.0, 0.7, 2.5], dtype=ad.float64, device=device, requires_grad=True)
SiLU.apply(x).sum().backward()
print("SiLU gradient:", x.grad.numpy())
assert ad.gradcheck(SiLU.apply, (x,))  # raises ad.GradcheckError on a mismatch
print("ok: SiLU's backward matches finite differences (ad.gradcheck)")


# (ad.norm already has a gradient of 0 at the origin; here is how to give one yourself.)
@ad.custom_gradient
def safe_norm(v):
    norm = ad.sqrt(ad.reduce_sum(v * v))

    def grad(upstream):  # d|v|/dv = v / |v|, taken as 0 at v = 0
        return upstream * v / ad.maximum(norm, 1e-30)

    return norm, grad


def central_differences(f, point, eps=1e-6):
    """The gradient of scalar ``f`` at ``point`` (a float64 NumPy array), numerically."""
    out = np.zeros_like(point)
    for i in range(point.size):
        step = np.zeros_like(point)
        step.flat[i] = eps
        plus = f(ad.tensor(point + step, device=device)).item()
        minus = f(ad.tensor(point - step, device=device)).item()
        out.flat[i] = (plus - minus) / (2 * eps)
    return out


point = np.array([3.0, -4.0, 12.0])
v = ad.Variable(point, dtype=ad.float64, device=device)
with ad.GradientTape() as tape:
    y = safe_norm(v)
g = tape.gradient(y, v).numpy()
print(f"|v| = {y.item()}, gradient {g}")
assert np.allclose(g, point / 13.0)
assert np.allclose(g, central_differences(safe_norm, point), atol=1e-8)
print("ok: safe_norm's gradient matches v/|v| and finite differences")

zero = ad.Variable([0.0, 0.0, 0.0], dtype=ad.float64, device=device)
with ad.GradientTape(persistent=True) as tape:
    plain = ad.sqrt(ad.reduce_sum(zero * zero))
    safe = safe_norm(zero)
g_plain, g_safe = tape.gradient(plain, zero).numpy(), tape.gradient(safe, zero).numpy()
print("at 0, plain autodiff:", g_plain, " custom:", g_safe)
assert np.isnan(g_plain).all() and (g_safe == 0).all()
print("ok: the custom gradient is 0 at the origin where plain autodiff gives nan")
