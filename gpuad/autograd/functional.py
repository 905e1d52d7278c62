"""Function transforms: ``jvp``, ``vjp``, ``jacobian``, ``hessian`` and ``hvp`` (SPEC section 6).

- ``jvp`` is true forward mode (:mod:`.forward`): one pass carries the tangents.
- ``jacobian(mode="forward")`` is one forward pass seeded with an identity: every input
  direction rides along at once as the tangents' batch axis.
- ``jacobian(mode="reverse")`` is one backward pass whose seed carries an identity as its
  tangent: the backward rules are linear in the output gradient and are gpuad ops with JVP
  rules, so forward mode over them pushes every output direction through in one pass (what
  ``vmap`` over a VJP does elsewhere). Graphs with custom gradients or hooks, whose code is
  the user's, are done one row at a time instead.
- ``hessian`` and ``hvp`` are forward over reverse.

Each takes a function of several arguments: ``primals`` is the tuple of arguments (or one
tensor) and ``argnums`` picks the ones to differentiate (all by default). Results compose:
inputs that require grad, are watched by a tape, or carry tangents of an enclosing ``jvp``
stay connected, so the results can be differentiated again by any of the engines.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import DeviceMismatchError, ForwardModeError
from ..tensor import Tensor, needs_grad, tape_tracked
from . import engine, forward, structure
from .grad_mode import enable_grad, mode
from .node import Node

_MODES = ("auto", "forward", "reverse")


def jvp(f: Callable[..., Any], primals: Tensor | Sequence[Any],
        tangents: Tensor | Sequence[Tensor], argnums: int | Sequence[int] | None = None,
        batched: bool = False) -> tuple[Any, Any]:
    """``(f(*primals), J v)``: the outputs and their tangents along ``tangents``.

    ``tangents`` has one tensor per differentiated argument, of that argument's shape; with
    ``batched=True`` each has a leading axis of directions (vector mode) and so do the
    output tangents. Outputs keep ``f``'s structure (a tensor, or nested lists/tuples/dicts).
    """
    args, nums, _ = _arguments("jvp", primals, argnums)
    tangents = _per_argument("jvp", "tangents", tangents, nums)
    tangents = [_tangent(v, args[i], i, batched) for i, v in zip(nums, tangents)]
    k = tangents[0].shape[0]
    for i, v in zip(nums, tangents):
        if v.shape[0] != k:
            raise ValueError(f"gpuad.jvp: tangent {i} has {v.shape[0]} directions, an "
                             f"earlier one {k}; batched tangents share their first axis")
    with forward.level() as lvl:
        args = _seeded(args, nums, lvl, tangents)
        out = f(*args)
        t_out = _take_tangents(structure.flatten(out), lvl, k)
    if not batched:
        t_out = [None if t is None else t.reshape(t.shape[1:]) for t in t_out]
    return out, structure.unflattener(out)(t_out)


def vjp(f: Callable[..., Any], *primals: Any, argnums: int | Sequence[int] | None = None
        ) -> tuple[Any, Callable[[Any], tuple[Tensor, ...]]]:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangents)`` returns the tuple of the
    differentiated arguments' gradients (``cotangents`` in the structure of the outputs)."""
    args, nums, _ = _arguments("vjp", primals, argnums)
    args, inputs, create = _reverse_inputs(args, nums)
    with enable_grad():
        out = f(*args)
    outs = structure.flatten(out)
    _check_outputs("vjp", outs)
    create = _stronger(create, _reaches_outside(outs, inputs))

    def vjp_fn(cotangents):
        cts = structure.flatten(cotangents)
        if len(cts) != len(outs):
            raise ValueError(f"gpuad: vjp_fn got {len(cts)} cotangents for {len(outs)} "
                             "outputs; pass one per output, in the structure of the outputs")
        pairs = [(o, c) for o, c in zip(outs, cts) if o._rg and c is not None]
        kind = _stronger(create, mode.enabled and _tracking(cts))
        grads = (engine.grad([o for o, _ in pairs], inputs, [c for _, c in pairs],
                             retain_graph=True, create_graph=bool(kind), allow_unused=True)
                 if pairs else (None,) * len(inputs))
        return _settle(tuple(_zeros_if_none(g, x) for g, x in zip(grads, inputs)), kind)

    return out, vjp_fn


