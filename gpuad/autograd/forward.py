"""Forward mode: tangents carried along with values, one op at a time.

While a forward *level* is open, a tensor may carry a tangent for it (``t._tan[level]``).
Every op that reads a tensor with a tangent computes its output's tangent with the op's JVP
rule (:func:`push`, called from :func:`~gpuad.autograd.record.record`), independently of grad mode:
this is true forward propagation, not a reverse pass run twice.

Tangents are *batched*: a tangent of a value of shape ``s`` has shape ``(k,) + s``, ``k``
directions at once (Eigen's ``AutoDiffScalar`` derivative vectors), so a whole Jacobian comes
out of one pass seeded with an identity. Every JVP rule handles that leading axis.

JVP rules are written with gpuad ops, so tangents are differentiable again: reverse mode
over forward mode records them, and forward over reverse works because the backward rules
are gpuad ops too. Levels nest (forward over forward): while the rule of level ``L`` runs, only
levels opened before ``L`` are visible, so each level sees the others' tangents as values.
"""
import itertools
import weakref

from ..errors import ForwardModeError
from ..tensor import Tensor
from .grad_mode import count_active, mode

_ids = itertools.count(1)
_holders = {}  # open level -> {id: weak reference} of the tensors with a tangent for it


class _Diagonal:
    """The JVP rule of an elementwise op (``Op(..., jvp=DIAGONAL)``): its Jacobian is diagonal
    after broadcasting, so its VJP rules serve as JVP rules, dy = sum_i vjp_i(t_i), each
    tangent's axes aligned with the output's (:func:`push` applies them)."""

    def __repr__(self):
        return "DIAGONAL"


DIAGONAL = _Diagonal()


class level:
    """Open a forward level (a context manager); ``with level() as L: ...``.

    Tangents set with :func:`seed` for ``L`` flow through every op run inside; when the
    block ends, ``L`` is closed and the tangents still attached for it are dropped (tensors
    that outlive the block, in closures or graphs, do not keep them alive)."""

    def __enter__(self):
        self.id = next(_ids)
        _holders[self.id] = {}
        mode.levels = mode.levels + (self.id,)
        count_active(1)
        return self.id

    def __exit__(self, *exc):
        mode.levels = tuple(v for v in mode.levels if v != self.id)
        count_active(-1)
        for ref in _holders.pop(self.id, {}).values():
            t = ref()
            if t is not None:
                drop(t, self.id)


def seed(x, lvl, tangent):
    """Attach ``tangent`` (shape ``(k,) + x.shape``) to tensor ``x`` for level ``lvl``."""
    tan = getattr(x, "_tan", None)
    if tan is None:
        tan = {}
    tan[lvl] = tangent
    return carry(x, tan)


def carry(x, tans):
    """Make ``tans`` (``{level: tangent}``) tensor ``x``'s tangents; returns ``x``."""
    x._tan = tans
    for lvl in tans:
        holders = _holders.get(lvl)
        if holders is not None:
            holders[id(x)] = weakref.ref(x)
    return x


def tangent(x, lvl):
    """``x``'s tangent for level ``lvl``, or None (no tangent: zero)."""
    tan = getattr(x, "_tan", None)
    return None if not tan else tan.get(lvl)


def drop(x, lvl):
    """Forget ``x``'s tangent for level ``lvl``."""
    tan = getattr(x, "_tan", None)
    if tan:
        tan.pop(lvl, None)


def has_tangent(x):
    """Whether ``x`` carries a tangent at a level visible now."""
    tan = getattr(x, "_tan", None)
    if not tan:
        return False
    live, masked = mode.levels, mode.masked
    return any(lvl in live and lvl not in masked for lvl in tan)


