"""``jvp`` and ``vjp`` of a function, and the parts the other transforms share: arguments,
tangent seeds, how a result stays connected to what tracks the inputs, and Jacobian rows from one
backward pass.

- ``jvp`` is true forward mode (:mod:`.forward`): one pass carries the tangents.
- ``vjp`` records the function and hands back its pullback, a backward pass.
- :func:`reverse_rows` is one backward pass whose seeds carry directions as tangents: the
  backward rules are linear in the output gradient and are gpuad ops with JVP rules, so forward
  mode over them pushes every direction through in one pass (what ``vmap`` over a VJP does
  elsewhere).

They sit on the autograd core's floor, below the ops: derivative rules of ops differentiate
composed rules with them. Results compose: inputs that require grad, are watched by a tape, or
carry tangents of an enclosing ``jvp`` stay connected, so the results can be differentiated
again by any of the engines.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..convert import constant
from ..errors import DeviceMismatchError
from ..tensor import Tensor
from . import engine, forward, structure
from .grad_mode import enable_grad, mode
from .node import Node
from .record import needs_grad, tape_tracked


def jvp(f: Callable[..., Any], primals: Tensor | Sequence[Any],
        tangents: Tensor | Sequence[Tensor], argnums: int | Sequence[int] | None = None,
        batched: bool = False) -> tuple[Any, Any]:
    """``(f(*primals), J v)``: the outputs and their tangents along ``tangents``.

    ``tangents`` has one tensor per differentiated argument, of that argument's shape; with
    ``batched=True`` each has a leading axis of directions (vector mode) and so do the
    output tangents. Outputs keep ``f``'s structure (a tensor, or nested lists/tuples/dicts).

    >>> ad.jvp(lambda t: t.sin(), ad.tensor([0.0, 1.0]), ad.tensor([1.0, 1.0]))  # cos(t) v
    (tensor([0.0000, 0.8415]), tensor([1.0000, 0.5403]))
    >>> ad.jvp(lambda t: t ** 2, ad.tensor([1.0, 2.0]), ad.tensor([1.0, 0.0]))  # 2t v
    (tensor([1., 4.]), tensor([2., 0.]))
    """
    args, nums, _ = arguments("jvp", primals, argnums)
    tangents = per_argument("jvp", "tangents", tangents, nums)
    tangents = [user_tangent(v, args[i], i, batched) for i, v in zip(nums, tangents)]
    k = tangents[0].shape[0]
    for i, v in zip(nums, tangents):
        if v.shape[0] != k:
            raise ValueError(f"gpuad.jvp: tangent {i} has {v.shape[0]} directions, an "
                             f"earlier one {k}; batched tangents share their first axis")
    with forward.level() as lvl:
        args = seeded(args, nums, lvl, tangents)
        out = f(*args)
        t_out = take_tangents(structure.flatten(out), lvl, k)
    if not batched:
        t_out = [None if t is None else t.reshape(t.shape[1:]) for t in t_out]
    return out, structure.unflattener(out)(t_out)


def vjp(f: Callable[..., Any], *primals: Any, argnums: int | Sequence[int] | None = None
        ) -> tuple[Any, Callable[[Any], tuple[Tensor, ...]]]:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangents)`` returns the tuple of the
    differentiated arguments' gradients (``cotangents`` in the structure of the outputs).

    >>> out, vjp_fn = ad.vjp(lambda a, b: a * b, ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    >>> out
    tensor([3., 8.], grad_fn=<MulBackward>)
    >>> vjp_fn(ad.ones(2))  # (b, a)
    (tensor([3., 4.]), tensor([1., 2.]))
    """
    args, nums, _ = arguments("vjp", primals, argnums)
    args, inputs, create = reverse_inputs(args, nums)
    with enable_grad():
        out = f(*args)
    outs = structure.flatten(out)
    check_outputs("vjp", outs)
    create = stronger(create, reaches_outside(outs, inputs))

    def vjp_fn(cotangents):
        cts = structure.flatten(cotangents)
        if len(cts) != len(outs):
            raise ValueError(f"gpuad: vjp_fn got {len(cts)} cotangents for {len(outs)} "
                             "outputs; pass one per output, in the structure of the outputs")
        pairs = [(o, c) for o, c in zip(outs, cts) if o._rg and c is not None]
        kind = stronger(create, mode.enabled and tracking(cts))
        grads = (engine.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                             retain_graph=True, create_graph=bool(kind), allow_unused=True)
                 if pairs else (None,) * len(inputs))
        return settle(tuple(zeros_if_none(g, x) for g, x in zip(grads, inputs)), kind)

    return out, vjp_fn