def jacobian(f: Callable[..., Any], primals: Tensor | Sequence[Any],
             mode: Literal["auto", "forward", "reverse"] = "auto",
             argnums: int | Sequence[int] | None = None) -> Any:
    """The Jacobian of ``f`` at ``primals``: shape ``output.shape + input.shape``.

    ``mode``: "forward" (one pass with every input direction as a tangent), "reverse" (one
    backward pass with every output direction), or "auto": forward when the differentiated
    inputs have fewer elements than the outputs. ``f`` may return a tensor or a tuple/list
    of them; with several outputs or arguments the result is nested (outputs, then inputs)
    as in ``torch.autograd.functional.jacobian``.
    """
    if mode not in _MODES:
        raise ValueError(f"gpuad.jacobian: mode must be one of {_MODES}, got {mode!r}")
    args, nums, single_in = _arguments("jacobian", primals, argnums)
    if mode == "forward":
        return _jacobian_forward(f, args, nums, single_in)
    out, outs, inputs, create = _record(f, args, nums)
    n_in = sum(x.size for x in inputs)
    if mode == "auto" and n_in < sum(o.size for o in outs):
        try:
            return _jacobian_forward(f, args, nums, single_in)
        except ForwardModeError:  # a custom op without a JVP rule: reverse mode can do it
            pass
    return _settle(_nest(out, single_in, _jacobian_reverse(outs, inputs, create)), create)


def hessian(f: Callable[..., Any], primals: Tensor | Sequence[Any],
            argnums: int | Sequence[int] | None = None) -> Any:
    """The Hessian of scalar ``f`` at ``primals``, forward over reverse: one backward pass
    whose inputs carry an identity as tangents. Shape ``input.shape + input.shape`` (nested
    by pairs of arguments when several are differentiated)."""
    args, nums, single_in = _arguments("hessian", primals, argnums)
    xs = [args[i] for i in nums]
    sizes = [x.size for x in xs]
    with forward.level() as lvl:
        args = _seeded(args, nums, lvl, _identity_blocks(xs))
        args, inputs, create = _reverse_inputs(args, nums)
        with enable_grad():
            y = f(*args)
        _check_scalar("hessian", y)
        create = _stronger(create, _reaches_outside([y], inputs))
        grads = _grads(y, inputs, create) if y._rg else [None] * len(inputs)
        rows = _take_tangents(grads, lvl, sum(sizes))
    table = []
    for x_i, g_t in zip(xs, rows):
        row = []
        for j, x_j in enumerate(xs):
            if g_t is None:
                row.append(_zeros(x_i.shape + x_j.shape, x_i))
                continue
            block = g_t[sum(sizes[:j]):sum(sizes[:j + 1])]
            block = block.reshape((sizes[j],) + x_i.shape)
            row.append(_directions_last(block).reshape(x_i.shape + x_j.shape))
        table.append(row[0] if single_in else tuple(row))
    return _settle(table[0] if single_in else tuple(table), create)


def hvp(f: Callable[..., Any], primals: Tensor | Sequence[Any], v: Tensor | Sequence[Tensor],
        argnums: int | Sequence[int] | None = None) -> tuple[Tensor, Any]:
    """``(f(*primals), H v)``: the Hessian-vector product of scalar ``f``, forward over
    reverse (one backward pass, one tangent); ``v`` has one tensor per differentiated
    argument."""
    args, nums, single_in = _arguments("hvp", primals, argnums)
    vs = _per_argument("hvp", "vectors", v, nums)
    with forward.level() as lvl:
        args = _seeded(args, nums, lvl, [_tangent(vi, args[i], i, False)
                                         for i, vi in zip(nums, vs)])
        args, inputs, create = _reverse_inputs(args, nums)
        create = _stronger(create, mode.enabled and _tracking(vs))  # H v differentiable in v
        with enable_grad():
            y = f(*args)
        _check_scalar("hvp", y)
        create = _stronger(create, _reaches_outside([y], inputs))
        grads = _grads(y, inputs, create) if y._rg else [None] * len(inputs)
        out = _take_tangents(grads, lvl, 1)
    out = [_zeros(x.shape, x) if t is None else t.reshape(x.shape)
           for t, x in zip(out, inputs)]
    return _settle(((y if create else y.detach()), out[0] if single_in else tuple(out)), create)


