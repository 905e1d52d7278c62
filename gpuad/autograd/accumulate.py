"""How a backward pass's gradients become ``.grad``, and what a tensor hook may return.

Storage: no two tensors' ``.grad`` share an array (two leaves, a leaf and a retained non-leaf),
and none shares one with what the caller handed over or may keep (seeds, ``grad_outputs``,
tensors hooks got or returned, custom rules' results): a pass collects the ids of those arrays
in its ``foreign`` set. A gradient the rules made fresh is adopted without a copy (the plain
pass's speed); anything else is copied, differentiably under ``create_graph``.

Hooks: a hook returns None (keep the gradient) or a replacement of the same shape, dtype and
device, as in PyTorch; a wrong result fails where the hook ran, naming it. Unlike PyTorch
(which refuses anything but a tensor), an array-like result (a NumPy array, a list, a number)
is converted, as ``backward(gradient=...)`` and custom gradient rules convert one: to the
gradient's dtype, on its device. A NumPy array for a gradient on a GPU is refused (gpuad never
moves data between devices implicitly).
"""
from ..backends import cpu_pool, tracing
from ..convert import constant
from ..errors import DeviceMismatchError
from ..tensor import Tensor, lent_grads
from .forward import carry, has_tangent
from .grad_mode import mode


def run_hooks(hooks, g, foreign):
    """Apply tensor hooks (each result checked: :func:`hook_result`). A hook may keep
    the tensor it gets, and a tensor it returns belongs to the caller, so both are foreign
    (never adopted as ``.grad`` storage)."""
    for hook in tuple(hooks):
        claim(foreign, g._a)
        r = hook(g)
        if r is not None:
            g = hook_result(hook, g, r)
            claim(foreign, g._a)
    return g


def accumulate_into_grad(t, g, create_graph, foreign):
    """Add ``g`` to ``t.grad``. The first gradient is adopted when nothing else can reach its
    storage (:func:`_owned`). Later ones are added in place when ``t`` is a leaf, no graph is
    being built, the stored gradient is a plain tensor the engine made (not a graph result, not
    one the user assigned to ``.grad``: that one stays theirs) and no forward-mode tangent
    rides along; else out of place, into a new tensor. (A retained non-leaf's gradient went on
    down the graph, where hooks and custom rules may have kept it.) A leaf's gradient that has
    a graph keeps it through a plain pass, as in PyTorch (a retained one does not)."""
    old = t._grad
    if old is None:
        t._grad = _owned(g, foreign, create_graph)
    elif old._grad_fn is not None and not mode.enabled and t._grad_fn is None:
        mode.enabled = True
        try:
            t._grad = old + g
        finally:
            mode.enabled = False
    elif (create_graph or t._grad_fn is not None or old._grad_fn is not None
          or (lent_grads and id(old) in lent_grads)
          or (mode.levels and (has_tangent(old) or has_tangent(g)))):
        t._grad = old + g
    else:
        old._dev._backend.add(old._a, g._a, out=old._a)
        old._ver[0] += 1


def claim(foreign, a):
    """Mark array ``a`` (and the array it views) as not for a leaf to adopt."""
    foreign.add(id(a))
    if a.base is not None:
        foreign.add(id(a.base))
        if tracing.active is not None:  # (in a trace: the plain array it views, as well)
            foreign.add(id(tracing.storage(a)[1]))


def _owned(g, foreign, create_graph=False):
    """``g`` as a gradient one tensor may own. Its array is adopted unless the caller owns it
    (a seed, a hook's result, a custom rule's result, or what they view), it was already handed
    to another tensor in this pass (one rule may pass the same gradient to several inputs), or
    it is a view of only part of an array (a broadcast one is also read-only); then it is
    copied. (A whole-array view, such as the transposed weight gradient of ``x @ W.T``, is
    adopted: no copy.) With ``create_graph`` the gradient keeps its graph: ``g`` itself, or
    its differentiable copy (``clone``), so ``.grad`` can be differentiated again; and a
    gradient without a graph is copied, as the recorded graph may have saved it (a later
    in-place add would change a saved value)."""
    a = g._a
    cls, base = tracing.storage(a)  # (a traced run's arrays: as the eager run's)
    shared = id(a) in foreign or (base is not None and (
        id(base) in foreign or id(a.base) in foreign or cpu_pool.base(base) is not None
        or a.size != base.size or base.__class__ is not cls))
    if create_graph:
        if shared or g._grad_fn is None:
            g = g.clone()
        claim(foreign, g._a)
        return g
    if shared:
        a = g._dev._backend.copy(a)
    claim(foreign, a)
    out = Tensor(a, g._dev)
    tan = getattr(g, "_tan", None)
    if tan:
        carry(out, dict(tan))  # forward over reverse through .backward()
    return out


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
