"""Function transforms: ``jacobian``, ``hessian`` and ``hvp`` (SPEC section 6), with ``jvp``
and ``vjp`` (:mod:`.linearize`).

- ``jacobian(mode="forward")`` is one forward pass seeded with an identity: every input
  direction rides along at once as the tangents' batch axis.
- ``jacobian(mode="reverse")`` is one backward pass whose seed carries an identity as its
  tangent (:func:`.linearize.reverse_rows`). Graphs with custom gradients or hooks, whose code
  is the user's, are done one row at a time instead.
- ``hessian`` and ``hvp`` are forward over reverse.

Each takes a function of several arguments: ``primals`` is the tuple of arguments (or one
tensor) and ``argnums`` picks the ones to differentiate (all by default). Results compose:
inputs that require grad, are watched by a tape, or carry tangents of an enclosing ``jvp``
stay connected, so the results can be differentiated again by any of the engines.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import ForwardModeError
from ..ops.shape import moveaxis
from ..tensor import Tensor
from . import engine, forward, structure
from .grad_mode import enable_grad, mode
from .linearize import (
    arguments,
    check_outputs,
    jvp,
    per_argument,
    reaches_outside,
    reverse_inputs,
    reverse_rows,
    seeded,
    settle,
    stronger,
    take_tangents,
    tracking,
    user_tangent,
    vjp,
    zeros,
)
from .rows import one_hots, stack_rows

_MODES = ("auto", "forward", "reverse")


def jacobian(f: Callable[..., Any], primals: Tensor | Sequence[Any],
             mode: Literal["auto", "forward", "reverse"] = "auto",
             argnums: int | Sequence[int] | None = None) -> Any:
    """The Jacobian of ``f`` at ``primals``: shape ``output.shape + input.shape``.

    ``mode``: "forward" (one pass with every input direction as a tangent), "reverse" (one
    backward pass with every output direction), or "auto": forward when the differentiated
    inputs have fewer elements than the outputs. ``f`` may return a tensor or a tuple/list
    of them; with several outputs or arguments the result is nested (outputs, then inputs)
    as in ``torch.autograd.functional.jacobian``.

    >>> ad.jacobian(lambda t: t ** 2, ad.tensor([1.0, 2.0]))  # diag(2t)
    tensor([[2., 0.],
            [0., 4.]])
    >>> da, db = ad.jacobian(lambda a, b: a * b, (ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0])))
    >>> db  # d(a * b) / db = diag(a)
    tensor([[1., 0.],
            [0., 2.]])
    """
    if mode not in _MODES:
        raise ValueError(f"gpuad.jacobian: mode must be one of {_MODES}, got {mode!r}")
    args, nums, single_in = arguments("jacobian", primals, argnums)
    if mode == "forward":
        return _jacobian_forward(f, args, nums, single_in)
    out, outs, inputs, create = _record(f, args, nums)
    n_in = sum(x.size for x in inputs)
    if mode == "auto" and n_in < sum(o.size for o in outs):
        try:
            return _jacobian_forward(f, args, nums, single_in)
        except ForwardModeError:  # a custom op without a JVP rule: reverse mode can do it
            pass
    return settle(_nest(out, single_in, _jacobian_reverse(outs, inputs, create)), create)


def hessian(f: Callable[..., Any], primals: Tensor | Sequence[Any],
            argnums: int | Sequence[int] | None = None) -> Any:
    """The Hessian of scalar ``f`` at ``primals``, forward over reverse: one backward pass
    whose inputs carry an identity as tangents. Shape ``input.shape + input.shape`` (nested
    by pairs of arguments when several are differentiated).

    >>> ad.hessian(lambda t: (t ** 3).sum(), ad.tensor([1.0, 2.0]))  # diag(6t)
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    >>> ad.hessian(lambda t: t[0] * t[1], ad.tensor([1.0, 2.0]))
    tensor([[0., 1.],
            [1., 0.]])
    """
    args, nums, single_in = arguments("hessian", primals, argnums)
    xs = [args[i] for i in nums]
    sizes = [x.size for x in xs]
    with forward.level() as lvl:
        args = seeded(args, nums, lvl, _identity_blocks(xs))
        args, inputs, create = reverse_inputs(args, nums)
        with enable_grad():
            y = f(*args)
        _check_scalar("hessian", y)
        create = stronger(create, reaches_outside([y], inputs))
        grads = _grads(y, inputs, create) if y._rg else [None] * len(inputs)
        rows = take_tangents(grads, lvl, sum(sizes))
    table = []
    for x_i, g_t in zip(xs, rows):
        row = []
        for j, x_j in enumerate(xs):
            if g_t is None:
                row.append(zeros(x_i.shape + x_j.shape, x_i))
                continue
            block = g_t[sum(sizes[:j]):sum(sizes[:j + 1])]
            block = block.reshape((sizes[j],) + x_i.shape)
            row.append(_directions_last(block).reshape(x_i.shape + x_j.shape))
        table.append(row[0] if single_in else tuple(row))
    return settle(table[0] if single_in else tuple(table), create)


def hvp(f: Callable[..., Any], primals: Tensor | Sequence[Any], v: Tensor | Sequence[Tensor],
        argnums: int | Sequence[int] | None = None) -> tuple[Tensor, Any]:
    """``(f(*primals), H v)``: the Hessian-vector product of scalar ``f``, forward over
    reverse (one backward pass, one tangent); ``v`` has one tensor per differentiated
    argument.

    >>> f = lambda t: (t ** 3).sum()  # Hessian diag(6t)
    >>> ad.hvp(f, ad.tensor([1.0, 2.0]), ad.tensor([1.0, 1.0]))
    (tensor(9.), tensor([ 6., 12.]))
    """
    args, nums, single_in = arguments("hvp", primals, argnums)
    vs = per_argument("hvp", "vectors", v, nums)
    with forward.level() as lvl:
        args = seeded(args, nums, lvl, [user_tangent(vi, args[i], i, False)
                                         for i, vi in zip(nums, vs)])
        args, inputs, create = reverse_inputs(args, nums)
        create = stronger(create, mode.enabled and tracking(vs))  # H v differentiable in v
        with enable_grad():
            y = f(*args)
        _check_scalar("hvp", y)
        create = stronger(create, reaches_outside([y], inputs))
        grads = _grads(y, inputs, create) if y._rg else [None] * len(inputs)
        out = take_tangents(grads, lvl, 1)
    out = [zeros(x.shape, x) if t is None else t.reshape(x.shape)
           for t, x in zip(out, inputs)]
    return settle(((y if create else y.detach()), out[0] if single_in else tuple(out)), create)


# ---- Jacobians ------------------------------------------------------------------------

def _jacobian_forward(f, args, nums, single_in):
    xs = [args[i] for i in nums]
    sizes = [x.size for x in xs]
    with forward.level() as lvl:
        args = seeded(args, nums, lvl, _identity_blocks(xs))
        out = f(*args)
        outs = structure.flatten(out)
        check_outputs("jacobian", outs)
        t_out = take_tangents(outs, lvl, sum(sizes))
    table = []
    for o, t in zip(outs, t_out):
        row = []
        for j, x in enumerate(xs):
            if t is None:  # a non-floating output: zeros, as in reverse mode
                row.append(zeros(o.shape + x.shape, x))
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
        return [[zeros(o.shape + x.shape, x) for x in inputs] for o in outs]
    if engine.runs_user_code([o._grad_fn for o in live if o._grad_fn is not None], inputs):
        return _jacobian_rows(outs, inputs, create)
    sizes = [o.size for o in outs]

    def backward(seeds):
        pairs = [(o, s) for o, s in zip(outs, seeds) if o._rg]
        return engine.grad([o for o, _ in pairs], inputs, [s for _, s in pairs],
                           retain_graph=True, create_graph=bool(create), allow_unused=True)

    t_in = reverse_rows(outs, _identity_blocks(outs), backward)
    table = []
    for r, o in enumerate(outs):
        lo, hi = sum(sizes[:r]), sum(sizes[:r + 1])
        table.append([zeros(o.shape + x.shape, x) if t is None
                      else t[lo:hi].reshape(o.shape + x.shape) for x, t in zip(inputs, t_in)])
    return table


def _jacobian_rows(outs, inputs, create):
    """Rows of every output, by output then input: one backward pass per output element."""
    table = []
    for o in outs:
        rows = [engine.grad(o, inputs, seed, retain_graph=True, create_graph=bool(create),
                            allow_unused=True) if o._rg else (None,) * len(inputs)
                for seed in one_hots(o, o.size)]
        table.append([stack_rows([r[j] for r in rows], x, o.shape + x.shape, 0, True)
                      for j, x in enumerate(inputs)])
    return table


# ---- helpers --------------------------------------------------------------------------------

def _record(f, args, nums):
    args, inputs, create = reverse_inputs(args, nums)
    with enable_grad():
        out = f(*args)
    outs = structure.flatten(out)
    check_outputs("jacobian", outs)
    return out, outs, inputs, stronger(create, reaches_outside(outs, inputs))


def _grads(y, inputs, create):
    create = bool(create)
    return engine.grad(y, inputs, retain_graph=create, create_graph=create, allow_unused=True)


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
    return moveaxis(t, 0, -1)


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
