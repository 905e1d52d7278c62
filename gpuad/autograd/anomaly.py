"""Anomaly mode: find the op where a nan or inf first appeared, and the user's line that ran it.

    with ad.autograd.detect_anomaly():      # or ad.autograd.set_detect_anomaly(True)
        loss = model(x)
        loss.backward()                     # RuntimeError: SqrtBackward ... at train.py:12

While the mode is on:

- every node made records where the user's code ran its forward op: the first frame outside
  the gpuad package (file, line, function; the source text is read when an error is shown).
- ``check_nan=True``: during a backward pass (``backward``, ``ad.grad``,
  ``GradientTape.gradient``, ``create_graph`` passes and the transforms built on them), each
  derivative rule's result, the gradient for one input of a node (after broadcasting is undone
  and its dtype cast, before it is added to other gradients of that input), is checked. If it
  holds nan or ±inf while the rule's inputs did not, ``RuntimeError`` names the node
  (``SqrtBackward``), the input, the shapes and the forward line. The inputs of a rule are the
  gradient that reached the node (for a multi-output custom function: every output's) and
  every value the node saved for its rules: its output when the rule reads it, and the
  tensors, arrays and Python numbers it saved (all of them: a rule may read any).
- any other error raised while a node's rules run (a saved tensor changed in place, a custom
  rule's wrong shape, ``check_nan=False`` included) gets a note naming the node and its forward
  line, as PyTorch prints the forward traceback.
- ``check_forward=True``: each op's output is checked when it is computed, and an op whose
  output holds nan or ±inf while its tensor and number arguments did not raises
  ``RuntimeError`` there. (Ops that derivative rules run inside a backward pass are left to
  the rule's check, which names the node.)

The switch is global to all threads, as PyTorch's (grad mode, by contrast, is per thread): it
is a debugging aid turned on for a whole program. The contexts restore the previous state on
exit. While the mode is on, every op takes the recording path for special cases (as under a
gradient tape); with it off the plain path spends nothing on it.

Cost: a frame walk per recorded op, and one finiteness reduction per rule (on CUDA one kernel
whose bool is read back, never a host copy of the array); see README's "Debugging nan".
"""
import cmath
import functools
import linecache
import sys
from types import CodeType

from .._frames import inside_gpuad, user_frame
from ..tensor import Tensor
from .grad_mode import anomaly, set_anomaly
from .node import OutputGrads

_passes: set[CodeType] = set()  # the code of the engine's backward pass (see backward_pass)


def backward_pass(fn):
    """Mark ``fn`` (the engine's) as running a backward pass: an op run below one of its
    frames is part of a derivative rule (see :func:`_in_backward`). Returns ``fn``."""
    _passes.add(fn.__code__)
    return fn


class _Settings:
    """The mode's options, and its entry points for the recording path (``on_op``) and the
    backward engine (``check_rule``: None unless ``check_nan``)."""

    __slots__ = ("check_nan", "check_forward", "check_rule")

    def __init__(self, check_nan, check_forward):
        self.check_nan = bool(check_nan)
        self.check_forward = bool(check_forward)
        self.check_rule = _check_rule if self.check_nan else None

    def on_op(self, op, inputs, out):
        """The recording path's last step: check the forward result (with ``check_forward``)
        and note the user's line on the new node. Returns ``out``."""
        if (self.check_forward and not out._dev._backend.all_finite(out._a)
                and _finite(inputs, out._dev._backend) and not _in_backward(sys._getframe(1))):
            raise RuntimeError(
                f"gpuad: anomaly mode: the op {op.name} returned {_bad(out)} in its output, "
                f"shape {out.shape} {out.dtype}, although its inputs were finite (shapes "
                f"[{_shapes(inputs)}]). It ran {_place(_where(sys._getframe(1)))}")
        node = out._grad_fn
        if node is not None:  # (frame 3: the op's own, below record and _record_special)
            node.where = _where(sys._getframe(3))
        return out


class detect_anomaly:
    """Turn the anomaly mode on inside a ``with`` block, or while a decorated function runs
    (``@detect_anomaly()``, or bare ``@detect_anomaly``); the previous state comes back after.

    ``check_nan``: raise at the first derivative rule that turns finite values into nan/inf
    (False: only record the forward lines, which errors raised in backward then name).
    ``check_forward``: also raise at the first op whose output turns finite inputs into nan/inf.

    >>> x = ad.tensor([0.0, 4.0], requires_grad=True)
    >>> with ad.autograd.detect_anomaly():  # d sqrt(x) / dx = 1 / (2 sqrt(x)): inf at 0
    ...     x.sqrt().sum().backward()
    Traceback (most recent call last):
    ...
    RuntimeError: gpuad: anomaly mode: SqrtBackward returned inf in the gradient for input 0 ...
    """

    def __init__(self, check_nan=True, check_forward=False):
        func = None
        if callable(check_nan):  # the bare decorator: @detect_anomaly
            func, check_nan = check_nan, True
        self._settings = _Settings(check_nan, check_forward)
        self._prev = []
        if func is not None:
            self._func = self(func)
            functools.update_wrapper(self, func)

    def __enter__(self):
        self._prev.append(set_anomaly(self._settings))
        return self

    def __exit__(self, *exc):
        set_anomaly(self._prev.pop())

    def __call__(self, *args, **kwargs):
        if hasattr(self, "_func"):
            return self._func(*args, **kwargs)
        (func,) = args
        settings = self._settings

        @functools.wraps(func)
        def wrapper(*a, **k):
            prev = set_anomaly(settings)
            try:
                return func(*a, **k)
            finally:
                set_anomaly(prev)

        return wrapper


