"""A traced run as a program that replays it, and the structure two runs are compared by.

:class:`Program` holds the steps of one trace, the buffers they read and write (the trace's
own arrays, kept), the tensors the run read that existed before it (each must still hold the
same array: parameters are updated in place, never replaced) and the ``.grad`` attributes the
run set. :func:`structure` describes a trace with its arrays named by role and position, not
by address, so that two traces of the same function can be compared: equal structures mean
the function did the same thing on new values, and its steps can be replayed.
"""
import types

import numpy as np

from ..tensor import Tensor
from .tracer import Diverged, root

_GRAD = Tensor.__dict__["_grad"]


class Program:
    """The replay of a trace (``tracer``, after its run) whose static inputs are ``inputs``."""

    def __init__(self, tracer, inputs):
        self.inputs = [np.asarray(i).view(np.ndarray) for i in inputs]
        self.tensors = [(t, a) for t, a, _ in tracer.discovered]
        read = {id(t) for t, _ in self.tensors}
        self.entry_grads = [(t, g, g is not None and id(g) in read)
                            for t, g in tracer.entry_grads.values()]
        self.restores = tracer.restores
        self.steps = [_positional_out(step) for step in tracer.steps]
        self.first_effect = len(self.steps) if tracer.first_effect is None \
            else tracer.first_effect
        self.grads = [(t, _GRAD.__get__(t)) for t in tracer.grads_written.values()]
        # (a replay that diverges runs eagerly: the generators it drew from are put back)
        self.generators = tracer.draws
        self.late_guards = any(k == "guard" and i > self.first_effect
                               for i, k in enumerate(tracer.kinds))
        self.states = list(tracer.states.values())
        self.flags = [(t, t._rg) for t, _ in self.tensors]

    def fits(self):
        """Whether the Python state the trace read (a module's train/eval mode) is the same."""
        for obj, name, value in self.states:
            if getattr(obj, name) != value:
                return False
        return True

    def stale(self, leaves=()):
        """Why the program no longer fits the tensors it reads (or the arguments ``leaves``
        share memory with them), or None."""
        for t, a in self.tensors:
            if t._a is not a:
                return (f"a tensor it reads (shape {a.shape}, {a.dtype}) was given new data, "
                        "not updated in place")
            if any(isinstance(v, Tensor) and np.may_share_memory(v._a, a) for v in leaves):
                return ("an argument shares memory with a tensor it reads from outside (the "
                        "replay would read a stale copy)")
        for t, rg in self.flags:
            if t._rg != rg:
                return "a tensor it reads was switched to requires_grad=" + str(t._rg)
        for t, g, read in self.entry_grads:
            now = _GRAD.__get__(t)
            if (now is not g) if read else ((now is None) != (g is None)):
                return "the .grad of a tensor it reads is not what it was when traced"
        return None

    def run(self, arrays):
        """Replay with ``arrays`` copied into the static inputs. Raises :class:`Diverged`
        (with ``.before_effects``) where a value read on the host differs from the trace's."""
        for buf, a in zip(self.inputs, arrays):
            np.copyto(buf, a)
        for buf, content in self.restores:
            np.copyto(buf, content)
        states = [b._rng.bit_generator.state for b in self.generators]
        i = 0
        try:
            with np.errstate(all="ignore"):
                for i, (fn, args, kwargs) in enumerate(self.steps):  # noqa: B007 (i: below)
                    fn(*args, **kwargs)
        except Diverged as e:
            e.before_effects = i < self.first_effect
            for b, state in zip(self.generators, states):
                b._rng.bit_generator.state = state
            raise
        for t, g in self.grads:
            _GRAD.__set__(t, g)


#: ufuncs that take no positional output (NumPy deprecates a third positional argument)
_KEYWORD_OUT = {np.maximum, np.minimum}


def _positional_out(step):
    """A ufunc's call with only ``out=`` for keyword, its output passed positionally (the
    same call, a tenth of a microsecond faster: this is most of a small step's replay)."""
    fn, args, kwargs = step
    if (type(fn) is np.ufunc and fn not in _KEYWORD_OUT and len(args) == fn.nin
            and list(kwargs) == ["out"]):
        return fn, (*args, *kwargs["out"]), {}
    return step