# ---- Jacobians ------------------------------------------------------------------------

def _jacobian_forward(f, args, nums, single_in):
    xs = [args[i] for i in nums]
    sizes = [x.size for x in xs]
    with forward.level() as lvl:
        args = _seeded(args, nums, lvl, _identity_blocks(xs))
        out = f(*args)
        outs = structure.flatten(out)
        _check_outputs("jacobian", outs)
        t_out = _take_tangents(outs, lvl, sum(sizes))
    table = []
    for o, t in zip(outs, t_out):
        row = []
        for j, x in enumerate(xs):
            if t is None:  # a non-floating output: zeros, as in reverse mode
                row.append(_zeros(o.shape + x.shape, x))
                continue
            block = t[sum(sizes[:j]):sum(sizes[:j + 1])].reshape((sizes[j],) + o.shape)
            row.append(_directions_last(block).reshape(o.shape + x.shape))
        table.append(row)
    return _nest(out, single_in, table)


def _jacobian_reverse(outs, inputs, create):
    """Rows of every output, by output then input: one batched backward pass, or a loop of
    single backward passes through a graph with custom-gradient rules or hooks."""
    live = [o for o in outs if o._rg]
    if not live:
        return [[_zeros(o.shape + x.shape, x) for x in inputs] for o in outs]
    if engine.runs_user_code([o._grad_fn for o in live if o._grad_fn is not None], inputs):
        return _jacobian_rows(outs, inputs, create)
    sizes = [o.size for o in outs]
    m = sum(sizes)
    with forward.level() as lvl:
        seeds = []
        for o, v in zip(outs, _identity_blocks(outs)):
            g = Tensor(o._dev.backend.zeros(o.shape, dtype=o.dtype), o._dev)
            seeds.append(forward.seed(g, lvl, v))
        pairs = [(o, s) for o, s in zip(outs, seeds) if o._rg]
        grads = engine.grad([o for o, _ in pairs], inputs, [s for _, s in pairs],
                            retain_graph=True, create_graph=bool(create), allow_unused=True)
        t_in = _take_tangents(grads, lvl, m)
    table = []
    for r, o in enumerate(outs):
        lo, hi = sum(sizes[:r]), sum(sizes[:r + 1])
        table.append([_zeros(o.shape + x.shape, x) if t is None
                      else t[lo:hi].reshape(o.shape + x.shape) for x, t in zip(inputs, t_in)])
    return table


def _jacobian_rows(outs, inputs, create):
    table = []
    for o in outs:
        rows = [[] for _ in inputs]
        backend = o._dev.backend
        for r in range(o.size):
            seed = backend.zeros(o.size, dtype=o.dtype)
            seed[r] = 1
            seed = Tensor(seed.reshape(o.shape), o._dev)
            grads = (engine.grad(o, inputs, seed, retain_graph=True, create_graph=bool(create),
                                 allow_unused=True) if o._rg else (None,) * len(inputs))
            for acc, g, x in zip(rows, grads, inputs):
                acc.append(_zeros_if_none(g, x))
        table.append([_stack(acc, o.shape + x.shape) for acc, x in zip(rows, inputs)])
    return table


# ---- helpers --------------------------------------------------------------------------------

def _arguments(name, primals, argnums):
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


