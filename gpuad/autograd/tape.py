"""TensorFlow-style reverse mode: :class:`GradientTape`, on the same graph as ``requires_grad``.

While a tape records (inside its ``with`` block, outside ``stop_recording``), every op that
reads a tensor the tape watches puts the tape's mark on its node (see
:func:`.record.record`). A tape watches what ``watch`` was given, the results of the ops
it recorded, every tensor that requires grad that an op reads inside the block, and, unless
``watch_accessed_variables=False``, every trainable Variable read there. ``gradient`` runs the one
backward engine restricted to the nodes carrying the tape's mark, so ops computed before the
tape, outside it, or on another tape only are constants to it. A gradient computed while
other tapes record is itself recorded on them, which gives nested tapes higher derivatives.

The tape owns the nodes only tapes recorded (from watched constants and trainable Variables,
which do not require grad): after a non-persistent tape's ``gradient``/``jacobian``, on
``reset()``, and when the tape is deleted, the saved values of those no other live tape holds
are freed. Nodes that are also in the ``requires_grad`` graph follow PyTorch's rules.
"""
from __future__ import annotations

import contextlib
import enum
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

from .._frames import user_stacklevel
from ..errors import GradientTapeWarning
from ..ops.shape import moveaxis
from ..tensor import Tensor
from . import structure
from .engine import execute, runs_user_code, seed_gradient
from .grad_mode import count_active, mode
from .linearize import reverse_rows
from .node import FREED, Node
from .rows import example_directions, one_hots, or_zeros, stack_rows


class UnconnectedGradients(str, enum.Enum):
    """What ``gradient`` gives for a source the target does not depend on: None, or zeros.

    >>> x, z = ad.Variable(1.0), ad.Variable(2.0)
    >>> with ad.GradientTape(persistent=True) as tape:
    ...     y = x * 3  # y does not depend on z
    >>> tape.gradient(y, [x, z])
    [tensor(3.), None]
    >>> tape.gradient(y, [x, z], unconnected_gradients=ad.UnconnectedGradients.ZERO)
    [tensor(3.), tensor(0.)]
    """

    NONE = "none"
    ZERO = "zero"


