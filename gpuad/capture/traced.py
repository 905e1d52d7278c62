"""Arrays that report what is computed from them, while a compiled function traces.

A :class:`Traced` array is a NumPy array (a view of the same memory) whose ufuncs, NumPy
functions and copying methods go to the active tracer (:mod:`.tracer`) instead of running
directly: the tracer runs them on plain arrays and records each as a step that a replay
repeats into the same output buffer. Views (slicing, transposes, reshapes that need no copy)
need no step: a view of a buffer stays a view of it. Reading values on the host (``bool(a)``,
``a.item()``, ``float(a)``) records a guard: a replay checks that the value read is the same.

Outside a trace (an array that outlived its trace) a Traced array behaves as a plain one.
"""
import operator

import numpy as np

from ..backends import tracing


def plain(a):
    """``a`` as a plain ndarray (a view of the same memory) where it is Traced."""
    return a.view(np.ndarray) if isinstance(a, Traced) else a


def unwrap(value):
    """``value`` with every Traced array in it (in tuples, lists and dicts) made plain."""
    if isinstance(value, Traced):
        return value.view(np.ndarray)
    if isinstance(value, (tuple, list)):
        return type(value)(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def wrap(a):
    """A Traced view of the plain array ``a`` (other values as they are)."""
    return a.view(Traced) if isinstance(a, np.ndarray) else a


def _tracer():
    return tracing.active


class Traced(np.ndarray):
    """An ndarray whose computations the active tracer records (see the module's text)."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        tracer = _tracer()
        if tracer is None:
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = unwrap(out)
            return getattr(ufunc, method)(*unwrap(inputs), **kwargs)
        return tracer.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        tracer = _tracer()
        if tracer is None:
            return func(*unwrap(args), **unwrap(kwargs))
        return tracer.function(func, args, kwargs)

    def __array_finalize__(self, obj):
        tracer = _tracer()
        if tracer is not None:
            tracer.finalize(self, obj)

    # ---- methods that copy without a ufunc or a NumPy function: each is one recorded copy
    def _copy(self, method, *args, **kwargs):
        source = self.view(np.ndarray)
        tracer = _tracer()
        result = getattr(source, method)(*args, **kwargs)
        if tracer is None or not isinstance(result, np.ndarray):
            return result
        return tracer.copied(result, getattr(np.ndarray, method), (source, *args), kwargs)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        return self._copy("astype", dtype, order=order, casting=casting, copy=copy)

    def copy(self, order="C"):
        return self._copy("copy", order)

    def flatten(self, order="C"):
        return self._copy("flatten", order)

    def __getitem__(self, key):
        tracer = _tracer()
        source = self.view(np.ndarray)
        key = unwrap(key)
        result = source[key]
        if tracer is None:
            return result
        return tracer.copied(result, operator.getitem, (source, key), {})

    def __setitem__(self, key, value):
        tracer = _tracer()
        args = (self.view(np.ndarray), unwrap(key), unwrap(value))
        if tracer is None:
            operator.setitem(*args)
        else:
            tracer.call(operator.setitem, args, {}, writes=args[0])

    def fill(self, value):
        tracer = _tracer()
        args = (self.view(np.ndarray), unwrap(value))
        if tracer is None:
            np.ndarray.fill(*args)
        else:
            tracer.call(np.ndarray.fill, args, {}, writes=args[0])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ---- methods that NumPy runs in C: the NumPy function of the same name dispatches here
    def dot(self, b, out=None):
        return np.dot(self, b, out=out)

    def reshape(self, *shape, order="C"):
        return np.reshape(self, shape[0] if len(shape) == 1 else shape, order=order)

    def ravel(self, order="C"):
        return np.ravel(self, order=order)

    def argmax(self, axis=None, out=None, *, keepdims=False):
        return np.argmax(self, axis=axis, out=out, keepdims=keepdims)

    def argmin(self, axis=None, out=None, *, keepdims=False):
        return np.argmin(self, axis=axis, out=out, keepdims=keepdims)

    def argsort(self, axis=-1, kind=None, order=None):
        return np.argsort(self, axis=axis, kind=kind, order=order)

    def nonzero(self):
        return np.nonzero(self)

    def cumsum(self, axis=None, dtype=None, out=None):
        return np.cumsum(self, axis=axis, dtype=dtype, out=out)

    def round(self, decimals=0, out=None):
        return np.round(self, decimals=decimals, out=out)

    def repeat(self, repeats, axis=None):
        return np.repeat(self, repeats, axis=axis)

    def take(self, indices, axis=None, out=None, mode="raise"):
        return np.take(self, indices, axis=axis, out=out, mode=mode)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return np.diagonal(self, offset, axis1, axis2)

    def sort(self, axis=-1, kind=None, order=None):
        tracer = _tracer()
        args = (self.view(np.ndarray),)
        kwargs = dict(axis=axis, kind=kind, order=order)
        if tracer is None:
            np.ndarray.sort(*args, **kwargs)
        else:
            tracer.call(np.ndarray.sort, args, kwargs, writes=args[0])

    # ---- values read on the host: a guard each
    def _read(self, convert):
        value = convert(self.view(np.ndarray))
        tracer = _tracer()
        if tracer is not None:
            tracer.guard(convert, self.view(np.ndarray), value)
        return value

    def __bool__(self):
        return self._read(bool)

    def __float__(self):
        return self._read(float)

    def __int__(self):
        return self._read(int)

    def __index__(self):
        return self._read(operator.index)

    def __complex__(self):
        return self._read(complex)

    def item(self, *args):
        return self._read(lambda a: a.item(*args))

    def tolist(self):
        return self._read(np.ndarray.tolist)