def reverse_rows(outputs, directions, backward):
    """Jacobian rows from one backward pass: ``backward(seeds)`` runs the pass from one seed
    per output and returns each source's gradient (None: unconnected). The seed of output
    ``j`` is zeros carrying ``directions[j]``, ``(k,) + outputs[j].shape``, as its tangent.
    Returns the tangent of each source's gradient, ``(k,) + source.shape``: row ``r`` is
    sum_j directions[j][r] . d outputs[j] / d source (zeros where the gradient does not depend
    on the seeds; None where unconnected)."""
    k = directions[0].shape[0]
    with forward.level() as lvl:
        seeds = [forward.seed(zeros(o.shape, o), lvl, d) for o, d in zip(outputs, directions)]
        return take_tangents(backward(seeds), lvl, k)


# ---- helpers --------------------------------------------------------------------------------

def arguments(name, primals, argnums):
    """``(args, argnums, single)``: the call's arguments, the differentiated ones (checked:
    floating tensors) and whether results are for one argument (not nested)."""
    single = isinstance(primals, Tensor)
    args = (primals,) if single else tuple(primals)
    if argnums is None:
        nums = tuple(range(len(args)))
    elif hasattr(argnums, "__index__"):
        nums, single = (int(argnums),), True
    else:
        nums, single = tuple(argnums), False
    if not nums:
        raise ValueError(f"gpuad.{name}: no argument to differentiate")
    nums = tuple(i % len(args) if -len(args) <= i < len(args) else _bad_argnum(name, i, args)
                 for i in nums)
    for i in nums:
        x = args[i]
        if not isinstance(x, Tensor):
            raise TypeError(f"gpuad.{name}: argument {i} is a {type(x).__name__}; the "
                            "differentiated arguments must be tensors (see argnums)")
        if x.dtype.kind != "f":
            raise TypeError(f"gpuad.{name}: argument {i} is {x.dtype}; only floating-point "
                            "tensors can be differentiated")
    return args, nums, single


def per_argument(name, what, values, nums):
    """``values`` (one, or a list/tuple) as a tuple of one per differentiated argument."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(values) != len(nums):
        raise ValueError(f"gpuad.{name}: got {len(values)} {what} for {len(nums)} "
                         "differentiated arguments; pass one per argument")
    return values


def seeded(args, nums, lvl, tangents):
    """The arguments with each differentiated one replaced by an alias carrying its tangent
    for level ``lvl``."""
    args = list(args)
    for i, t in zip(nums, tangents):
        args[i] = forward.seed(_alias(args[i]), lvl, t)
    return args


def _bad_argnum(name, i, args):
    raise ValueError(f"gpuad.{name}: argnums names argument {i}, but there are {len(args)}")


def _alias(x):
    """``x`` as a new tensor for a level's tangent: a graph-connected view when something
    tracks ``x`` (so results stay differentiable with respect to it), else a detached one."""
    if needs_grad(x):
        return x.reshape(x.shape)  # (a view op: the ops' method, this floor is below them)
    return x.detach()


def reverse_inputs(args, nums):
    """The arguments with the differentiated ones made to require grad, those inputs, and
    whether the backward pass must be recorded because something outside tracks an input:
    False, "tape" (only gradient tapes) or "rg" (it requires grad)."""
    args = list(args)
    inputs = []
    create = False
    for i in nums:
        x = args[i]
        outer = mode.enabled and ("rg" if x._rg else
                                  "tape" if mode.tapes and tape_tracked(x) else False)
        create = stronger(create, outer)
        if outer or forward.has_tangent(x):
            a = _alias(x)
        else:
            a = x.detach()
        if not a._rg:
            if a._grad_fn is None:
                a.requires_grad_()
            else:  # only a tape recorded it: the inner pass starts here, the tape goes on
                a._rg = True
        args[i] = a
        inputs.append(a)
    return args, inputs, create


def reaches_outside(outs, inputs):
    """Whether (with grad mode on) the graph behind ``outs`` also depends on something tracked
    besides ``inputs``: "rg" for a leaf that requires grad (a parameter in a closure), "tape"
    for only what gradient tapes recorded or watch, else False. Then the backward pass is
    recorded, so the results stay differentiable with respect to it, as forward mode's are."""
    if not mode.enabled:
        return False
    own = {id(x) for x in inputs}
    stack = [o._grad_fn for o in outs if isinstance(o, Tensor) and o._grad_fn is not None]
    seen = set()
    found = False
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.tapes:
            found = "tape"
        for p in node.taped or node.parents:
            if p is None:
                continue
            if p.__class__ is Node:
                stack.append(p)
            elif id(p) not in own:
                if p._rg:
                    return "rg"
                found = "tape"
    return found


