"""The references of the numeric-edge tests: gradients by gpuad and by PyTorch (float64), and
the comparison that wants nan exactly where the reference has it."""
import math

import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad

NAN = math.nan


def _grads(fn, xs, dtype=ad.float64, create_graph=False, device="cpu", seed=None):
    ts = [ad.tensor(x, dtype=dtype, device=device, requires_grad=True) for x in xs]
    out = fn(*ts)
    seed = ad.ones_like(out) if seed is None else ad.tensor(seed, dtype=dtype, device=device)
    grads = ad.grad(out, ts, seed, create_graph=create_graph)
    return out.numpy(), [g.numpy() for g in grads]


def _torch_grads(fn, xs, seed=None):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True) for x in xs]
    out = fn(*ts)
    seed = torch.ones_like(out) if seed is None else torch.tensor(seed, dtype=torch.float64)
    grads = torch.autograd.grad(out, ts, seed)
    return out.detach().numpy(), [g.numpy() for g in grads]


def _same(got, want, device="cpu", dtype=None, **tol):
    """nan where ``want`` is, and close to it elsewhere: by ``tol`` (default rtol 1e-12) on the
    CPU, at least by tests/tolerance.py's floor of ``dtype`` (default: ``got``'s) on CUDA."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert_close(got, want, device, dtype=dtype, equal_nan=True, **(tol or dict(rtol=1e-12)))
