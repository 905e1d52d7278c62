"""Parameter initializers, in place and without recording, as ``torch.nn.init`` (seeded by
``ad.manual_seed``)."""
from __future__ import annotations

import math
from typing import Literal, TypeAlias

from ..autograd.grad_mode import no_grad
from ..creation import rand, randn
from ..tensor import Tensor

#: The activations whose gain :func:`kaiming_uniform_` and :func:`kaiming_normal_` know.
Nonlinearity: TypeAlias = Literal["linear", "identity", "sigmoid", "tanh", "relu",
                                   "leaky_relu"]

__all__ = ["uniform_", "normal_", "zeros_", "ones_", "kaiming_uniform_", "kaiming_normal_",
           "xavier_uniform_", "xavier_normal_"]


def _fill(t: Tensor, values: Tensor | float) -> Tensor:
    """Write ``values`` (a tensor or a number) into ``t`` in place, unrecorded."""
    with no_grad():
        value = values.astype(t.dtype)._a if hasattr(values, "astype") else values
        t._dev._backend.setitem(t._a, Ellipsis, value)
        t._ver[0] += 1
    return t


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"gpuad.nn.init: fan in and fan out need at least 2 dimensions, got "
                         f"shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _gain(nonlinearity: str, a: float = 0.0) -> float:
    if nonlinearity in ("linear", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"gpuad.nn.init: unknown nonlinearity {nonlinearity!r}")


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill ``t`` with samples of U(a, b); returns ``t``.

    >>> w = ad.nn.init.uniform_(ad.empty(2, 3), -0.5, 0.5)
    >>> w.shape, bool(((w >= -0.5) & (w <= 0.5)).all())
    ((2, 3), True)
    """
    return _fill(t, rand(*t.shape, device=t.device, dtype=_wide(t)) * (b - a) + a)


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill ``t`` with samples of N(mean, std^2); returns ``t``.

    >>> w = ad.nn.init.normal_(ad.empty(1000), mean=3.0, std=0.1)
    >>> abs(float(w.mean()) - 3.0) < 0.05  # (the mean of 1000 draws: within 0.01 or so)
    True
    """
    return _fill(t, randn(*t.shape, device=t.device, dtype=_wide(t)) * std + mean)


def zeros_(t: Tensor) -> Tensor:
    """Fill ``t`` with 0; returns ``t``.

    >>> lin = ad.nn.Linear(2, 2)
    >>> ad.nn.init.zeros_(lin.bias)  # in place, unrecorded: still a leaf
    Parameter containing:
    tensor([0., 0.], requires_grad=True)
    """
    return _fill(t, 0)


def ones_(t: Tensor) -> Tensor:
    """Fill ``t`` with 1; returns ``t``.

    >>> ad.nn.init.ones_(ad.empty(2, 2))
    tensor([[1., 1.],
            [1., 1.]])
    """
    return _fill(t, 1)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in",
                     nonlinearity: Nonlinearity = "leaky_relu") -> Tensor:
    """U(-bound, bound), bound = gain * sqrt(3 / fan) (He et al.).

    ``fan`` is ``t.shape[1]`` (fan_in) or ``t.shape[0]`` (fan_out), times the product of the
    other dims; the gain is sqrt(2 / (1 + a^2)) for leaky_relu, sqrt(2) for relu.

    >>> w = ad.nn.init.kaiming_uniform_(ad.empty(3, 4), nonlinearity="relu")
    >>> bool((w.abs() <= 1.2248).all())  # bound sqrt(2) sqrt(3 / 4) = 1.2247
    True
    """
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: Literal["fan_in", "fan_out"] = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu") -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan) (fan and gain as :func:`kaiming_uniform_`'s).

    >>> w = ad.nn.init.kaiming_normal_(ad.empty(100, 400), nonlinearity="relu")
    >>> round(float(w.std()), 2)  # sqrt(2) / sqrt(400) = 0.0707
    0.07
    """
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    return normal_(t, 0.0, _gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio).

    >>> w = ad.nn.init.xavier_uniform_(ad.empty(3, 4))
    >>> bool((w.abs() <= 0.9259).all())  # a = sqrt(6 / 7) = 0.9258
    True
    """
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)) (Glorot and Bengio).

    >>> w = ad.nn.init.xavier_normal_(ad.empty(200, 200))
    >>> round(float(w.std()), 2)  # sqrt(2 / 400) = 0.0707
    0.07
    """
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _wide(t: Tensor) -> str:
    """Random draws in float32 at least (then cast to the tensor's dtype)."""
    return "float64" if t.dtype == "float64" else "float32"