def stronger(a, b):
    """The stronger of two reasons to record the backward pass: "rg" > "tape" > False."""
    return "rg" if "rg" in (a, b) else ("tape" if "tape" in (a, b) else False)


def settle(results, create):
    """Results that only tapes track do not require grad (they stay on the tapes, as
    Variables' results do), like forward mode's."""
    if create == "tape":
        for r in structure.flatten(results):
            if isinstance(r, Tensor) and r._rg and r._grad_fn is not None:
                r._rg = False
    return results


def tracking(ts):
    """What tracks the tensors ``ts``: "rg", "tape" or False (see :func:`reverse_inputs`)."""
    kind = False
    for t in ts:
        if isinstance(t, Tensor) and needs_grad(t, tangents=False):
            if t._rg:
                return "rg"
            kind = "tape"
    return kind


def user_tangent(v, x, i, batched):
    """A user's tangent for argument ``x``, checked, as ``(k,) + x.shape`` in x's dtype."""
    if not isinstance(v, Tensor):
        v = constant(v, x._dev, x)
    want = x.shape if not batched else ("k",) + x.shape
    if v._dev is not x._dev:
        raise DeviceMismatchError(
            f"gpuad: the tangent for argument {i} is on {v._dev} but the argument is on "
            f"{x._dev}; move it with .to({str(x._dev)!r})")
    if v.shape[1 if batched else 0:] != x.shape or (batched and v.ndim != x.ndim + 1):
        raise ValueError(f"gpuad: the tangent for argument {i} has shape {v.shape}, expected "
                         f"{want}" + (" (a leading axis of directions)" if batched else ""))
    if v.dtype != x.dtype:
        v = v.astype(x.dtype)
    return v if batched else v.reshape((1,) + x.shape)


def take_tangents(outs, lvl, k):
    """The tangents at ``lvl`` of the tensors ``outs`` (None entries stay None), then taken off
    them (all read first: one tensor may stand at several places). Zeros for a tensor without
    one (it does not depend on the inputs), None for a non-floating one."""
    for o in outs:
        if o is not None and not isinstance(o, Tensor):
            raise TypeError(f"gpuad: the function returned a {type(o).__name__}; it must "
                            "return tensors (or nested lists/tuples/dicts of them)")
    found = [None if o is None else forward.tangent(o, lvl) for o in outs]
    for t in found:
        if t.__class__ is forward.Unruled:
            t.refuse()
    for o in outs:
        if o is not None:
            forward.drop(o, lvl)
    return [zeros((k,) + o.shape, o) if t is None and o is not None and o.dtype.kind == "f"
            else _writable(t) for o, t in zip(outs, found)]


def _writable(t):
    """A result the caller may change in place: not a broadcast view (elements sharing
    memory), which a tangent may be."""
    if t is not None and any(st == 0 and n > 1 for st, n in zip(t._a.strides, t._a.shape)):
        return t.clone()
    return t


def zeros(shape, like):
    return Tensor(like._dev.backend.zeros(shape, dtype=like.dtype), like._dev)


def zeros_if_none(g, x):
    return zeros(x.shape, x) if g is None else g


def check_outputs(name, outs):
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gpuad.{name}: the function returned a {type(o).__name__}; it "
                            "must return tensors (or nested lists/tuples/dicts of them)")
