"""What ``@custom_gradient`` (:mod:`.custom_gradient`) and ``Function`` (:mod:`.function`)
share: how a custom call goes into the graph, and the checks of what the user's rules return.

Both run the forward computation without recording it, then put the call into the graph as one
node whose rule is the user's gradient function, so ``backward()``, ``ad.grad`` and every
gradient tape use it. The rule runs as ordinary gpuad code: with ``create_graph=True`` or under
an outer tape, its own ops are recorded and can be differentiated again.

A call with several outputs is a hub node over the inputs plus one small node per output; the
outputs' gradients meet at the hub (:class:`~.node.OutputGrads`), and the rule runs once for
all.

In forward mode a custom op needs a JVP rule of its own (``Function.jvp``, or
``f.defjvp(rule)`` for ``@custom_gradient``): it replaces whatever tangents the user's forward
code computed for the outputs (intermediates keep theirs, so the rules that read them work
forward over reverse), and without a rule a tangent reaching the op raises, naming it.
"""
from ..convert import constant
from ..errors import CustomGradientError
from ..tensor import Tensor
from . import structure
from .forward import PerOutput, carry
from .node import Op, OutputGrads
from .record import record
from .unbroadcast import broadcasts


def select(name, i):
    """The op of output ``i``: it hands its gradient to the hub under index ``i``."""
    return Op(name, (lambda g: OutputGrads({i: g}),), jvp=lambda ts, y: ts[0][i])


