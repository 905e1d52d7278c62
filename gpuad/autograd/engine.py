"""The reverse-mode engine: walks the recorded graph from outputs to inputs.

The walk is iterative (graphs of any depth), visits nodes in reverse topological order, runs
only the nodes that lead to the requested inputs, accumulates gradients out of place, undoes
broadcasting and dtype promotion in one place (:func:`.unbroadcast.fit`), and frees each node's
saved values after use unless ``retain_graph`` is set. With ``create_graph`` the rules run with
grad mode on, so the gradients themselves are recorded and can be differentiated again. How a
gradient becomes ``.grad`` (never sharing storage) and what hooks may return: :mod:`.accumulate`.

A gradient tape runs the same walk (:func:`execute` with the tape's mark): it follows only the
nodes recorded on that tape, also through inputs that only the tape watches, and stops at
nodes made outside it, which are constants to the tape unless they are asked for.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, overload

from ..convert import constant, mismatch
from ..tensor import Tensor
from . import collector
from .accumulate import accumulate_into_grad as _accumulate_into_grad
from .accumulate import claim as _claim
from .accumulate import run_hooks as _run_hooks
from .anomaly import backward_pass, name_forward_line
from .callbacks import after_pass
from .forward import carry
from .grad_mode import anomaly, mode
from .node import FREED, Node, OutputGrads
from .unbroadcast import fit

if TYPE_CHECKING:
    from .._typing import TensorLike


def backward(tensors: Tensor | Sequence[Tensor],
             grad_tensors: TensorLike | Sequence[TensorLike | None] | None = None,
             retain_graph: bool | None = None, create_graph: bool = False,
             inputs: Tensor | Sequence[Tensor] | None = None) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the leaves (or ``inputs``);
    ``grad_tensors`` has one gradient per tensor (needed for a tensor that is not a scalar).

    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> ad.backward((x * x).sum())  # d sum(x**2) / dx = 2x: x.grad is [2, 4]
    >>> ad.backward([x * 3], grad_tensors=[ad.tensor([1.0, 10.0])])  # adds 3 * [1, 10]
    >>> x.grad
    tensor([ 5., 34.])
    """
    with after_pass():  # (DistributedDataParallel's averaging runs as it ends)
        tensors = _as_tuple(tensors)
        one = grad_tensors is not None and not isinstance(grad_tensors, (list, tuple))
        seeds = _seeds(tensors, (grad_tensors,) if one else grad_tensors)  # (one: a gradient)
        if retain_graph is None:
            retain_graph = create_graph
        if inputs is not None:
            inputs = _as_tuple(inputs)
            _check_differentiable(inputs, "backward")
            inputs = tuple({id(t): t for t in inputs}.values())  # (one gradient each, as PyTorch)
            foreign: set[int] = set()  # (ids of arrays)
            captured = execute(tensors, seeds, retain_graph, create_graph, inputs, foreign,
                                fill_retained=True)
            prev = mode.enabled
            mode.enabled = create_graph  # (as during the pass: a plain one records nothing)
            try:
                for t in inputs:
                    g = captured.get(t._grad_fn or t)
                    if g is not None:
                        _accumulate_into_grad(t, g, create_graph, foreign)
            finally:
                mode.enabled = prev
        else:
            execute(tensors, seeds, retain_graph, create_graph, None, set())


@overload
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: TensorLike | Sequence[TensorLike | None] | None = None,
         retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: Literal[False] = False) -> tuple[Tensor, ...]: ...
@overload
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: TensorLike | Sequence[TensorLike | None] | None = None,
         retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple[Tensor | None, ...]: ...
