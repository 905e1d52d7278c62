"""Forward mode and second derivatives: a Jacobian-vector product with ``ad.jvp`` (one pass,
values and tangents together), whole Jacobians with ``ad.jacobian`` in forward and reverse
mode, and a Hessian-vector product with ``ad.hvp`` (forward over reverse), each compared with
the derivative worked out by hand.

Run it: ``python examples/forward_mode.py``.
"""
import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")


def f(x):  # R^3 -> R^4
    return ad.stack([x[0] * x[1], ad.sin(x[2]), x[0] ** 2 + x[2], ad.exp(x[1])])


def f_jacobian(x):  # d f_i / d x_j, by hand
    x0, x1, x2 = x
    return np.array([[x1, x0, 0.0],
                     [0.0, 0.0, np.cos(x2)],
                     [2 * x0, 0.0, 1.0],
                     [0.0, np.exp(x1), 0.0]])


point = np.array([0.5, -1.0, 2.0])
x = ad.tensor(point, device=device)  # float64, as the NumPy array
expected = f_jacobian(point)

# One JVP: f(x) and J v in a single forward pass.
v = np.array([2.0, 1.0, 0.5])
y, jv = ad.jvp(f, x, ad.tensor(v, device=device))
print("f(x) =", y.numpy(), " J v =", jv.numpy())
assert np.allclose(jv.numpy(), expected @ v)

# Whole Jacobians, shape output.shape + input.shape = (4, 3). Forward mode pushes the 3 input
# directions through at once; reverse mode pulls back the 4 output directions.
for mode in ("forward", "reverse"):
    jac = ad.jacobian(f, x, mode=mode)
    assert jac.shape == (4, 3)
    assert np.allclose(jac.numpy(), expected), mode
print("Jacobian:\n", ad.jacobian(f, x, mode="forward").numpy())
print("ok: J v and the forward and reverse Jacobians match the analytic Jacobian")


def g(x):  # R^3 -> R
    return (x ** 3).sum() + x[0] * x[1] * x[2]


def g_hessian(x):
    x0, x1, x2 = x
    return np.array([[6 * x0, x2, x1],
                     [x2, 6 * x1, x0],
                     [x1, x0, 6 * x2]])


# H v without forming H: forward mode through g's gradient.
value, hv = ad.hvp(g, x, ad.tensor(v, device=device))
print(f"g(x) = {value.item():.4f}, H v = {hv.numpy()}")
assert np.isclose(value.item(), (point ** 3).sum() + point.prod())
assert np.allclose(hv.numpy(), g_hessian(point) @ v)
assert np.allclose(ad.hessian(g, x).numpy(), g_hessian(point))
print("ok: the Hessian-vector product and the Hessian match the analytic ones")
