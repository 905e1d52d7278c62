"""``ad.compile``: run a function of tensors once per signature as Python, then replay it.

The first call with a signature runs the function eagerly, as without ``compile``, while
tracing what it computes (:mod:`.tracer`); the later calls replay the trace's steps: NumPy
calls into the same buffers, with no Tensor objects, no graph and no engine. (What Python
decides on each call, an optimizer's step count and learning rate, runs again as opaque
steps; the differential fuzz in tests/test_fuzz_compile.py checks replays against eager.)

A signature is the structure of the arguments (for a tensor: its shape, dtype, device and
``requires_grad``; other arguments by value) and the grad mode; a signature's programs are kept
one per state of the Python values the traces read (a module's train/eval mode).
"""
import functools
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from .._frames import user_stacklevel
from ..autograd.anomaly import is_anomaly_enabled
from ..autograd.grad_mode import is_grad_enabled
from ..backends import tracing
from ..devices import get_default_device
from ..tensor import Tensor
from . import calls, graphed
from .program import Program
from .steps import Busy, CompileError, Diverged, root
from .tracer import Tracer

#: programs of one signature that may go stale in a row before it runs eagerly for good
_STALE = 3
#: replays of one signature that may diverge (a value read on the host changed)
_DIVERGENCES = 3
#: programs kept per signature (one per state of the Python values a trace read)
_PROGRAMS = 4


class CompileWarning(UserWarning):
    """A compiled function runs eagerly (it cannot be replayed) or keeps tracing again."""


def compile(fn: Callable[..., Any] | None = None, *, copy_outputs: bool = False,
            fallback: Literal["error", "eager"] = "error", max_cache: int = 8) -> Any:
    """Compile ``fn``, a function of tensors (typically one training step: forward, loss,
    ``backward()``, ``optimizer.step()``, ``zero_grad()``), so that repeated calls replay its
    array computations without Python per op. Usable as ``@ad.compile`` or
    ``@ad.compile(copy_outputs=True)``.

    The first call with a new signature (the tensor arguments' shapes, dtypes, devices,
    strides and ``requires_grad``, which arguments are the same tensor; other arguments by
    value; the grad mode, the anomaly mode and the default device) runs ``fn`` as usual while
    tracing it; later calls replay it, while the Python state it read that decides what it
    computes (a module's train/eval mode) is the same, else trace it in the new state. The
    results are the bits the eager calls give (a nan's sign aside, where eager computed on a
    NumPy scalar).

    - Tensor results are over static buffers that the next call overwrites (as PyTorch's CUDA
      graphs), and so are the ``.grad`` tensors it sets: keep one with ``.clone()``, or pass
      ``copy_outputs=True`` (results only). Results do not require grad.
    - Tensor arguments are copied into static inputs (with their strides); what ``fn``
      changes in them in place is copied back to the caller's tensors. Calls whose arguments
      share memory, or that read an argument also from outside, run eagerly; so does a call
      that may need gradients back to its arguments (one requires grad, or ``jvp`` or a
      ``GradientTape`` differentiate the call), after one warning.
    - Parameters and optimizer state must be updated in place (optimizers and in-place ops
      do); a tensor given new data, a parameter replaced on its module, a tensor switched to
      or from ``requires_grad``, an optimizer's loaded ``state_dict``: each is noticed.
    - ``fn`` may not read values on the host (``.item()``, ``float(t)``, ``bool(t)``,
      ``.numpy()``, printing, Python ``if`` on a tensor): the error names the line. With
      ``fallback="eager"`` such a function runs eagerly instead, after one warning. (Where
      gpuad itself reads values, a replay checks they are the same, and runs eagerly if not.)
    - Python values, NumPy arrays and tensors that ``fn`` reads from outside its arguments
      are part of the compiled function: the same objects and values on every replay
      (rebinding a name or a dict entry to another tensor, or a Python number ``fn`` itself
      changes, is not seen); pass what changes as arguments. A function that keeps tensors it
      made in Python state between calls (a buffer made on the first call, a list of losses)
      runs eagerly, after one warning; optimizers and learning-rate schedulers stepped inside
      it are replayed.
    - At most ``max_cache`` signatures are kept; a warning says when it keeps tracing.
    - Calls of one compiled function from several threads take turns (the buffers are
      shared); a call that would trace while another thread traces runs eagerly instead.
    - On CUDA (tensor arguments on a GPU, or a GPU default device) the first two calls run
      eagerly in the graph's own memory pool, the third is captured into one CUDA graph
      (:mod:`gpuad.capture.graphed`), and each later call is one graph launch. Matrix products
      are captured through gpuad's own cuBLAS handle (the ``capture`` extra, nvmath-python;
      without it such steps run eagerly, after one warning); dropout draws new numbers on each
      launch from the device's generator. Results agree with eager calls within cuBLAS's
      rounding. A deferred check of device data (a label out of range) inside a captured step
      reports at the first host read after the capture only.

    >>> import gpuad as ad
    >>> w = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = ad.optim.SGD([w], lr=0.1)
    >>> @ad.compile
    ... def step(x):
    ...     opt.zero_grad()
    ...     loss = ((w * x).sum() - 1) ** 2
    ...     loss.backward()
    ...     opt.step()
    ...     return loss
    >>> for _ in range(3):
    ...     loss = step(ad.tensor([1.0, 1.0]))
    >>> w
    tensor([0.2160, 1.2160], requires_grad=True)
    """
    if fallback not in ("error", "eager"):
        raise ValueError(f"ad.compile: fallback is 'error' or 'eager', got {fallback!r}")
    if not isinstance(max_cache, int) or max_cache < 1:
        raise ValueError(f"ad.compile: max_cache is a positive int, got {max_cache!r}")
    if fn is None:
        return lambda f: compile(f, copy_outputs=copy_outputs, fallback=fallback,
                                 max_cache=max_cache)
    if not callable(fn):
        raise TypeError(f"ad.compile: expected a function, got {type(fn).__name__}")
    return Compiled(fn, copy_outputs, fallback, max_cache)


