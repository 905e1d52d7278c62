"""Recording: the step every op ends with, which wraps its forward result as a Tensor and puts
it into the graph.

:func:`record` and :func:`record1` attach a :class:`~gpuad.autograd.node.Node` when grad mode
is on and an input requires grad: they are the per-op hot path. While a gradient tape, a
custom-gradient collector, a forward level or the anomaly mode is active (in any thread), they
take the special path (:func:`_record_special`), which also records on the tapes (through the
tape's interface: ``tape.mark``, ``tape.tracks(t, key)``, ``tape.keep(node)``), pushes
forward-mode tangents and runs the anomaly mode's checks.

A view whose storage changed in place since its graph was made gets a fresh graph before it is
recorded; how is the view ops' business, above this floor: they register it with
:func:`on_stale_view`.
"""
from ..tensor import Tensor
from . import collector
from .forward import has_tangent, push
from .grad_mode import active, anomaly, mode
from .node import Node

_refresh = None  # the view ops' refresh of a stale view (see on_stale_view)


def on_stale_view(refresh):
    """Register ``refresh(view)``, which rebuilds the graph of a view whose storage an
    in-place change made stale (the view ops do, when they are imported)."""
    global _refresh
    _refresh = refresh


def record1(op, x, a, saved):
    """Wrap the result ``a`` of the one-input op ``op`` applied to tensor ``x``."""
    dev = x._dev
    backend = dev._backend
    if a.__class__ is not backend.array_type:
        a = backend.asarray(a)  # NumPy returns scalars for 0-d results; keep arrays
    if active[0]:
        out = _record_special(op, (x,), a, dev, saved)
        if out is not None:
            return out
    if mode.enabled:
        if x._base is not None and x._view_ver != x._ver[0]:
            _refresh(x)
        if x._rg:
            return _attach(op, (x._grad_fn or x,), a, dev, saved)
    return Tensor(a, dev)


def record(op, inputs, a, dev, saved, jvp_saved=None):
    """Wrap the result ``a`` of ``op`` applied to ``inputs`` (tensors and constants).
    ``jvp_saved``: what the JVP rule reads, when it is more than the node keeps."""
    backend = dev._backend
    if a.__class__ is not backend.array_type:
        a = backend.asarray(a)
    if active[0]:
        out = _record_special(op, inputs, a, dev, saved, jvp_saved)
        if out is not None:
            return out
    if mode.enabled:
        parents = []
        tracked = False
        for t in inputs:  # each input's graph edge, inlined: this loop runs for every op
            if t.__class__ is Tensor or isinstance(t, Tensor):
                if t._base is not None and t._view_ver != t._ver[0]:
                    _refresh(t)
                if t._rg:
                    parents.append(t._grad_fn or t)
                    tracked = True
                    continue
            parents.append(None)
        if tracked:
            return _attach(op, tuple(parents), a, dev, saved)
    return Tensor(a, dev)


def _attach(op, parents, a, dev, saved, rg=True):
    """The output tensor of a recorded op, with its node. Each saved tensor's version (and
    the output's, when the rule reads the output) is noted to catch later in-place changes."""
    out = Tensor(a, dev, None, rg)
    collector.recording = True
    vers = [(s._ver, s._ver[0]) for s in saved if isinstance(s, Tensor)]
    if op.save_out:
        vers.append((out._ver, 0))
        out._grad_fn = Node(op, parents, saved, vers, a, a.shape, a.dtype, dev)
    else:
        out._grad_fn = Node(op, parents, saved, vers, None, a.shape, a.dtype, dev)
    return out


# ---- recording while gradient tapes are active ------------------------------------------

def needs_grad(t, tangents=True):
    """Whether an op must keep what input ``t``'s derivative rules read: ``t`` requires grad,
    a gradient tape now recording watches it, or (with ``tangents``) it carries a
    forward-mode tangent."""
    if not isinstance(t, Tensor):
        return False
    if t._rg:
        return True
    if not active[0]:
        return False
    if tangents and mode.levels and has_tangent(t):
        return True
    return bool(mode.enabled and mode.tapes and tape_tracked(t))