def grad(outputs: Tensor | Sequence[Tensor], inputs: Tensor | Sequence[Tensor],
         grad_outputs: TensorLike | Sequence[TensorLike | None] | None = None,
         retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``, as a tuple; ``.grad`` untouched.

    As in PyTorch, a result may be a ``grad_outputs`` tensor itself or share storage with
    another result (one add rule hands both inputs one gradient): ``.clone()`` one before
    changing it in place. Only ``.grad`` never shares storage.

    >>> x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> ad.grad((x ** 2).sum(), x)  # 2x
    (tensor([2., 4., 6.]),)
    >>> (g,) = ad.grad((x ** 3).sum(), x, create_graph=True)  # 3x**2, itself differentiable
    >>> ad.grad(g.sum(), x)  # 6x
    (tensor([ 6., 12., 18.]),)
    """
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    _check_differentiable(inputs, "grad")
    seeds = _seeds(outputs, _as_tuple(grad_outputs) if grad_outputs is not None else None)
    if retain_graph is None:
        retain_graph = create_graph
    captured = execute(outputs, seeds, retain_graph, create_graph, inputs, set())
    result = []
    for i, t in enumerate(inputs):
        g = captured.get(t._grad_fn or t)
        if g is None and not allow_unused:
            raise RuntimeError(
                f"gpuad.grad: input {i} (shape {t.shape}) was not used to compute the outputs, "
                "so it has no gradient; pass allow_unused=True to get None for it"
            )
        result.append(g)
    return tuple(result)


# ---- internals ------------------------------------------------------------------------

def _as_tuple(x):
    if isinstance(x, Tensor):
        return (x,)
    if x is None:
        return ()
    return tuple(x)


def _check_differentiable(inputs, op):
    """Refuse an empty ``inputs`` (PyTorch too) and any input that is not a tensor requiring
    grad; ``op`` ("grad" or "backward") is named in the message."""
    if not inputs:
        raise RuntimeError(f"gpuad.{op}: inputs is empty; pass the tensors to differentiate "
                           "with respect to" + (", or inputs=None for every leaf"
                                                if op == "backward" else ""))
    _each_requires_grad(inputs, lambda i: f"gpuad.{op}: input {i}", lambda i, t: (
        f"gpuad.{op}: input {i} (shape {t.shape}, dtype {t.dtype}) does not require grad; "
        "create it with requires_grad=True or call .requires_grad_()"))


def _each_requires_grad(values, name, refusal):
    """Refuse the first of ``values`` that is not a tensor (a TypeError naming it as
    ``name(i)``) or does not require grad (a RuntimeError saying ``refusal(i, t)``)."""
    for i, t in enumerate(values):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name(i)} is a {type(t).__name__}, not a Tensor")
        if not t._rg:
            raise RuntimeError(refusal(i, t))


def _seeds(outputs, grads):
    """The seeds of ``backward``/``grad``: each output must require grad; ones (scalar
    outputs only) where no gradient is given."""
    if grads is not None and len(grads) != len(outputs):
        raise ValueError(
            f"gpuad: got {len(grads)} output gradients for {len(outputs)} outputs; "
            "pass one per output"
        )
    _each_requires_grad(outputs, lambda i: f"gpuad: output {i}", lambda i, t: (
        f"gpuad: element {i} of tensors does not require grad and does not have a grad_fn: "
        "nothing that requires grad was used to compute it (check requires_grad=True on the "
        "inputs, and that it was not computed under no_grad; a trainable ad.Variable is "
        "watched by GradientTape but does not require grad: use tape.gradient, or "
        "v.requires_grad_())"))
    return [seed_gradient(y, None if grads is None else grads[i], i, "backward")
            for i, y in enumerate(outputs)]


def seed_gradient(y, g, i, caller, any_shape=False, error=RuntimeError):
    """The gradient a backward pass starts from at output ``i``, ``y``: ``g`` (an array-like
    is converted next to ``y``), checked to be on ``y``'s device and of its shape (else an
    ``error``) and cast to its dtype; or, for ``g`` None, ones: the gradient of ``y``'s sum,
    which only a one-element ``y`` has implicitly unless ``any_shape`` (a tape's targets).
    ``caller`` names the API in messages."""
    if g is None:
        if y._a.size != 1 and not any_shape:
            raise RuntimeError(
                "gpuad: grad can be implicitly created only for scalar outputs; output "
                f"{i} has shape {y.shape}. Reduce it first (e.g. y.sum().backward()) or "
                "pass gradient= with the same shape"
            )
        return Tensor(y._dev.backend.ones(y.shape, dtype=y.dtype), y._dev)
    if not isinstance(g, Tensor):
        g = constant(g, y._dev, y)
    if g._dev is not y._dev:
        raise mismatch(f"{caller} (the gradient for output {i}, and the output)", y._dev,
                       g._dev)
    if g.shape != y.shape:
        raise error(f"gpuad: mismatch in shape: the gradient for output {i} ({caller}) has "
                    f"shape {g.shape} but the output has shape {y.shape}; they must be equal")
    return g if g.dtype == y.dtype else g.astype(y.dtype)


def _edges(node, mark):
    """The inputs a walk follows from ``node``: all tracked ones on a tape's walk."""
    if mark is None or node.taped is None:
        return node.parents
    return node.taped


def _follows(p, mark):
    """Whether a walk goes on into ``p``: a node, and on the tape's walk one it recorded."""
    return p.__class__ is Node and (mark is None or (p.tapes is not None and mark in p.tapes))


def _topological(roots, mark=None):
    """Nodes reachable from ``roots``, each before the nodes that produced its inputs (on a
    tape's walk, only the nodes carrying its ``mark``)."""
    order = []
    seen = set()
    for root in roots:
        if root in seen:  # reached from an earlier root: it is already ordered after it
            continue
        seen.add(root)
        stack = [(root, iter(_edges(root, mark)))]
        while stack:
            node, parents = stack[-1]
            for p in parents:
                if (p.__class__ is Node and p not in seen
                        and (mark is None or (p.tapes is not None and mark in p.tapes))):
                    seen.add(p)
                    stack.append((p, iter(p.parents if mark is None or p.taped is None
                                          else p.taped)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def runs_user_code(roots, targets, mark=None):
    """Whether a backward pass from the nodes ``roots`` to the tensors ``targets`` would run
    user code: custom gradient rules or hooks on the way. Batched Jacobians push forward-mode
    tangents through the backward rules, which is exact for gpuad's rules; user code might
    leave gpuad (and drop the tangents)."""
    order = _topological(roots, mark)
    keys = {t._grad_fn or t for t in targets}
    for node in _needed(order, keys, mark):
        if node.op.vjps is None or node.hooks:
            return True
    return any(t._hooks or (t._grad_fn is not None and t._grad_fn.hooks) for t in targets)


def _needed(order, targets, mark=None):
    """The nodes on some path to a target; the others need not run."""
    needed = set()
    for node in reversed(order):
        for p in _edges(node, mark):
            if p is not None and (p in targets or p in needed):
                needed.add(node)
                break
    return needed


def _check_versions(node):
    for counter, version in node.vers:
        if counter[0] != version:
            raise RuntimeError(
                f"gpuad: one of the tensors saved by {node.name()} for the backward pass has been "
                f"modified by an in-place operation (it was at version {version}, now "
                f"{counter[0]}). Use an out-of-place op (e.g. x = x + 1 instead of x += 1) or "
                ".clone() the tensor before changing it"
            )


@backward_pass
def execute(roots, seeds, retain_graph, create_graph, targets, foreign, mark=None,
             fill_retained=False):
    """Run the backward pass. Returns ``{key: grad}`` for the targets (None: all leaves).

    ``foreign`` collects the ids of arrays the caller owns (seeds, tensors returned by hooks):
    a leaf never adopts one of those as its ``.grad`` storage. With a tape's ``mark`` the walk
    stays on that tape's nodes, and a target may also be a node the tape did not record.
    A retained non-leaf's ``.grad`` accumulates when the pass reaches its node: always without
    targets; with targets only for ``backward(inputs=...)`` (``fill_retained``: as PyTorch, the
    retained tensors on the way to the inputs, each input itself accumulated by the caller),
    never for ``ad.grad``."""
    grads = {}
    root_nodes = []
    for y, g in zip(roots, seeds):
        key = y._grad_fn or y
        old = grads.get(key)
        grads[key] = g if old is None else old + g
        if (y._grad_fn is not None and y._grad_fn not in root_nodes
                and _follows(y._grad_fn, mark)):
            root_nodes.append(y._grad_fn)
    prev, prev_creating = mode.enabled, mode.creating
    check = getattr(anomaly[0], "check_rule", None)  # the anomaly mode's, after each rule
    node = None
    collector.walking = True  # (walking a long graph keeps the collector's raised threshold)
    try:  # (from the sort on: an interrupted sort still ends the walk, in finally)
        order = _topological(root_nodes, mark)
        if targets is not None:
            target_keys = {t._grad_fn or t for t in targets}
            needed = _needed(order, target_keys, mark)
            captured = {}
        for g in seeds:
            _claim(foreign, g._a)
        mode.enabled = create_graph
        mode.creating = create_graph
        with roots[0]._dev.backend.errstate():
            for node in order:
                g = grads.pop(node, None)
                if g is None:
                    continue
                if node.hooks:
                    g = _run_hooks(node.hooks, g, foreign)
                if node.retained is not None and (targets is None or (
                        fill_retained and node not in target_keys)):
                    t = node.retained()
                    if t is not None:
                        _accumulate_into_grad(t, g, create_graph, foreign)
                if targets is not None:
                    if node in target_keys:
                        captured[node] = g
                    if node not in needed:
                        continue
                saved = node.saved
                if saved is FREED:
                    raise RuntimeError(
                        f"gpuad: trying to backward through {node.name()} a second time, but its "
                        "saved values were freed by the first backward (or by a GradientTape "
                        "that let go of its recording). Specify retain_graph=True on the first "
                        "backward (or ad.grad) call, or use GradientTape(persistent=True), if "
                        "you need to backward through the graph again"
                    )
                for counter, version in node.vers:  # (inline: this loop runs for every node)
                    if counter[0] != version:
                        _check_versions(node)
                op = node.op
                if op.save_out:
                    rg = mark is None or node.in_graph()
                    out = node.out
                    if out.__class__ is Tensor:  # it carries forward-mode tangents
                        y = Tensor(out._a, node.device, node, rg)
                        carry(y, out._tan)
                    else:
                        y = Tensor(out, node.device, node, rg)
                    saved = (y,) + saved
                vjps = op.vjps
                if vjps is None:  # one rule gives every input's gradient (custom gradients)
                    edges = _edges(node, mark)
                    for i, (p, gi) in enumerate(zip(edges, op.vjp_all(node, g, saved))):
                        if gi is not None and p is not None:
                            if gi.__class__ is not OutputGrads:
                                _claim(foreign, gi._a)  # the user's rule made it: theirs
                            gi = fit(gi, p)
                            if check:
                                check(node, i, g, saved, gi)
                            old = grads.get(p)
                            grads[p] = gi if old is None else old + gi
                else:
                    for i, p in enumerate(node.parents if mark is None else _edges(node, mark)):
                        if p is None or (targets is not None and p not in needed
                                         and p not in target_keys):
                            continue
                        gi = vjps[i](g, *saved)
                        if gi.__class__ is not Tensor:  # (a custom function's OutputGrads)
                            gi = fit(gi, p)
                        elif p.__class__ is Node:  # (fit, inlined where it has nothing to do)
                            if gi._a.shape != p.shape or gi._a.dtype != p.dtype:
                                gi = fit(gi, p)
                        elif gi._a.shape != p._a.shape or gi._a.dtype != p._a.dtype:
                            gi = fit(gi, p)
                        if check:
                            check(node, i, g, saved, gi)
                        old = grads.get(p)
                        grads[p] = gi if old is None else old + gi
                if not retain_graph and (node.saved or op.save_out):
                    node.saved = FREED
                    node.out = None
            node = None  # (past the nodes)
            for leaf, g in grads.items():
                if leaf.__class__ is Node:
                    if targets is not None and leaf in target_keys:
                        captured[leaf] = g  # a node outside the tape, asked for as a source
                    continue  # else a node that was pruned away
                if leaf._hooks:
                    g = _run_hooks(leaf._hooks, g, foreign)
                if targets is None:
                    _accumulate_into_grad(leaf, g, create_graph, foreign)
                elif leaf in target_keys:
                    captured[leaf] = g
    except Exception as exc:
        if node is not None and anomaly[0] is not None:
            name_forward_line(exc, node)  # the anomaly mode: the forward line of the node
        raise
    finally:
        mode.enabled, mode.creating = prev, prev_creating
        collector.settle()  # (the graph is used up: see .collector)
    return captured if targets is not None else None


def _backward_method(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (SPEC section 3)."""
    backward((self,), None if gradient is None else (gradient,), retain_graph, create_graph,
             inputs)


_backward_method.__name__, _backward_method.__qualname__ = "backward", "Tensor.backward"
Tensor.backward = _backward_method  # type: ignore[method-assign]  # (declared there)