class Compiled:
    """A compiled function (see :func:`compile`); ``reset()`` forgets every trace. ``traces``,
    ``replays`` and ``eager_calls`` count the calls that ran each way."""

    def __init__(self, fn, copy_outputs, fallback, max_cache):
        functools.update_wrapper(self, fn)
        self.traces = self.replays = self.eager_calls = 0
        self.fn, self.copy_outputs = fn, copy_outputs
        self.fallback, self.max_cache = fallback, max_cache
        self._entries = OrderedDict()
        self._lock = threading.RLock()  # (a call from inside a trace reaches the nesting error)
        self._signatures = 0
        self._warned = False

    def __call__(self, *args, **kwargs):
        with self._lock:  # (one call at a time: the calls share the static buffers)
            return self._call(args, kwargs)

    def _call(self, args, kwargs):
        leaves, rebuild = calls.flatten((args, kwargs))
        if calls.differentiated(leaves):
            self.note("its results would have to carry gradients back to its arguments (one "
                      "requires grad, or jvp/GradientTape is differentiating the call), which "
                      "a replay cannot do: such calls run eagerly")
            self.eager_calls += 1
            return calls.call(self.fn, rebuild(leaves))
        key = (tuple(calls.key(v) for v in leaves), calls.aliases(leaves), is_grad_enabled(),
               is_anomaly_enabled(), str(get_default_device()), tracing.epoch)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self)
            self._signatures += 1
            if len(self._entries) > self.max_cache:
                self._entries.popitem(last=False)
                self.note(f"it has been called with {self._signatures} signatures (tensor "
                          "shapes, dtypes and devices, the grad mode, and the values of "
                          "other arguments: a NumPy array counts by value, so pass data as "
                          f"tensors), more than max_cache={self.max_cache}; the oldest are "
                          "traced again when they come back")
        return entry(leaves, rebuild)

    def reset(self):
        """Forget every trace: the next calls trace again."""
        self._entries.clear()

    def note(self, message, once=True):
        """A CompileWarning naming the function (only the first with ``once``)."""
        if not (once and self._warned):
            self._warned = once
            warnings.warn(f"ad.compile: {calls.name(self.fn)}: {message}", CompileWarning,
                          stacklevel=user_stacklevel())