def tape_tracked(t):
    """Whether a recording tape watches ``t`` (or recorded the op that made it)."""
    key = t._grad_fn or t
    for tape in mode.tapes:
        if tape.tracks(t, key):
            return True
    return False


def _copied_out(t):
    """``t``'s data leaves the graph as a NumPy array: the recording tapes may warn."""
    if active[0]:
        for tape in mode.tapes:
            tape.on_numpy(t)


Tensor._copied_out = _copied_out  # type: ignore[method-assign]  # (declared there)


def _record_taped(op, inputs, a, dev, saved):
    """:func:`record` while tapes record: the node goes on every recording tape that watches
    one of the inputs, and is in the ``requires_grad`` graph when an input requires grad. A
    result only tapes recorded does not require grad: after the tapes it is a constant."""
    tapes = mode.tapes
    parents, taped = [], []
    on = set()
    rg = False
    for t in inputs:
        if t.__class__ is not Tensor and not isinstance(t, Tensor):
            parents.append(None)
            taped.append(None)
            continue
        if t._base is not None and t._view_ver != t._ver[0]:
            _refresh(t)
        node = t._grad_fn
        key = node or t
        hit = t._rg
        marks = node.tapes if node is not None else None
        for tape in tapes:
            # (a result this tape recorded: the common case, checked before the call)
            if (marks is not None and tape.mark in marks) or tape.tracks(t, key):
                hit = True
                on.add(tape)
        parents.append(key if t._rg else None)
        taped.append(key if hit else None)
        rg = rg or t._rg
    if not on:
        if rg:
            return _attach(op, tuple(parents), a, dev, saved)
        return Tensor(a, dev)
    out = _attach(op, tuple(parents), a, dev, saved, rg)
    node = out._grad_fn
    if len(on) == 1:
        (tape,) = on
        node.tapes = (tape.mark,)
        tape.keep(node)
    else:
        on = [tape for tape in tapes if tape in on]  # in the order the tapes started
        node.tapes = tuple(tape.mark for tape in on)
        for tape in on:
            tape.keep(node)
    if taped != parents:
        node.taped = tuple(taped)
    return out


def _record_special(op, inputs, a, dev, saved, jvp_saved=None):
    """The part of :func:`record` that runs only while some tape, custom-gradient collector,
    forward level or the anomaly mode is active (in any thread). None: go on with the plain
    path. The anomaly mode takes every op here: it checks the output and notes the user's line
    on the node (:mod:`.anomaly`)."""
    settings = anomaly[0]
    if settings is None:
        return _record_active(op, inputs, a, dev, saved, jvp_saved)
    out = _record_active(op, inputs, a, dev, saved, jvp_saved)
    if out is None:  # the plain path, which recording for no tape is
        out = _record_taped(op, inputs, a, dev, saved)
    if out._grad_fn is None and not settings.check_forward:
        return out
    return settings.on_op(op, inputs, out)


def _record_active(op, inputs, a, dev, saved, jvp_saved):
    """Note the reads, record on this thread's tapes, push forward-mode tangents. None: go on
    with the plain path."""
    if mode.watchers:
        _note_reads(inputs)
    if mode.levels:  # forward mode runs whatever the grad mode
        if mode.enabled:
            out = _record_taped(op, inputs, a, dev, saved)
        else:
            for t in inputs:  # (recording refreshes stale views itself)
                if isinstance(t, Tensor) and t._base is not None and t._view_ver != t._ver[0]:
                    _refresh(t)
            out = Tensor(a, dev)
        push(op, inputs, out, saved if jvp_saved is None else jvp_saved)
        return out
    if not mode.enabled:
        return Tensor(a, dev)
    if mode.tapes:
        return _record_taped(op, inputs, a, dev, saved)
    return None


def _note_reads(inputs):
    """Tell the active collectors which leaves that require grad (trainable Variables, say)
    an op read: ``custom_gradient`` finds the variables its function uses this way."""
    for t in inputs:
        if isinstance(t, Tensor) and t._grad_fn is None and (t._rg or t._autowatch):
            for seen in mode.watchers:
                seen.setdefault(id(t), t)