def structure(tracer, results):
    """``(tokens, constants)``: the steps with arrays named by role, then the arrays of
    ``results`` and of the ``.grad`` tensors the run set, and the constants' values. Two traces
    with equal tokens and equal constants did the same on different values (a result the
    steps do not make is a constant: its value shows whether it depends on the call)."""
    consts, contents = {}, []
    restored = {id(r): content for r, content in tracer.restores}

    def array(a):
        r = root(a)
        kind = tracer.roots.get(id(r))
        if kind is None or kind == "written":
            if id(r) not in consts:
                consts[id(r)] = len(contents)
                contents.append(restored.get(id(r), r))
            kind = ("const", consts[id(r)])
        if kind[0] == "tensor":  # (which tensor: another one read in the same role differs)
            kind = (*kind, id(tracer.discovered[kind[1]][0]))
        offset = a.__array_interface__["data"][0] - r.__array_interface__["data"][0]
        return ("array", kind, offset, a.shape, a.strides, a.dtype.str)

    def tok(v, held=False):
        """``held``: the arguments of an opaque call, whose lists and dicts are its state (by
        identity: their contents change from call to call)."""
        if isinstance(v, np.ndarray):
            return array(v)
        if isinstance(v, (list, dict)) and held:
            return ("object", id(v))
        if isinstance(v, dict):
            return ("dict", tuple((k, tok(x)) for k, x in v.items()))
        if isinstance(v, (tuple, list)):
            return (type(v).__name__, tuple(tok(x, held) for x in v))
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes, slice,
                                       np.dtype, type(Ellipsis))):
            return (type(v).__name__, repr(v))
        if isinstance(v, np.generic):
            return ("scalar", v.dtype.str, v.tobytes())
        if isinstance(v, types.FunctionType):
            cells = tuple(tok(c.cell_contents) for c in v.__closure__ or ())
            return ("function", id(v.__code__), cells, tok(v.__defaults__))
        if isinstance(v, types.MethodType):
            return ("method", id(v.__self__), id(v.__func__))
        if isinstance(v, types.BuiltinMethodType) and v.__self__ is not None:
            return ("builtin", id(v.__self__), v.__name__)  # (ufunc.reduce: made per use)
        if hasattr(v, "fn") and hasattr(v, "kwargs"):  # (a guard's bound computation)
            return ("bound", tok(v.fn), tuple((k, tok(x)) for k, x in v.kwargs.items()))
        return ("object", id(v))

    tokens = [(tok(fn), tok(args, kind == "opaque"),
               tuple((k, tok(x)) for k, x in kwargs.items()), kind)
              for (fn, args, kwargs), kind in zip(tracer.steps, tracer.kinds)]
    grads = [_GRAD.__get__(t) for t in tracer.grads_written.values()]
    tokens.append(("results", tok(list(results)),
                   tok([None if g is None else g._a for g in grads])))
    return tokens, contents


def first_difference(a, b):
    """Where two structures first differ, in words."""
    (ta, ca), (tb, cb) = a, b
    for i, (x, y) in enumerate(zip(ta, tb)):
        if x != y:
            return f"step {i} ({_name(x)} in one call, {_name(y)} in the next)"
    if len(ta) != len(tb):
        return f"the number of steps ({len(ta)}, then {len(tb)})"
    for i, (x, y) in enumerate(zip(ca, cb)):
        if not same_array(x, y):
            return f"the value of constant {i} (shape {np.shape(x)}): it depends on the call"
    return "nothing"


def _name(token):
    fn = token[0]
    return f"a {token[3]} step" if fn[0] != "object" else f"a {token[3]} step of another function"


def same_array(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def same_structure(a, b):
    (ta, ca), (tb, cb) = a, b
    return ta == tb and len(ca) == len(cb) and all(same_array(x, y) for x, y in zip(ca, cb))
