"""``ad.gradcheck``: analytic gradients against float64 central differences."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .autograd.engine import grad as _grad
from .autograd.grad_mode import no_grad
from .dtypes import float64
from .errors import GradcheckError
from .tensor import Tensor


def _outputs(fn: Callable[..., Any], inputs: Sequence[Any]) -> Sequence[Any]:
    out = fn(*inputs)
    return out if isinstance(out, (tuple, list)) else (out,)


def gradcheck(fn: Callable[..., Any], inputs: Tensor | Sequence[Any], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-3) -> bool:
    """Check ``fn``'s gradients with respect to every input that requires grad.

    Inputs are copied to float64. For each output element the analytic row of the Jacobian
    (one reverse pass) is compared with central differences (f(x + eps) - f(x - eps)) / 2eps.
    Returns True, or raises GradcheckError naming the worst mismatch.

    >>> x = ad.tensor([0.5, 1.0, 2.0], requires_grad=True)
    >>> ad.gradcheck(lambda t: (t * t).sin().sum(), x)
    True
    >>> @ad.custom_gradient
    ... def bad_square(t):
    ...     return t * t, lambda dy: dy * t  # wrong: the derivative of t * t is 2 t
    >>> ad.gradcheck(bad_square, x)
    Traceback (most recent call last):
    ...
    gpuad.errors.GradcheckError: gpuad.gradcheck: Jacobian mismatch for output 0 element 2 with
    respect to input 0 element 2: analytic 2.0, numerical 4.0000... (atol=1e-05, rtol=0.001,
    eps=1e-06)
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    xs: list[Any] = []
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            xs.append(x.detach().astype(float64).requires_grad_())
        elif isinstance(x, Tensor) and x.dtype.kind == "f":
            xs.append(x.detach().astype(float64))
        else:
            xs.append(x)
    wrt = [i for i, x in enumerate(xs) if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gpuad.gradcheck: no input requires grad, so there is nothing to check")
    outs = _outputs(fn, xs)
    worst = None
    for o_idx, out in enumerate(outs):
        if not isinstance(out, Tensor) or not out.requires_grad:
            continue
        numeric = {i: _numeric_jacobian(fn, xs, i, o_idx, eps) for i in wrt}
        for k in range(out.size):
            seed = out.detach().numpy().reshape(-1) * 0
            seed[k] = 1
            g_out = Tensor(out._dev.backend.asarray(seed.reshape(out.shape)), out._dev)
            analytic = _grad((out,), [xs[i] for i in wrt], (g_out,), retain_graph=True,
                             allow_unused=True)
            for g, i in zip(analytic, wrt):
                n = numeric[i][k]
                a = n * 0 if g is None else g.numpy().reshape(-1)
                err = abs(a - n) - (atol + rtol * abs(n))
                if err.size == 0:
                    continue
                e = int(err.argmax())
                if not err[e] <= 0 and (worst is None or not err[e] <= worst[0]):
                    worst = (err[e], i, o_idx, k, e, a[e], n[e])
    if worst is not None:
        _, i, o_idx, k, e, a, n = worst
        raise GradcheckError(
            f"gpuad.gradcheck: Jacobian mismatch for output {o_idx} element {k} with respect to "
            f"input {i} element {e}: analytic {float(a)!r}, numerical {float(n)!r} "
            f"(atol={atol}, rtol={rtol}, eps={eps})"
        )
    return True


def _numeric_jacobian(fn: Callable[..., Any], xs: Sequence[Any], i: int, o_idx: int,
                      eps: float) -> np.ndarray:
    """d out[o_idx] / d xs[i] by central differences: a NumPy array (out.size, xs[i].size)."""
    x = xs[i]
    base = x.detach().numpy()
    flat = base.reshape(-1)
    backend = x._dev.backend
    columns = []
    with no_grad():
        for e in range(flat.size):
            vals = []
            for step in (eps, -eps):
                pert = flat.copy()
                pert[e] += step
                args = list(xs)
                args[i] = Tensor(backend.asarray(pert.reshape(base.shape)), x._dev)
                vals.append(_outputs(fn, args)[o_idx].numpy().reshape(-1))
            columns.append((vals[0] - vals[1]) / (2 * eps))
    return np.stack(columns, axis=1) if columns else np.zeros((0, 0))
