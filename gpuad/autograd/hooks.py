"""What a tensor hook may return: None (keep the gradient), or a replacement of the same
shape, dtype and device, as in PyTorch. A wrong result fails where the hook ran, naming it.

Unlike PyTorch (which refuses anything but a tensor), an array-like result (a NumPy array, a
list, a number) is converted, as ``backward(gradient=...)`` and custom gradient rules convert
one: to the gradient's dtype, on its device. A NumPy array for a gradient on a GPU is refused
(gpuad never moves data between devices implicitly).
"""
from ..errors import DeviceMismatchError
from ..tensor import Tensor


def hook_name(hook):
    """The hook's name for messages: its qualified name (a callable object's class's)."""
    return getattr(hook, "__qualname__", None) or type(hook).__qualname__


def hook_result(hook, g, r):
    """The gradient that replaces ``g`` after ``hook(g)`` returned ``r`` (not None)."""
    if not isinstance(r, Tensor):
        r = _converted(hook, g, r)
    if r._dev is not g._dev:
        raise DeviceMismatchError(
            f"gpuad: hook {hook_name(hook)!r} has changed the device of value (was {g._dev}, "
            f"got {r._dev}); return the gradient on {g._dev}"
        )
    if r.shape != g.shape:
        raise RuntimeError(
            f"gpuad: hook {hook_name(hook)!r} has changed the size of value (was shape "
            f"{g.shape}, got {r.shape}); a hook returns a gradient of the shape it was given, "
            "or None"
        )
    if r.dtype != g.dtype:
        raise RuntimeError(
            f"gpuad: hook {hook_name(hook)!r} has changed the type of value (was {g.dtype}, "
            f"got {r.dtype}); return it as {g.dtype}, e.g. with .astype(g.dtype)"
        )
    return r


def _converted(hook, g, r):
    """Array-like ``r`` as a tensor of ``g``'s dtype on ``g``'s device."""
    from ..ops._args import constant

    try:
        r = constant(r, g._dev, g)
    except DeviceMismatchError:
        raise DeviceMismatchError(
            f"gpuad: hook {hook_name(hook)!r} returned a NumPy array (on the cpu) for a "
            f"gradient on {g._dev}; return a tensor on {g._dev}, e.g. "
            f"ad.tensor(array, device={str(g._dev)!r})"
        ) from None
    except TypeError:
        raise TypeError(
            f"gpuad: hook {hook_name(hook)!r} returned a {type(r).__name__}; a hook returns "
            "a Tensor (or an array-like) of the gradient's shape and dtype, or None to keep "
            "the gradient"
        ) from None
    if r.dtype != g.dtype:
        r = r.astype(g.dtype)
    return r