class _Entry:
    """One signature's state: tracing (twice, until two traces agree), replaying one of its
    programs (one per state of the Python values read, such as train/eval), or eager."""

    kept_programs = _PROGRAMS

    def __init__(self, owner):
        self.owner = owner
        self.programs = []
        self.stale = self.divergences = 0
        self.eager = False
        self.pending = None  # (CUDA) a capture in preparation: see graphed.py
        self.cuda_device = None  # (CUDA) the device a traced run found it works on

    def __call__(self, leaves, rebuild):
        fn = self.owner.fn
        if self.eager:
            self.owner.eager_calls += 1
            return calls.call(fn, rebuild(leaves))
        for program in self.programs:
            if program.fits():
                stale = program.stale(leaves)
                if stale is None:
                    self.stale = 0
                    return self.replay(program, leaves, rebuild)
                self.programs.remove(program)
                self.stale += 1
                if self.stale >= _STALE:
                    self.go_eager(f"{stale}, on every call")
                    return self(leaves, rebuild)
                self.owner.note(f"{stale}; tracing it again")
                break
        return self.trace(leaves, rebuild)

    def replay(self, program, leaves, rebuild):
        arrays = [v._a for v in leaves if isinstance(v, Tensor)]
        try:
            program.run(arrays)
        except Diverged as e:
            if not e.before_effects:
                raise CompileError(f"ad.compile: {calls.name(self.owner.fn)}: {e}, after the "
                                   "replay had updated tensors in place; the function's "
                                   "course depends on its values: run it eagerly") from None
            self.divergences += 1
            if self.divergences >= _DIVERGENCES:
                self.go_eager(f"{e} ({self.divergences} times): its course depends on values")
            self.owner.eager_calls += 1
            return calls.call(self.owner.fn, rebuild(leaves))
        self.owner.replays += 1
        program.copy_back(arrays)
        return self.outputs(program.outputs)

    def outputs(self, outputs):
        """The results: tensors over the static output buffers (copies with copy_outputs),
        detached, on traced calls as on replays."""
        leaves, rebuild = outputs
        copy = self.owner.copy_outputs
        return rebuild([Tensor(a.copy() if copy else a, dev) if dev is not None else a
                        for a, dev in leaves])

    def trace(self, leaves, rebuild):
        owner = self.owner
        cuda = graphed.device_of(leaves, self.cuda_device)
        if cuda is not None:
            return graphed.prepare(self, leaves, rebuild, cuda)
        if calls.overlapping(leaves):
            owner.eager_calls += 1
            owner.note("its tensor arguments share memory (views of one another): such calls "
                       "run eagerly (copied into static inputs they would no longer share it)")
            return calls.call(owner.fn, rebuild(leaves))
        tracer = Tracer(calls.name(owner.fn), owner.fallback)
        tracer.argument_arrays = [v._a for v in leaves if isinstance(v, Tensor)]
        try:
            tracer.__enter__()
        except Busy:  # (another thread traces: this call runs eagerly, and traces later)
            owner.eager_calls += 1
            return calls.call(owner.fn, rebuild(leaves))
        with _Entered(tracer):
            statics = {}  # (an argument given twice is one static input)
            arrays = iter(tracer.argument_arrays)
            inputs = [statics.setdefault(id(v), Tensor(tracer.input(next(arrays)), v._dev,
                                                       None, v._rg))
                      if isinstance(v, Tensor) else v for v in leaves]
            buffers = [t._a.view(np.ndarray) for t in inputs if isinstance(t, Tensor)]
            tracer.arguments = {id(v): t for v, t in zip(leaves, inputs)
                                if isinstance(v, Tensor)}
            result = calls.call(owner.fn, rebuild(inputs))
        owner.traces += 1
        # what the function changed in its arguments (in place, or given new data) reaches
        # the caller's tensors, on this call and on each replay
        args = [(v, t) for v, t in zip(leaves, inputs) if isinstance(v, Tensor)]
        changed = [(j, t._a) for j, ((v, t), buf) in enumerate(zip(args, buffers))
                   if root(t._a) is not root(buf) or tracer.wrote(buf)]
        for j, final in changed:
            np.copyto(args[j][0]._a, final)
        if tracer.cuda_device is not None and not tracer.discovered and not args:
            self.cuda_device = tracer.cuda_device  # (it works on a GPU: captured from now on)
            return result
        if tracer.invalid is not None:
            self.go_eager(tracer.invalid)
            return result
        out, rebuild_out = calls.flatten(result)
        outputs = ([(v._a, v._dev) if isinstance(v, Tensor) else (v, None) for v in out],
                   rebuild_out)
        kept = calls.escaped(tracer, inputs, out)
        del result, out
        if kept:
            self.go_eager(kept)
            return self.outputs(outputs)
        program = Program(tracer, buffers)
        program.outputs, program.changed = outputs, changed
        self.programs = [program, *self.programs][:_PROGRAMS]
        if program.late_guards:
            self.go_eager("its course depends on values it computes after updating tensors "
                          "in place (a replay that found them changed could not undo the "
                          "update)")
        return self.outputs(outputs)

    def go_eager(self, reason):
        self.eager = True
        self.owner.note(f"runs eagerly: {reason}")


class _Entered:
    """``with`` for a tracer already entered: leaves it on the way out."""

    def __init__(self, tracer):
        self.tracer = tracer

    def __enter__(self):
        return self.tracer

    def __exit__(self, *exc):
        return self.tracer.__exit__(*exc)