class GradientTape:
    """Records the ops on watched tensors inside its ``with`` block, for reverse mode.

    >>> x = ad.Variable(3.0)
    >>> with ad.GradientTape() as tape:
    ...     y = x * x
    >>> tape.gradient(y, x)
    tensor(6.)
    """

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self._persistent = bool(persistent)
        self._auto = bool(watch_accessed_variables)
        self.mark = _Mark()  # the token on the nodes it records (the recording reads it)
        self._nodes: list[Node] = []  # the nodes recorded on this tape, in order
        # id(key) -> key: the leaves and nodes watched as sources
        self._watched: dict[int, Any] = {}
        # id -> Variable watched (explicitly or by being read)
        self._variables: dict[int, Tensor] = {}
        self._recording = False  # on this thread's list of recording tapes
        self._inside = False  # inside the with block
        self._paused = False  # inside stop_recording()
        self._grad_mode = True  # the grad mode to restore when the block ends
        self._spent = False  # a non-persistent tape after its gradient
        self._warned: set[str] = set()
        self._release = weakref.finalize(self, _release, self._nodes, self.mark)

    # ---- recording ----------------------------------------------------------------------
    def __enter__(self) -> GradientTape:
        if self._inside:
            raise RuntimeError("gpuad: this GradientTape is already recording; a tape cannot "
                               "be entered again inside its own with block")
        if self._spent:  # a used non-persistent tape starts afresh, as in TensorFlow
            self._forget()
        self._inside = True
        self._grad_mode = mode.enabled
        mode.enabled = True  # a tape records even under no_grad or inside a gradient rule
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self._inside = False
        mode.enabled = self._grad_mode

    def _start(self):
        if not self._recording and not self._spent:
            mode.tapes = mode.tapes + (self,)
            self._recording = True
            count_active(1)

    def _stop(self):
        if self._recording:
            mode.tapes = tuple(t for t in mode.tapes if t is not self)
            self._recording = False
            count_active(-1)

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Ops inside this block are not recorded on this tape (they are constants to it)."""
        if not self._inside:
            raise RuntimeError("gpuad: GradientTape.stop_recording() needs a recording tape; "
                               "use it inside the tape's with block")
        was = self._recording
        self._stop()
        self._paused = True
        try:
            yield
        finally:
            self._paused = False
            if was:
                self._start()

    def reset(self) -> None:
        """Forget everything recorded and watched so far; free the saved values only this tape
        held. Inside the with block, recording goes on afresh."""
        self._forget()
        if self._inside and not self._paused:
            self._start()

    def _forget(self):
        _release(self._nodes, self.mark)
        self._watched.clear()
        self._variables.clear()
        self._spent = False

    def watch(self, tensor: Any) -> None:
        """Watch ``tensor`` (a tensor, or a nested list, tuple or dict of them) as a source."""
        for t in structure.flatten(tensor):
            if not isinstance(t, Tensor):
                raise TypeError(f"gpuad: GradientTape.watch takes tensors (or nested lists, "
                                f"tuples and dicts of them), got a {type(t).__name__}; "
                                "wrap numbers with ad.constant(...)")
            if t.dtype.kind != "f":
                self._warn_once(
                    "integer",
                    f"gpuad: GradientTape.watch got a {t.dtype} tensor (shape {t.shape}): "
                    "integer (and bool) tensors are not differentiable, so its gradient will be "
                    "None. Cast it first (ad.cast(x, ad.float32)) to differentiate with respect "
                    "to it",
                )
                continue
            self._watch(t, t._grad_fn or t)

    def _watch(self, t, key):
        self._watched[id(key)] = key
        if getattr(t, "trainable", None) is not None:  # a Variable
            self._variables.setdefault(id(t), t)

    def keep(self, node: Node) -> None:
        """The recording's hand-over: ``node`` was just recorded on this tape (it carries
        :attr:`mark`)."""
        self._nodes.append(node)

    def watched_variables(self) -> tuple[Tensor, ...]:
        """The Variables this tape watches, in the order they were first watched or read."""
        return tuple(self._variables.values())

    def tracks(self, t, key):
        """Whether this tape watches input ``t`` (whose graph key is ``key``) of an op being
        recorded; a tensor that requires grad becomes watched by being read, unless
        ``watch_accessed_variables=False``."""
        if self._is_source(t, key):
            return True
        if t._rg or (self._auto and t._autowatch):
            self._watch(t, key)
            return True
        return False

    def _is_source(self, t, key=None):
        """Whether ``t`` is watched by this tape or is a result it recorded."""
        if key is None:
            key = t._grad_fn or t
        if id(key) in self._watched:
            return True
        node = t._grad_fn
        return node is not None and node.tapes is not None and self.mark in node.tapes

    def on_numpy(self, t):
        """``t.numpy()`` while recording: warn (once) when the tape watches ``t``."""
        if self._is_source(t) or t._rg or (self._auto and t._autowatch):
            self._warn_once(
                "numpy",
                f"gpuad: .numpy() was called on a tensor (shape {t.shape}) that the recording "
                "GradientTape watches; the NumPy copy leaves the graph, so nothing computed "
                "from it gets a gradient. Keep the computation in gpuad ops to differentiate it",
            )

    def _warn_once(self, what, message):
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message, GradientTapeWarning, stacklevel=user_stacklevel())

    # ---- gradients ----------------------------------------------------------------------
    def gradient(self, target: Any, sources: Any, output_gradients: Any = None,
                 unconnected_gradients: UnconnectedGradients | str = UnconnectedGradients.NONE
                 ) -> Any:
        """d(sum of ``target``)/d``sources``, in the structure of ``sources``.

        ``target`` may be a tensor or a nested structure of them (their gradients add up).
        ``output_gradients`` weights each target (same structure and shapes). A source the
        target does not depend on, or that the tape does not watch, gives None, or zeros of its
        shape, dtype and device with ``unconnected_gradients="zero"``."""
        self._check_usable("gradient")
        zero = _zero_unconnected(unconnected_gradients)
        targets = _tensors(structure.flatten(target), "target")
        flat, rebuild = structure.flatten(sources), structure.unflattener(sources)
        _tensors(flat, "sources")
        seeds = _seeds(targets, output_gradients)
        try:
            grads = self._backward(targets, seeds, flat)
        finally:
            self._spend()
        return rebuild([or_zeros(g, s, zero) for g, s in zip(grads, flat)])

    def jacobian(self, target: Tensor, sources: Any,
                 unconnected_gradients: UnconnectedGradients | str = UnconnectedGradients.NONE,
                 parallel_iterations: int | None = None, experimental_use_pfor: bool = True
                 ) -> Any:
        """d``target``/d``source`` for each source: shape ``target.shape + source.shape``.

        Computed in one backward pass whose seed carries every target direction as a
        forward-mode tangent (see :mod:`.functional`); one pass per target element when the
        graph has custom gradients or hooks. ``parallel_iterations`` and
        ``experimental_use_pfor`` are accepted for TensorFlow compatibility and change
        nothing."""
        self._check_usable("jacobian")
        self._check_outside("jacobian")
        zero = _zero_unconnected(unconnected_gradients)
        (y,) = _tensors([target], "target")
        flat, rebuild = structure.flatten(sources), structure.unflattener(sources)
        _tensors(flat, "sources")
        try:
            if self._batchable(y, flat):
                eye = y._dev.backend.eye(y.size, dtype=y.dtype)
                grads = self._backward_batched(y, eye.reshape((y.size,) + y.shape), flat)
                return rebuild([or_zeros(None if g is None else g.reshape(y.shape + s.shape),
                                         s, zero, y.shape + s.shape)
                                for g, s in zip(grads, flat)])
            rows = [self._backward([y], [seed], flat) for seed in one_hots(y, y.size)]
        finally:
            self._spend()
        return rebuild([stack_rows([r[j] for r in rows], s, y.shape + s.shape, 0, zero)
                        for j, s in enumerate(flat)])

    def batch_jacobian(self, target: Tensor, source: Tensor,
                       unconnected_gradients: UnconnectedGradients | str = (
                           UnconnectedGradients.NONE),
                       parallel_iterations: int | None = None,
                       experimental_use_pfor: bool = True) -> Tensor:
        """The Jacobian of each example: ``target[i]`` with respect to ``source[i]``.

        ``target`` has shape ``(B, ...)`` and ``source`` ``(B, ...)``; the result has shape
        ``(B,) + target.shape[1:] + source.shape[1:]``. Example ``i`` of the target must depend
        on example ``i`` of the source only (as in TensorFlow; this is not checked)."""
        self._check_usable("batch_jacobian")
        self._check_outside("batch_jacobian")
        zero = _zero_unconnected(unconnected_gradients)
        (y,) = _tensors([target], "target")
        (x,) = _tensors([source], "source")
        if y.ndim == 0 or x.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"gpuad: batch_jacobian needs a target and a source with the same first "
                f"(batch) dimension; got target shape {y.shape} and source shape {x.shape}"
            )
        batch = y.shape[0]
        per_example = y.size // batch if batch else 0
        shape = y.shape + x.shape[1:]
        try:
            if self._batchable(y, [x]):
                (g,) = self._backward_batched(y, example_directions(y, per_example, batch),
                                              [x])
                if g is not None:  # (per example, batch, ...) -> (batch, per example, ...)
                    g = moveaxis(g, 0, 1).reshape(shape)
                return or_zeros(g, x, zero, shape)
            rows = [self._backward([y], [seed], [x])[0]
                    for seed in one_hots(y, per_example, batch)]
        finally:
            self._spend()
        return stack_rows(rows, x, shape, 1, zero)

    def _batchable(self, y, sources):
        """Whether Jacobian rows can come from one batched pass (no user code in backward)."""
        node = y._grad_fn
        return y.size > 0 and (node is None or not runs_user_code([node], sources, self.mark))

    def _backward_batched(self, y, directions, sources):
        """Rows of ``y``'s Jacobian along ``directions``: :func:`.linearize.reverse_rows`."""
        return reverse_rows([y], [Tensor(directions, y._dev)],
                            lambda seeds: self._backward([y], seeds, sources))

    def _backward(self, targets, seeds, sources):
        """One backward pass on this tape's nodes: the gradient for each source (or None)."""
        valid = [s.dtype.kind == "f" and self._is_source(s) for s in sources]
        wanted = [s for s, ok in zip(sources, valid) if ok]
        if not wanted:
            return [None] * len(sources)
        # recorded when tapes record, or inside a create_graph backward (a grad_fn using a tape)
        create = bool(mode.enabled and (mode.tapes or mode.creating))
        captured = execute(targets, seeds, True, create, wanted, set(), self.mark)
        return [captured.get(s._grad_fn or s) if ok else None for s, ok in zip(sources, valid)]

    def _check_usable(self, what):
        if self._spent:
            raise RuntimeError(
                f"gpuad: GradientTape.{what}: this tape was already used to compute gradients, "
                "and a non-persistent tape can do that only once (its recording is freed "
                "then). Create it with ad.GradientTape(persistent=True) to call gradient() or "
                "jacobian() more than once"
            )

    def _check_outside(self, what):
        if self._inside and self._recording:
            raise RuntimeError(
                f"gpuad: GradientTape.{what} was called inside the tape's with block, while "
                "the tape is still recording the target; call it after the block (outside it), "
                "or inside `with tape.stop_recording():`"
            )

    def _spend(self):
        """A non-persistent tape is done after one gradient: it stops recording (even inside
        its block, as in TensorFlow) and frees what it recorded."""
        if not self._persistent:
            self._stop()
            self._spent = True
            _release(self._nodes, self.mark)
            self._watched.clear()

    def __repr__(self):
        state = "recording" if self._recording else "not recording"
        return (f"<GradientTape persistent={self._persistent} {state}, "
                f"{len(self._nodes)} ops recorded>")


