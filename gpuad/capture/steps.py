"""The steps a trace records (:mod:`.tracer`), besides the ufunc calls themselves: a result
computed again into its buffer (:func:`into`), a guard on a value read on the host
(:func:`check`); and the exceptions of ``ad.compile``."""
import numpy as np


class CompileError(RuntimeError):
    """``ad.compile`` cannot replay what the function does (the message names the line)."""


class Busy(Exception):
    """Another thread is tracing (a trace swaps class attributes: one runs at a time)."""


class Diverged(Exception):
    """A replay read a value on the host that differs from the trace's: the recorded steps no
    longer describe what the function would do."""


def root(a):
    """The array owning ``a``'s memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def into(dst, fn, args, kwargs):
    """``fn(*args, **kwargs)`` copied into ``dst`` (a step for results that cannot be written
    in place); a result of another shape means the function has changed course."""
    value = fn(*args, **kwargs)
    if np.shape(value) != dst.shape:
        raise Diverged(f"{getattr(fn, '__name__', fn)} gave shape {np.shape(value)}, the "
                       f"trace {dst.shape}")
    np.copyto(dst, value, casting="unsafe")


def check(compute, args, expected):
    """A guard: ``compute(*args)`` is still ``expected``."""
    value = compute(*args)
    if not same(value, expected):
        raise Diverged(f"a value read on the host was {expected!r} when traced, now {value!r}")


def same(a, b):
    """Equal values, nan equal to nan."""
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # (not numbers)
        return a == b


def zero_d(r):
    """A ufunc's result as an array: NumPy gives a scalar for 0-d inputs (a NumPy scalar, or
    any Python object from an object loop, as ``np.frompyfunc`` makes), a replay needs an
    output buffer of the loop's type."""
    if isinstance(r, np.ndarray):
        return r
    if isinstance(r, np.generic):
        return np.asarray(r)
    out = np.empty((), dtype=object)
    out[()] = r
    return out


def arrays(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from arrays(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from arrays(v)


def is_view(result, args):
    return any(np.may_share_memory(result, a) for a in arrays(args))


def where(frame):
    """``file:line`` of ``frame``."""
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "?"


def into_each(results, fresh, fn, args, kwargs):
    values = fn(*args, **kwargs)
    for dst, value, new in zip(results, values, fresh):
        if new:
            into(dst, lambda v=value: v, (), {})


class Bound:
    """``fn`` with keyword arguments, called with positional ones (a guard's computation)."""

    def __init__(self, fn, kwargs):
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, *args):
        return self.fn(*args, **self.kwargs)