def push(op, inputs, out, saved):
    """Give ``out`` (just made by ``op`` from ``inputs``) its tangents: one per visible level
    at which some input has one, by the op's JVP rule, run with that level hidden."""
    live, masked = mode.levels, mode.masked
    found = set()
    for x in inputs:
        tan = getattr(x, "_tan", None)
        if tan:
            found.update(lvl for lvl in tan if lvl in live and lvl not in masked)
    if not found:
        return
    rule = op.jvp
    if rule is None or mode.deferring:
        unruled = _unruled(op, inputs, found)
        if unruled is not None:
            if not mode.deferring:
                unruled.refuse()
            # the enclosing custom op's own rule replaces the tangents of its body
            carry(out, {lvl: unruled for lvl in found})
            return
    # The rules see the output as a new tensor (so its tangents never point back at it) that
    # carries the tangents of the levels done so far: the lower ones, visible to the next rule.
    y = Tensor(out._a, out._dev, out._grad_fn, out._rg)
    y._ver = out._ver
    y._tan = tans = {}
    try:
        for lvl in sorted(found):
            ts = tuple(tangent(x, lvl) for x in inputs)
            for t in ts:
                if t.__class__ is Unruled:  # read outside the custom body that made it
                    t.refuse()
            mode.masked = masked.union(v for v in live if v >= lvl)
            if rule is DIAGONAL:
                t = _diagonal(op, ts, y, saved)
            else:
                t = rule(ts, y, *saved)
            if t is not None:
                tans[lvl] = t if t.__class__ is PerOutput else _fit(t, out, op)
    finally:
        mode.masked = masked
    if tans:
        carry(out, tans)
        carry(y, tans)  # (the rules' graphs may keep it)
        node = out._grad_fn
        if node is not None and op.save_out and node.out is out._a:
            # the backward rules read the output: with its tangents (forward over reverse)
            node.out = carry(Tensor(out._a, out._dev), tans)


class Unruled:
    """The tangent of a result of an op without a JVP rule, made inside the body of a custom
    op that has a rule of its own (which replaces the body's output tangents). Reading it, as
    an op of the body that the rule does not replace would, raises."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def refuse(self):
        raise ForwardModeError(
            f"gpuad: forward mode reached {self.name}, which has no JVP rule; give it one "
            "(ad.Function: a jvp(ctx, *tangents) staticmethod; @ad.custom_gradient: "
            "f.defjvp(rule)), or compute this derivative in reverse mode"
        )


class deferring:
    """Inside the block (the body of a custom op with its own JVP rule), ops without a JVP
    rule leave an :class:`Unruled` marker instead of raising at once."""

    def __init__(self, on):
        self.on = bool(on)

    def __enter__(self):
        mode.deferring += self.on

    def __exit__(self, *exc):
        mode.deferring -= self.on


def _unruled(op, inputs, found):
    """The marker ``op``'s output gets when its tangent cannot be computed: the op has no JVP
    rule, or an input's tangent is a marker. None: it can."""
    if op.jvp is None:
        return Unruled(op.name)
    for x in inputs:
        for lvl in found:
            t = tangent(x, lvl)
            if t.__class__ is Unruled:
                return t
    return None


class PerOutput(tuple):
    """The tangents of every output of a multi-output custom node, by output index."""


def _diagonal(op, ts, y, saved):
    args = ((y,) + saved) if op.save_out else saved
    total = None
    for rule, t in zip(op.vjps, ts):
        if t is None or rule is None:
            continue
        pad = y._a.ndim + 1 - t._a.ndim
        if pad > 0:  # align the input's axes with the output's, after the batch axis
            t = t.reshape(t.shape[:1] + (1,) * pad + t.shape[1:])
        term = rule(t, *args)
        total = term if total is None else total + term
    return total


def _fit(t, out, op):
    """The tangent as ``(k,) + out.shape`` in ``out``'s dtype."""
    k = t._a.shape[0] if t._a.ndim else 1
    shape = (k,) + out._a.shape
    if t._a.shape != shape:
        try:
            t = t.broadcast_to(shape)
        except ValueError:
            raise RuntimeError(
                f"gpuad: the JVP rule of {op.name} gave a tangent of shape {t.shape} for an "
                f"output of shape {out.shape} with {k} directions (expected {shape})"
            ) from None
    if t._a.dtype != out._a.dtype:
        t = t.astype(out._a.dtype)
    return t
