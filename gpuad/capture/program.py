"""A traced run as a program that replays it.

:class:`Program` holds the steps of one trace, the buffers they read and write (the trace's
own arrays, kept), the tensors the run read that existed before it (each must still hold the
same array: parameters are updated in place, never replaced) and the ``.grad`` attributes the
run set.
"""
import numpy as np

from ..tensor import Tensor
from .steps import Diverged

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
            if any(isinstance(v, Tensor) and self.shares(v._a, a) for v in leaves):
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

    shares = staticmethod(np.may_share_memory)

    def copy_back(self, arrays):
        """What the run changed in its arguments, into the caller's ``arrays``."""
        for j, final in self.changed:
            np.copyto(arrays[j], final)

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
