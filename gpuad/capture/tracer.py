"""The tracer: one eager run of a compiled function, recorded as steps on arrays.

While it traces, every tensor the function reads that existed before (a parameter, a buffer)
has its array swapped for a :class:`~.traced.Traced` view, and the caller's inputs are Traced
too, so everything computed from them is recorded (see :mod:`.traced`). A step is a call
``fn(*args, **kwargs)`` on plain arrays that writes its result into a buffer of its own (a
ufunc's ``out=``), so a replay can run the same calls again into the same memory.

Arrays are known by their root (the array owning the memory): produced by a step, an input,
a tensor that existed before (whose memory persists from call to call), or a constant (made
during the trace from no traced value: ones for a seed, an index array). A constant that a step
writes into is restored to its first content at the start of each replay.
"""
import os
import sys
import threading
from threading import get_ident

import numpy as np

from .. import _frames
from ..backends import cpu_pool, tracing
from ..devices import device
from ..tensor import Tensor
from .steps import (
    Bound,
    Busy,
    CompileError,
    arrays,
    check,
    into,
    into_each,
    is_view,
    root,
    where,
    zero_d,
)
from .swaps import DATA, GRAD, MAKING_TRACED, Data, Grad
from .traced import Traced, plain, unwrap, wrap

_ONE_AT_A_TIME = threading.Lock()  # (a trace swaps class attributes: one runs at a time)
_TENSOR_FILE = sys.modules[Tensor.__module__].__file__
_HERE = os.path.dirname(__file__)  # (the tracer's package: gpuad/capture)
_NUMPY = os.path.dirname(np.__file__)
#: NumPy functions whose result is about shapes and types, not values: no guard
_METADATA = {np.shape, np.ndim, np.size, np.result_type, np.may_share_memory,
             np.shares_memory, np.iscomplexobj, np.isrealobj, np.can_cast, np.min_scalar_type}
#: NumPy functions that write into their first argument
_WRITERS = {np.copyto, np.put, np.place, np.putmask, np.fill_diagonal, np.put_along_axis}


def _wrapped(a):
    """The plain array that ``a`` wraps whole (a Traced view of all of it), else ``a``."""
    b = a.base
    if (a.__class__ is Traced and b is not None and b.__class__ is np.ndarray
            and a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]):
        return b
    return a


