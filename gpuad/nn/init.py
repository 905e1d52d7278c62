"""Parameter initializers, in place and without recording, as ``torch.nn.init`` (seeded by
``ad.manual_seed``)."""
import math

from ..autograd.grad_mode import no_grad
from ..creation import rand, randn


def _fill(t, values):
    """Write ``values`` (a tensor or a number) into ``t`` in place, unrecorded."""
    with no_grad():
        value = values.astype(t.dtype)._a if hasattr(values, "astype") else values
        t._dev._backend.setitem(t._a, Ellipsis, value)
        t._ver[0] += 1
    return t


def _fans(t):
    if t.ndim < 2:
        raise ValueError(f"gpuad.nn.init: fan in and fan out need at least 2 dimensions, got "
                         f"shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def _gain(nonlinearity, a=0.0):
    if nonlinearity in ("linear", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"gpuad.nn.init: unknown nonlinearity {nonlinearity!r}")


def uniform_(t, a=0.0, b=1.0):
    return _fill(t, rand(*t.shape, device=t.device, dtype=_wide(t)) * (b - a) + a)


def normal_(t, mean=0.0, std=1.0):
    return _fill(t, randn(*t.shape, device=t.device, dtype=_wide(t)) * std + mean)


def zeros_(t):
    return _fill(t, 0)


def ones_(t):
    return _fill(t, 1)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-bound, bound), bound = gain * sqrt(3 / fan) (He et al.)."""
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    bound = _gain(nonlinearity, a) * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(t, -bound, bound)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std^2), std = gain / sqrt(fan)."""
    fan = _fans(t)[0 if mode == "fan_in" else 1]
    return normal_(t, 0.0, _gain(nonlinearity, a) / math.sqrt(fan) if fan else 0.0)


def xavier_uniform_(t, gain=1.0):
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio)."""
    fan_in, fan_out = _fans(t)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound)


def xavier_normal_(t, gain=1.0):
    fan_in, fan_out = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _wide(t):
    """Random draws in float32 at least (then cast to the tensor's dtype)."""
    return "float64" if t.dtype == "float64" else "float32"