class OutputRef:
    """Stands for output ``i`` among saved values (the node keeps the array, not the tensor,
    so the graph holds no reference cycle)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


def connect(name, inputs, outputs, rule, saved, keep_outputs=False, constant_outputs=(),
             materialize=True, dirty=(), jvp=None):
    """Put a custom call into the graph; returns ``outputs`` as tensors of the graph, and the
    hub node (None when nothing was recorded).

    ``inputs`` are the call's arguments (the tensors among them are the node's inputs),
    ``outputs`` the forward results, ``rule(node, grads, saved)`` gives one gradient (or None)
    per input from one gradient per output (zeros for outputs nothing reached, or None unless
    ``materialize``), and ``saved`` is kept for the rule and freed after backward. Outputs at
    the indices ``constant_outputs`` are left out of the graph. An input changed in place and
    returned as output ``i`` (``i`` in ``dirty``) becomes that output in the graph.
    ``jvp(tangents, k, hub)`` gives the outputs' tangents from the inputs' (None: no JVP
    rule); ``hub`` stands for the call in the graph, from which outputs can be rebuilt."""
    given = outputs
    outputs = _own_storage(outputs, inputs, dirty)
    for i in dirty:  # PyTorch counts a change marked dirty, however forward made it
        given[i]._ver[0] += 1
    tensors_out = [o for o in outputs if isinstance(o, Tensor)]
    if not tensors_out:
        return outputs, None
    dev = tensors_out[0]._dev
    metas = [(o.shape, o.dtype, o._dev) if isinstance(o, Tensor) else None for o in outputs]

    def vjp_all(node, g, saved_values):
        grads = []
        for i, meta in enumerate(metas):
            gi = g.by_index.get(i)
            if gi is None and materialize and meta is not None and meta[1].kind == "f":
                shape, dtype, odev = meta
                gi = Tensor(odev.backend.zeros(shape, dtype=dtype), odev)
            grads.append(gi)
        return rule(node, grads, saved_values)

    def hub_jvp(ts, hub, *saved_values):
        k = next(t.shape[0] for t in ts if t is not None)
        given = jvp(ts, k, hub)
        for i, (t, meta) in enumerate(zip(given, metas)):
            if t is not None and (not isinstance(t, Tensor) or meta is None
                                  or t.shape != (k,) + meta[0] or t._dev is not meta[2]):
                what = (f"a {type(t).__name__}" if not isinstance(t, Tensor)
                        else f"shape {t.shape} on {t._dev}")
                want = ("nothing (not a tensor)" if meta is None
                        else f"shape {(k,) + meta[0]} on {meta[2]}")
                raise CustomGradientError(
                    f"gpuad: the JVP rule of {name} returned {what} as the tangent of output "
                    f"{i}; expected {want}: the output's shape after a leading axis of {k} "
                    "directions")
        return PerOutput(given)

    hub = record(Op(name, None, vjp_all=vjp_all, jvp=None if jvp is None else hub_jvp), inputs,
                 tensors_out[0]._a, dev, saved)
    node = hub._grad_fn
    fwd = getattr(hub, "_tan", None)  # the outputs' forward-mode tangents
    wrapped = []
    for i, o in enumerate(outputs):
        if ((node is not None or fwd) and isinstance(o, Tensor) and o.dtype.kind == "f"
                and i not in constant_outputs):
            o = record(select(name, i), (hub,), o._a, o._dev, ())
        elif node is not None and i in dirty:  # a changed input marked non-differentiable
            o = Tensor(o._a, o._dev)
        wrapped.append(o)
    if node is None:
        return wrapped, None
    if keep_outputs:  # (an output with forward-mode tangents is kept with them)
        node.out = tuple((_with_tangents(o) if getattr(o, "_tan", None) else o._a)
                         if isinstance(o, Tensor) else None for o in wrapped)
    for i in dirty:  # the changed input stands at the output's place in the graph
        x = given[i]
        x._grad_fn, x._rg = wrapped[i]._grad_fn, wrapped[i]._rg
        if getattr(wrapped[i], "_tan", None):
            carry(x, dict(wrapped[i]._tan))
        wrapped[i]._ver = x._ver
        wrapped[i] = x
    return wrapped, node


def _own_storage(outputs, inputs, dirty=()):
    """The outputs, each tensor among them a new one; one whose memory it shares with an input
    or an earlier output gets a copy (an output is a value of its own, not a view the graph
    cannot see), except the inputs at the indices ``dirty``, changed in place and returned as
    they are."""
    arrays = [t._a for t in inputs if isinstance(t, Tensor)]
    out = []
    for i, o in enumerate(outputs):
        if isinstance(o, Tensor) and i not in dirty:
            backend = o._dev.backend
            a = o._a
            if any(backend.xp.may_share_memory(a, b) for b in arrays
                   if type(b) is type(a)):
                a = backend.copy(a)
            arrays.append(a)
            o = Tensor(a, o._dev)
        out.append(o)
    return out


def _with_tangents(o):
    return carry(Tensor(o._a, o._dev), dict(o._tan))


def output_again(node, name, i, constant):
    """Output ``i`` of a custom node, rebuilt in backward from the array the node kept (as a
    constant if it was marked non-differentiable), with its forward-mode tangents if any."""
    kept, first = node.out[i], node.out[0]
    a = kept._a if kept.__class__ is Tensor else kept
    if constant:
        out = Tensor(a, node.device)
    else:
        hub = Tensor(first._a if first.__class__ is Tensor else first, node.device, node,
                     node.in_graph())
        out = record(select(name, i), (hub,), a, node.device, ())
    if kept.__class__ is Tensor:
        carry(out, dict(kept._tan))
    return out


def check_grad(where, i, label, g, x, exact=True):
    """Gradient ``g`` for input ``x``, checked: a tensor on ``x``'s device whose shape is
    ``x``'s (unless not ``exact``: then also one that sums down to it, as PyTorch allows)."""
    if g is None or not isinstance(x, Tensor):
        return None
    if not isinstance(g, Tensor):
        g = constant(g, x._dev, x)
    if g._dev is not x._dev:
        raise CustomGradientError(
            f"gpuad: {where}: the gradient for input {i} ({label}) is on {g._dev} but the "
            f"input is on {x._dev}; return it on {x._dev}")
    if g.shape != x.shape and (exact or not broadcasts(x.shape, g.shape)):
        raise CustomGradientError(
            f"gpuad: {where}: the gradient for input {i} ({label}) has shape {g.shape}, but "
            f"the input has shape {x.shape}; return one gradient of each input's shape"
        )
    return g


def materialized(tangents, args, k):
    """One tangent per argument for a user's JVP rule: zeros ``(k,) + shape`` for floating
    tensors without one, None for other arguments."""
    out = []
    for t, x in zip(tangents, args):
        if t is None and isinstance(x, Tensor) and x.dtype.kind == "f":
            t = Tensor(x._dev.backend.zeros((k,) + x.shape, dtype=x.dtype), x._dev)
        out.append(t)
    return out


def checked_tangents(where, given, n):
    given = flat(given)
    if len(given) != n:
        raise CustomGradientError(f"gpuad: {where} returned {len(given)} tangents for {n} "
                                  "outputs; return one per output (None for none)")
    return given


def flat(value):
    """The gradients a grad_fn returned, flattened (nested lists, tuples and dicts allowed)."""
    return structure.flatten(value)
