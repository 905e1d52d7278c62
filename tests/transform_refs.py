"""The references of the transform tests: float64 tensors, and Jacobians by central
differences of NumPy functions; a custom Function (x -> 2x) without a JVP rule."""
import numpy as np

import gpuad as ad

F64 = ad.float64


def _t(x, device, **kw):
    return ad.tensor(np.asarray(x, dtype=np.float64), dtype=F64, device=device, **kw)


def _fd_jacobian(f, x, eps=1e-6):
    """Central differences of a NumPy function: shape out.shape + x.shape."""
    out = np.asarray(f(x))
    jac = np.zeros(out.shape + x.shape)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        jac[(...,) + idx] = (np.asarray(f(x + d)) - np.asarray(f(x - d))) / (2 * eps)
    return jac


class _NoJvp(ad.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2
