"""TensorFlow-style gradients with ``ad.GradientTape``: Python ``if`` and ``while`` that
depend on values are recorded as they run; a persistent tape answers several ``gradient``
calls; trainable ``ad.Variable``s are watched automatically, constants only after
``tape.watch``, non-trainable Variables not at all. Every gradient is checked against the
derivative worked out by hand.

Run it: ``python examples/gradient_tape.py``.
"""
import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")

# A value-dependent loop: square until y reaches 100. At x = 3 it runs 3 times
# (3 -> 9 -> 81 -> 6561), so y = x**8 and dy/dx = 8 x**7.
x = ad.Variable(3.0, device=device)
with ad.GradientTape() as tape:
    y, squarings = x, 0
    while y < 100:  # reads the value: the tape records whichever path ran
        y = y * y
        squarings += 1
n = 2 ** squarings
dy_dx = tape.gradient(y, x)
print(f"while loop: {squarings} squarings, y = x**{n} = {y.item()}, dy/dx = {dy_dx.item()}")
assert np.isclose(dy_dx.item(), n * 3.0 ** (n - 1))


def piecewise(x):
    if x > 0:  # a branch chosen by the value
        return x ** 2
    return -3 * x


for start, expected in [(2.0, 4.0), (-1.5, -3.0)]:  # 2x on the right, -3 on the left
    v = ad.Variable(start, device=device)
    with ad.GradientTape() as tape:
        out = piecewise(v)
    grad = tape.gradient(out, v).item()
    print(f"piecewise'({start}) = {grad}")
    assert grad == expected

# A persistent tape, read twice, and what a tape watches.
a = ad.Variable([1.0, 2.0, 3.0], name="a", device=device)
b = ad.Variable(0.5, name="b", device=device)
frozen = ad.Variable(10.0, trainable=False, name="frozen", device=device)
c = ad.constant(2.0, device=device)
with ad.GradientTape(persistent=True) as tape:
    tape.watch(c)  # a constant is only watched when asked
    u = ad.reduce_sum(a * a) * b  # du/da = 2ab, du/db = sum(a^2)
    w = ad.reduce_sum(ad.exp(b * a)) + c * frozen  # dw/da = b e^(ba), dw/db = sum(a e^(ba))
print("watched variables:", [v.name for v in tape.watched_variables()])
assert [v.name for v in tape.watched_variables()] == ["a", "b"]  # not the frozen one

du_da, du_db = tape.gradient(u, [a, b])
grads = tape.gradient(w, {"a": a, "b": b, "c": c, "frozen": frozen})  # same structure back
del tape  # frees what the persistent tape recorded
an = np.array([1.0, 2.0, 3.0])
print("du/da =", du_da.numpy(), " dw/da =", grads["a"].numpy())
assert np.allclose(du_da.numpy(), 2 * an * 0.5) and np.isclose(du_db.item(), 14.0)
assert np.allclose(grads["a"].numpy(), 0.5 * np.exp(0.5 * an))
assert np.isclose(grads["b"].item(), (an * np.exp(0.5 * an)).sum(), rtol=1e-6)
assert np.isclose(grads["c"].item(), 10.0)
assert grads["frozen"] is None  # a non-trainable Variable is not watched
print("ok: all tape gradients match the analytic values")