class set_detect_anomaly(detect_anomaly):
    """Switch the anomaly mode on or off now (``mode``); as a context or decorator the previous
    state is restored afterwards, as ``set_grad_enabled``.

    >>> with ad.autograd.set_detect_anomaly(True):
    ...     print(ad.autograd.is_anomaly_enabled())
    True
    >>> ad.autograd.is_anomaly_enabled()
    False
    """

    def __init__(self, mode, check_nan=True, check_forward=False):
        self._settings = _Settings(check_nan, check_forward) if mode else None
        self._prev = [set_anomaly(self._settings)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        set_anomaly(self._prev[0])

    def __call__(self, func):
        set_anomaly(self._prev[0])  # decorating must not change the mode now
        return detect_anomaly.__call__(self, func)


def is_anomaly_enabled():
    """Whether the anomaly mode is on.

    >>> ad.autograd.is_anomaly_enabled()
    False
    >>> with ad.autograd.detect_anomaly():
    ...     print(ad.autograd.is_anomaly_enabled())
    True
    """
    return anomaly[0] is not None


def is_anomaly_check_nan_enabled():
    """Whether the anomaly mode is on and checks the derivative rules for nan/inf.

    >>> with ad.autograd.detect_anomaly(check_nan=False):
    ...     print(ad.autograd.is_anomaly_enabled(), ad.autograd.is_anomaly_check_nan_enabled())
    True False
    """
    return anomaly[0] is not None and anomaly[0].check_nan


# ---- where an op ran -----------------------------------------------------------------------

def _where(frame):
    """(file, line, function) of the first frame outside gpuad from ``frame`` up; None if
    there is none."""
    frame = user_frame(frame)
    if frame is None:
        return None
    code = frame.f_code
    return code.co_filename, frame.f_lineno, code.co_name


def _in_backward(frame):
    """Whether gpuad's frames below the user's code, from ``frame`` up, include a backward
    pass: then an op is part of a derivative rule, which the rule's own check covers."""
    while frame is not None and inside_gpuad(frame):
        if frame.f_code in _passes:
            return True
        frame = frame.f_back
    return False


# ---- backward: the check of each rule, and the forward line on errors ---------------------

def _check_rule(node, i, g, saved, gi):
    """Raise if ``gi``, the gradient node's rule gave for input ``i`` from the output gradient
    ``g`` and the saved values ``saved``, holds nan/inf while ``g`` and ``saved`` do not (the
    inputs are read only when the result is bad)."""
    if gi.__class__ is OutputGrads:  # (the gradients of a multi-output custom node's outputs)
        return
    backend = gi._dev._backend
    if backend.all_finite(gi._a) or not _finite((g,) + tuple(saved), backend):
        return
    edges = node.taped or node.parents
    exc = RuntimeError(
        f"gpuad: anomaly mode: {node.name()} returned {_bad(gi)} in the gradient for input {i} "
        f"(of {len(edges)}) of its op, shape {gi.shape} {gi.dtype}, although the rule's inputs "
        f"were finite: the output gradient, shape {_shapes((g,))}, and the {_count(saved)} "
        f"saved for the rule. The op's inputs have shapes [{_shapes(edges)}], its output "
        f"{node.shape}. Its forward op ran {_place(getattr(node, 'where', None))}")
    exc._gpuad_anomaly = True
    raise exc


def name_forward_line(exc, node):
    """Add a note to ``exc``, raised while ``node``'s rules ran, naming the node and where its
    forward op ran (once: an inner pass's note names the innermost node)."""
    if getattr(exc, "_gpuad_anomaly", False):
        return
    try:
        exc._gpuad_anomaly = True
    except AttributeError:  # (an exception type without attributes of its own)
        return
    note = (f"gpuad anomaly mode: raised in the backward of {node.name()}, whose forward op ran "
            f"{_place(getattr(node, 'where', None))}")
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):  # (Python 3.10: no notes)
        exc.args = (f"{exc.args[0]}\n{note}",)


# ---- helpers --------------------------------------------------------------------------------

def _finite(values, backend):
    """Whether no tensor, array or Python number among ``values`` (tuples and the gradients of
    a multi-output node looked into) holds nan or ±inf."""
    for v in values:
        if isinstance(v, Tensor):
            if not v._dev._backend.all_finite(v._a):
                return False
        elif isinstance(v, backend.array_type):
            if not backend.all_finite(v):
                return False
        elif isinstance(v, (float, complex)):
            if not cmath.isfinite(v):
                return False
        elif isinstance(v, (tuple, list)):
            if not _finite(v, backend):
                return False
        elif isinstance(v, OutputGrads):
            if not _finite(tuple(v.by_index.values()), backend):
                return False
    return True


def _bad(t):
    """"nan" or "inf", whichever ``t`` holds (nan first)."""
    backend = t._dev._backend
    return "nan" if bool(backend.isnan(t._a).any()) else "inf"


def _shapes(values):
    """The shapes of tensors, nodes and arrays, "constant" for other values (or an input that
    needs no gradient)."""
    parts = []
    for v in values:
        if isinstance(v, OutputGrads):
            parts.extend(f"{g.shape} (output {k})" for k, g in v.by_index.items())
        else:
            parts.append(str(v.shape) if hasattr(v, "shape") else "constant")
    return ", ".join(parts)


def _count(saved):
    n = len(saved)
    return "1 value" if n == 1 else f"{n} values"


def _place(where):
    if where is None:
        return ("at a line that was not recorded (the anomaly mode was off when the forward op "
                "ran, or no frame outside gpuad ran it): turn the mode on before the forward "
                "pass")
    file, line, func = where
    text = linecache.getline(file, line).strip()
    return f"at {file}:{line}, in {func}" + (f":\n    {text}" if text else "")
