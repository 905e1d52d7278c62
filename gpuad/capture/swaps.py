"""What a trace swaps in while it runs, and back out after: ``Tensor``'s ``_a`` and ``_grad``
slots, which note the tensors the run reads and writes (:class:`Data`, :class:`Grad`), and the
CPU backend's array module, whose new arrays are Traced, and whose conversions of traced
data are followed (:data:`MAKING_TRACED`)."""
from threading import get_ident

import numpy as np

from ..backends import tracing
from ..tensor import Tensor
from .traced import Traced, unwrap, wrap

DATA, GRAD = Tensor.__dict__["_a"], Tensor.__dict__["_grad"]


class MakingTraced:
    """NumPy, as the CPU backend's ``xp`` while a trace runs: the arrays it makes from nothing
    (zeros, ones, empty, full, eye, arange) are Traced constants."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def _made(fn):
        def make(*args, **kwargs):
            return wrap(fn(*unwrap(args), **unwrap(kwargs)))
        return make


    @staticmethod
    def _converting(fn):
        """A conversion (asarray): of traced data, a view or a recorded copy; of other data,
        a Traced constant."""
        def convert(data, *args, **kwargs):
            result = fn(unwrap(data), *unwrap(args), **unwrap(kwargs))
            tracer = tracing.active
            if tracer is not None and _holds_traced(data):
                return tracer.copied(result, fn, (unwrap(data), *unwrap(args)), unwrap(kwargs))
            return wrap(result)
        return convert


def _holds_traced(data):
    if isinstance(data, Traced):
        return True
    return isinstance(data, (list, tuple)) and any(_holds_traced(d) for d in data)


for _name in ("zeros", "ones", "empty", "full", "eye", "identity", "arange"):
    setattr(MakingTraced, _name, staticmethod(MakingTraced._made(getattr(np, _name))))
for _name in ("asarray", "array", "ascontiguousarray", "asanyarray"):
    setattr(MakingTraced, _name, staticmethod(MakingTraced._converting(getattr(np, _name))))
MAKING_TRACED = MakingTraced()


class Data:
    """``Tensor._a`` while a trace runs: a tensor made before it is discovered when read (its
    array swapped for a Traced view); one made during it is noted when its array is set, and
    reads as Traced too (a constant's changes are then recorded)."""

    def __get__(self, t, cls=None):
        if t is None:
            return self
        a = DATA.__get__(t)
        tracer = tracing.active
        if tracer is None or isinstance(a, Traced) or tracer.thread != get_ident():
            return a
        return tracer.read(t, a)

    def __set__(self, t, a):
        tracer = tracing.active
        if tracer is not None and id(t) not in tracer.born and tracer.thread == get_ident():
            if any(t is d for d, _, _ in tracer.discovered):
                tracer.invalidate("it gives new data to a tensor made before it (not an "
                                  "in-place update); a compiled function must update such "
                                  "tensors in place")
            else:
                tracer.born[id(t)] = t
        DATA.__set__(t, a)


class Grad:
    """``Tensor._grad`` while a trace runs: notes the ``.grad`` of earlier tensors read before
    the run sets it (the replay needs it the same) and those it sets (a replay sets them)."""

    def __get__(self, t, cls=None):
        if t is None:
            return self
        g = GRAD.__get__(t)
        tracer = tracing.active
        if (tracer is not None and id(t) not in tracer.born and id(t) not in tracer.grads_written
                and tracer.thread == get_ident()):
            tracer.entry_grads.setdefault(id(t), (t, g))
        return g

    def __set__(self, t, g):
        tracer = tracing.active
        if tracer is not None and id(t) not in tracer.born and tracer.thread == get_ident():
            tracer.grads_written[id(t)] = t
            tracer.grads_before.setdefault(id(t), (t, GRAD.__get__(t)))
        GRAD.__set__(t, g)