class Tracer:
    """Records one run; ``steps`` are ``(fn, args, kwargs)``, ``kinds`` say what each is
    ("compute", "guard", "opaque", "draw")."""

    def __init__(self, name, fallback):
        self.name, self.fallback = name, fallback
        self.steps, self.kinds = [], []
        self.roots = {}  # id(root) -> ("step", n) | ("input", n) | ("tensor", n) | "written"
        self.keep = []  # what the ids above refer to, alive while the tracer is
        self.restores = []  # (constant written by a step, its content before)
        self.discovered = []  # (tensor, its plain array, the Traced view it reads as meanwhile)
        self.entry_grads = {}  # id -> (tensor, its .grad when first read, before any write)
        self.grads_written = {}  # id -> tensor whose .grad the run sets
        self.grads_before = {}  # id -> (tensor, its .grad before the run first set it)
        self.born = {}  # id -> tensor made during the run
        self.first_effect = None  # index of the first step writing memory that persists
        self.invalid = None  # why this run cannot be replayed, if it cannot
        self._pauses = 0  # (opaque calls running)
        self.draws = []  # backends whose generators the steps draw from
        self.states = {}  # (id, name) -> (object, name, value): Python state read
        self.thread = get_ident()  # (gpuad's work in other threads meanwhile is not traced)
        self.written = set()  # ids of the roots steps wrote into
        self.arguments = {}  # id of a tensor argument -> its static input
        self.argument_arrays = []  # the arrays of the tensor arguments (the caller's)
        self.cuda_device = None  # the device of a CUDA tensor the run read, if it read one

    @property
    def paused(self):
        """Whether array work now runs without being recorded: inside an opaque call, or in
        another thread than the one tracing."""
        return self._pauses > 0 or get_ident() != self.thread

    # ---- the run ---------------------------------------------------------------------------
    def __enter__(self):
        other = tracing.active
        if other is not None and other.thread == self.thread:
            raise CompileError(f"ad.compile: {self.name} was called while another compiled "
                               "function traces; nest the plain functions instead")
        self.cpu = device("cpu").backend
        if not _ONE_AT_A_TIME.acquire(blocking=False):
            raise Busy  # (another thread traces: this call runs eagerly, never waits on it)
        tracing.active = self
        Tensor._a, Tensor._grad = Data(), Grad()
        # gpuad takes a result of another array type for a scalar to wrap: Traced is the type;
        # and arrays the backend makes are Traced, so that what it writes into them is recorded
        if self.follows_cpu:
            self.cpu.array_type, self.cpu.xp = Traced, MAKING_TRACED
        return self

    #: whether the CPU's array work is followed (a CUDA graph's recorder follows none)
    follows_cpu = True

    def __exit__(self, *exc):
        Tensor._a, Tensor._grad = DATA, GRAD
        if self.follows_cpu:
            self.cpu.array_type, self.cpu.xp = np.ndarray, np
        tracing.active = None
        _ONE_AT_A_TIME.release()
        for t, a, v in self.discovered:
            if DATA.__get__(t) is v:
                DATA.__set__(t, a)
        for t in self.born.values():  # (what outlives the run holds plain arrays)
            a = DATA.__get__(t)
            if isinstance(a, Traced):
                DATA.__set__(t, a.view(np.ndarray))

    def input(self, a):
        """A static input buffer holding a copy of ``a``, with ``a``'s strides (they decide
        the order of a sum: the bits), as a Traced array."""
        buf = np.array(a, copy=True, order="K")
        if buf.strides != a.strides:  # (a strided view: new memory of the same span)
            span = [s * (n - 1) for s, n in zip(a.strides, a.shape)] if a.size else []
            low = sum(x for x in span if x < 0)
            raw = np.empty(sum(x for x in span if x > 0) - low + a.itemsize, np.uint8)
            buf = np.ndarray(a.shape, a.dtype, raw, -low, a.strides)
            np.copyto(buf, a)
        self._own(buf, ("input", len(self.keep)))
        return wrap(buf)

    def invalidate(self, reason):
        if self.invalid is None:
            self.invalid = reason

    # ---- recording -------------------------------------------------------------------------
    def _own(self, a, kind):
        r = root(a)
        self.roots.setdefault(id(r), kind)
        self.keep.append(r)

    def record(self, fn, args, kwargs, kind="compute", produces=()):
        self.steps.append((fn, args, kwargs))
        self.kinds.append(kind)
        for a in produces:
            self._own(a, ("step", len(self.steps) - 1))

    def wrote(self, a):
        """Whether a step wrote into ``a``'s memory."""
        return id(root(a)) in self.written

    def _written(self, a):
        r = root(a)
        self.written.add(id(r))
        kind = self.roots.get(id(r))
        if kind is None:  # a constant: restored before each replay
            self.restores.append((r, r.copy()))
            self._own(r, "written")
        elif kind[0] == "tensor" and self.first_effect is None:
            self.first_effect = len(self.steps)

    def call(self, fn, args, kwargs, writes):
        """Run and record ``fn``, which writes into ``writes`` (a constant among them is
        saved first: each replay starts it from there)."""
        if self.paused:
            return fn(*args, **kwargs)
        for a in arrays(writes):
            self._written(a)
        result = fn(*args, **kwargs)
        self.record(fn, args, kwargs)
        return result

    def ufunc(self, uf, method, inputs, kwargs):
        fn = uf if method == "__call__" else getattr(uf, method)
        args = unwrap(inputs)
        out = kwargs.get("out")
        if out is not None and all(o is None for o in out):
            del kwargs["out"]
            out = None
        if self.paused or method == "at":
            kw = dict(kwargs, out=unwrap(out)) if out is not None else kwargs
            return self.call(fn, args, kw, writes=args[:1] if method == "at" else out)
        if out is not None:
            self.call(fn, args, dict(kwargs, out=unwrap(out)), writes=unwrap(out))
            return out[0] if len(out) == 1 else out
        result = fn(*args, **kwargs)
        many = isinstance(result, tuple)
        arrays = tuple(zero_d(r) for r in (result if many else (result,)))
        self.record(fn, args, dict(kwargs, out=arrays), produces=arrays)
        wrapped = tuple(wrap(a) for a in arrays)
        return wrapped if many else wrapped[0]

    def function(self, func, args, kwargs):
        out = kwargs.get("out")
        args, kwargs = unwrap(args), unwrap(kwargs)
        if self.paused:
            return func(*args, **kwargs)
        if func in _WRITERS:
            return self.call(func, args, kwargs, writes=args[:1])
        if out is not None:
            self.call(func, args, kwargs, writes=kwargs["out"])
            return out
        return self.adopt(func(*args, **kwargs), func, args, kwargs)

    def adopt(self, result, func, args, kwargs):
        """The result of ``func(*args, **kwargs)``, with the step that makes it again."""
        if isinstance(result, (np.ndarray, np.generic)):
            return self.copied(result, func, args, kwargs)
        if isinstance(result, (tuple, list)) and result and all(
                isinstance(r, np.ndarray) for r in result):
            parts = [r if is_view(r, args) else None for r in result]
            fresh = [r for r, p in zip(result, parts) if p is None]
            if fresh:
                self.record(into_each, (tuple(result), tuple(p is None for p in parts), func,
                                         args, kwargs), {}, produces=fresh)
            return type(result)(wrap(r) for r in result)
        if isinstance(result, (bool, int, float, complex)) and func not in _METADATA:
            self.guard(func, args, result, kwargs)
        return result

    def copied(self, result, fn, args, kwargs):
        """``result`` of ``fn(*args, **kwargs)``: a view of an argument (nothing to replay) or
        a new array, which a step makes again in the same buffer."""
        if self.paused:
            return result
        if isinstance(result, np.generic):
            result = np.asarray(result)
        elif not isinstance(result, np.ndarray):
            return result
        elif is_view(result, args):
            return wrap(result)
        if fn in (np.ndarray.astype, np.ndarray.copy):
            self.record(np.copyto, (result, args[0]), {"casting": "unsafe"}, produces=(result,))
        else:
            self.record(into, (result, fn, args, kwargs), {}, produces=(result,))
        return wrap(result)

    def guard(self, compute, args, value, kwargs=None):
        if not self.paused:
            fn = compute if kwargs is None else Bound(compute, kwargs)
            self.record(check, (fn, args if isinstance(args, tuple) else (args,), value), {},
                        kind="guard")

    def finalize(self, new, obj):
        if (self.paused or not isinstance(obj, np.ndarray) or not new.size
                or np.may_share_memory(new, obj)):
            return  # (a view, or nothing to compute)
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(_HERE):
            frame = frame.f_back  # (the code that asked NumPy, past the tracer's own)
        self.invalidate("a NumPy operation that gpuad's tracer does not follow made a new "
                        f"array from a traced one, at {where(frame)}")

    # ---- the hooks of gpuad.backends.tracing -------------------------------------------------
    def opaque(self, fn, args):
        if self.paused:
            return fn(*args)
        self._pauses += 1
        try:
            result = fn(*args)
        finally:
            self._pauses -= 1
        if self.first_effect is None:
            self.first_effect = len(self.steps)
        # (its own arguments only: a dict or list among them is state it keeps, not a copy)
        self.record(fn, tuple(plain(a) for a in args), {}, kind="opaque")
        return result

    def host(self, fn, args):
        return self.opaque(fn, args)  # (on the CPU, a step like any opaque one)

    def draw(self, fn, args):
        result = fn(*args)
        if self.paused:
            return result
        self.record(into, (result, fn, args, {}), {}, kind="draw", produces=(result,))
        backend = getattr(fn, "__self__", None)
        if backend is not None and backend not in self.draws:
            self.draws.append(backend)
        return wrap(result)

    def state(self, obj, name, value):
        if not self.paused:
            self.states.setdefault((id(obj), name), (obj, name, value))

    def storage(self, a):
        """``(class, base)`` of ``a``'s counterpart in the eager run: a Traced array that
        wraps a plain one whole stands for it, and a view of such a wrapper for a plain view
        of the plain array."""
        p = _wrapped(a)
        if p is not a:
            return p.__class__, cpu_pool.base(p)
        base = cpu_pool.base(a)
        if base is None:
            return a.__class__, None
        p = _wrapped(base)
        return (a.__class__, base) if p is base else (p.__class__, p)

    def host_read(self, tensor, what, guard=True, depth=2):
        if self.paused:
            return
        frame = sys._getframe(depth)  # (the reader: past the Tensor method, and past NumPy)
        while frame is not None and (frame.f_code.co_filename == _TENSOR_FILE
                                     or frame.f_code.co_filename.startswith(_NUMPY)):
            frame = frame.f_back
        if frame is not None and _frames.inside_gpuad(frame):
            self.own_read(tensor, what, guard)
        else:
            self.user_read(frame, what)

    def own_read(self, tensor, what, guard):
        """gpuad reading for itself (a shape from a tensor): a replay checks the values."""
        a = plain(DATA.__get__(tensor))
        if guard and isinstance(a, np.ndarray):
            self.guard(np.copy, (a,), a.copy())

    def user_read(self, frame, what):
        """The function's own code reads values on the host at ``frame``: refused, naming it."""
        message = (f"ad.compile: {self.name} reads a tensor's values on the host ({what}) at "
                   f"{where(_frames.user_frame(frame))}; a replay runs no Python, so it "
                   "cannot repeat what is done with them. Return the tensor from the function "
                   "instead (and read it outside), or pass fallback='eager' to run such a "
                   "function eagerly")
        if self.fallback == "eager":
            self.invalidate(message)
        else:
            raise CompileError(message)

    # ---- tensors read and written -----------------------------------------------------------
    def read(self, t, a):
        """``t``'s array ``a``, read while tracing (``t`` made before the run, or during it)."""
        if id(t) in self.born:  # a constant made during the run: followed from here on
            if a.__class__ is np.ndarray:
                a = a.view(Traced)
                DATA.__set__(t, a)
            return a
        if a.__class__ is not np.ndarray:
            self.cuda_device = t._dev
            self.invalidate(f"it uses a {t._dev} tensor that is not an argument; a compiled "
                            "function with CUDA tensor arguments (or with a CUDA default "
                            "device) is captured as a CUDA graph, one with CPU ones traced")
            return a
        return self.discover(t, a)

    def discover(self, t, a):
        """A tensor made before the run is read: it reads as a Traced view from now on. An
        argument of the call read from outside too reads as its static input (the same memory,
        as in the eager call); the call, like one whose arguments overlap what it reads, runs
        eagerly from then on."""
        static = self.arguments.get(id(t))
        if static is not None or any(np.may_share_memory(a, b) for b in self.argument_arrays):
            self.invalidate("it reads one of its tensor arguments (or memory one shares) also "
                            "from outside; such calls run eagerly")
        if static is not None:
            v = DATA.__get__(static)
            self.discovered.append((t, a, v))
            DATA.__set__(t, v)
            return v
        v = a.view(Traced)
        self._own(a, ("tensor", len(self.discovered)))
        self.discovered.append((t, a, v))
        DATA.__set__(t, v)
        return v