class _Mark:
    """The token a tape leaves on its nodes (nodes hold it, not the tape, so a deleted tape
    is freed at once)."""

    __slots__ = ()


def _release(nodes, mark):
    """Take the tape's mark off its nodes, and free the saved values of those that no other
    live tape holds and that are not in the ``requires_grad`` graph (that one follows
    PyTorch's rules: ``backward()`` frees it, or the tensors holding it going away)."""
    for node in nodes:
        marks = node.tapes
        if marks is None:
            continue
        rest = None if len(marks) == 1 else (tuple(m for m in marks if m is not mark) or None)
        node.tapes = rest
        if rest is None and node.taped is not None:  # no tape left: drop the tape-only edges
            if node.in_graph():
                node.taped = None
            else:
                node.saved = FREED
                node.out = None
                node.taped = (None,) * len(node.parents)
    nodes.clear()


def _zero_unconnected(value):
    try:
        return UnconnectedGradients(value) is UnconnectedGradients.ZERO
    except ValueError:
        raise ValueError(f"gpuad: unconnected_gradients must be 'none' or 'zero', got "
                         f"{value!r}") from None


def _tensors(values, what):
    for v in values:
        if not isinstance(v, Tensor):
            raise TypeError(f"gpuad: GradientTape: the {what} must be tensors (or nested "
                            f"lists, tuples and dicts of them), got a {type(v).__name__}")
    return values


def _seeds(targets, output_gradients):
    """The starting gradient of each target: ones (the gradient of its sum) or as given."""
    if output_gradients is None:
        output_gradients = [None] * len(targets)
    given = structure.flatten(output_gradients)
    if len(given) != len(targets):
        raise ValueError(f"gpuad: GradientTape.gradient got {len(given)} output_gradients for "
                         f"{len(targets)} targets; pass one per target, in the same structure")
    return [seed_gradient(y, g, i, "GradientTape.gradient", True, ValueError)
            for i, (y, g) in enumerate(zip(targets, given))]
