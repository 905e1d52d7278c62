"""A compiled function's call taken apart and put back together: the leaves of its arguments
and its results (:func:`flatten`), the signature they give (:func:`key`, :func:`aliases`), and
what decides that a call cannot be replayed (:func:`differentiated`, :func:`overlapping`,
:func:`escaped`)."""
import gc
import weakref

import numpy as np

from ..autograd.grad_mode import active, mode
from ..tensor import Tensor
from .swaps import GRAD


def escaped(tracer, inputs, results):
    """Why a replay could not repeat the run: a tensor it made that Python still holds after
    it (state kept between calls: an attribute, a list, a buffer made on the first call), which
    a replay would neither make nor update; or None. Its results, the ``.grad`` tensors it set
    and the static inputs are the replay's own."""
    own = {id(v) for v in (*inputs, *results) if isinstance(v, Tensor)}
    own |= {id(GRAD.__get__(t)) for t in tracer.grads_written.values()}
    alive = [weakref.ref(t) for i, t in tracer.born.items() if i not in own]
    tracer.born.clear()
    if any(r() is not None for r in alive):
        gc.collect()  # (cycles: an exception's traceback, say)
    kept = [r() for r in alive if r() is not None]
    if kept:
        return (f"it keeps {len(kept)} tensor(s) it made in Python state between calls (an "
                f"attribute, a list, a buffer made on the first call; shape "
                f"{kept[0].shape}), which a replay would not update")
    return None


def call(fn, args_kwargs):
    args, kwargs = args_kwargs
    return fn(*args, **kwargs)


def name(fn):
    return getattr(fn, "__qualname__", None) or repr(fn)


def differentiated(leaves):
    """Whether the call may need a graph back to its arguments: an argument requires grad
    (the function may differentiate with respect to it, under no_grad too), or forward mode
    or a gradient tape is active."""
    if active[0] and (mode.levels or mode.tapes):
        return True
    return any(isinstance(v, Tensor) and v._rg for v in leaves)


def overlapping(leaves):
    """Whether two distinct tensors among ``leaves`` share memory (the same array included: a
    tensor and its ``detach()``)."""
    arrays = list({id(v): v._a for v in leaves if isinstance(v, Tensor)}.values())
    return any(np.may_share_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


def aliases(leaves):
    """For each tensor argument, the position of the first argument that is the same tensor
    (``f(t, t)`` is another signature than ``f(t, u)``)."""
    first = {}
    return tuple(first.setdefault(id(v), i) for i, v in enumerate(leaves)
                 if isinstance(v, Tensor))


def key(v):
    """A leaf of the signature: a tensor by its layout (strides included: they decide the
    order of a sum), anything else by value (a float by its repr: -0.0 is not 0.0)."""
    if isinstance(v, Tensor):
        return ("tensor", v.shape, v.dtype.str, str(v._dev), v._rg,
                getattr(v._a, "strides", None))
    if isinstance(v, np.ndarray):
        return ("array", v.shape, v.dtype.str, v.tobytes())
    if isinstance(v, (float, complex)):
        return (type(v).__name__, repr(v))
    try:
        hash(v)
    except TypeError:
        raise TypeError(f"ad.compile: an argument is a {type(v).__name__}, which cannot be "
                        "part of a signature; pass tensors, numbers, strings, or tuples, "
                        "lists and dicts of them") from None
    return (type(v).__name__, v)


def flatten(tree):
    """``(leaves, rebuild)``: the leaves of nested tuples, lists and dicts, and the function
    that puts new leaves in their places."""
    leaves = []

    def walk(v):
        if isinstance(v, tuple) and hasattr(v, "_fields"):  # a namedtuple
            parts = [walk(x) for x in v]
            kind = type(v)
            return lambda it: kind(*(p(it) for p in parts))
        if isinstance(v, (tuple, list)):
            parts = [walk(x) for x in v]
            kind = type(v)
            return lambda it: kind(p(it) for p in parts)
        if isinstance(v, dict):
            parts = {k: walk(x) for k, x in v.items()}
            return lambda it: {k: p(it) for k, p in parts.items()}
        leaves.append(v)
        return lambda it: next(it)

    build = walk(tree)
    return leaves, lambda new: build(iter(new))