def _per_argument(name, what, values, nums):
    """``values`` (one, or a list/tuple) as a tuple of one per differentiated argument."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if len(values) != len(nums):
        raise ValueError(f"gpuad.{name}: got {len(values)} {what} for {len(nums)} "
                         "differentiated arguments; pass one per argument")
    return values


def _seeded(args, nums, lvl, tangents):
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
        from ..ops.shape import reshape

        return reshape(x, x.shape)
    return x.detach()


def _reverse_inputs(args, nums):
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
        create = _stronger(create, outer)
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


def _record(f, args, nums):
    args, inputs, create = _reverse_inputs(args, nums)
    with enable_grad():
        out = f(*args)
    outs = structure.flatten(out)
    _check_outputs("jacobian", outs)
    return out, outs, inputs, _stronger(create, _reaches_outside(outs, inputs))


def _reaches_outside(outs, inputs):
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


def _stronger(a, b):
    """The stronger of two reasons to record the backward pass: "rg" > "tape" > False."""
    return "rg" if "rg" in (a, b) else ("tape" if "tape" in (a, b) else False)


def _settle(results, create):
    """Results that only tapes track do not require grad (they stay on the tapes, as
    Variables' results do), like forward mode's."""
    if create == "tape":
        for r in structure.flatten(results):
            if isinstance(r, Tensor) and r._rg and r._grad_fn is not None:
                r._rg = False
    return results


def _grads(y, inputs, create):
    create = bool(create)
    return engine.grad(y, inputs, retain_graph=create, create_graph=create, allow_unused=True)


def _tracking(ts):
    """What tracks the tensors ``ts``: "rg", "tape" or False (see :func:`_reverse_inputs`)."""
    kind = False
    for t in ts:
        if isinstance(t, Tensor) and needs_grad(t, tangents=False):
            if t._rg:
                return "rg"
            kind = "tape"
    return kind


def _tangent(v, x, i, batched):
    """A user's tangent for argument ``x``, checked, as ``(k,) + x.shape`` in x's dtype."""
    if not isinstance(v, Tensor):
        from ..ops._args import constant

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


def _take_tangents(outs, lvl, k):
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
    return [_zeros((k,) + o.shape, o) if t is None and o is not None and o.dtype.kind == "f"
            else _writable(t) for o, t in zip(outs, found)]


def _writable(t):
    """A result the caller may change in place: not a broadcast view (elements sharing
    memory), which a tangent may be."""
    if t is not None and any(st == 0 and n > 1 for st, n in zip(t._a.strides, t._a.shape)):
        return t.clone()
    return t


def _identity_blocks(xs):
    """For tensors ``xs`` of n elements in all, the tangents of an n x n identity seed: one
    ``(n,) + x.shape`` block per tensor."""
    n = sum(x.size for x in xs)
    blocks, start = [], 0
    for x in xs:
        backend = x._dev.backend
        eye = backend.eye(n, x.size, k=-start, dtype=x.dtype)
        blocks.append(Tensor(eye.reshape((n,) + x.shape), x._dev))
        start += x.size
    return blocks


def _directions_last(t):
    """Move a tangent's leading axis of directions to the end."""
    from ..ops.shape import moveaxis

    return moveaxis(t, 0, -1)


def _zeros(shape, like):
    return Tensor(like._dev.backend.zeros(shape, dtype=like.dtype), like._dev)


def _zeros_if_none(g, x):
    return _zeros(x.shape, x) if g is None else g


def _stack(rows, shape):
    from ..ops.joining import stack

    return stack(rows).reshape(shape)


def _check_outputs(name, outs):
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"gpuad.{name}: the function returned a {type(o).__name__}; it "
                            "must return tensors (or nested lists/tuples/dicts of them)")


def _check_scalar(name, y):
    if not isinstance(y, Tensor) or y.size != 1:
        shape = getattr(y, "shape", type(y).__name__)
        raise ValueError(f"gpuad.{name}: the function must return a scalar tensor, got "
                         f"{shape}; reduce it first (e.g. .sum())")


def _nest(out, single_in, table):
    """Results by output (in the structure of ``out``) then input, as
    ``torch.autograd.functional.jacobian`` shapes them."""
    rows = [row[0] if single_in else tuple(row) for row in table]
    return rows[0] if isinstance(out, Tensor) else structure.unflattener(out)(rows)


__all__ = ["jvp", "vjp", "jacobian", "hessian", "hvp"]
