"""The references of the GradientTape tests: a tensor's data (None for None), identity of
tensor lists, and gradients by float64 central differences."""
import numpy as np


def _np(t):
    return None if t is None else t.numpy()


def _same(got, expected):
    """The same tensors, by identity (``==`` on tensors compares values elementwise)."""
    return len(got) == len(expected) and all(a is b for a, b in zip(got, expected))


def _fd_grad(f, x, eps=1e-6):
    """Central differences of the scalar function ``f`` (NumPy float64 in, float out)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g
