"""Custom gradients: ``@custom_gradient`` (TensorFlow style) and ``Function`` (PyTorch style).

Both run the forward computation without recording it, then put the call into the graph as one
node whose rule is the user's gradient function, so ``backward()``, ``ad.grad`` and every
gradient tape use it. The rule runs as ordinary gpuad code: with ``create_graph=True`` or under
an outer tape, its own ops are recorded and can be differentiated again.

A call with several outputs is a hub node over the inputs plus one small node per output; the
outputs' gradients meet at the hub (:class:`OutputGrads`), and the rule runs once for all.

In forward mode a custom op needs a JVP rule of its own (``Function.jvp``, or
``f.defjvp(rule)`` for ``@custom_gradient``): it replaces whatever tangents the user's forward
code computed for the outputs (intermediates keep theirs, so the rules that read them work
forward over reverse), and without a rule a tangent reaching the op raises, naming it.
"""
import functools
import inspect

from ..errors import CustomGradientError
from ..tensor import Tensor, needs_grad, record
from . import structure
from .forward import PerOutput, carry, deferring
from .grad_mode import count_active, mode, no_grad
from .node import Op


class OutputGrads:
    """The gradients that reached some outputs of a multi-output custom node, by index."""

    __slots__ = ("by_index",)

    def __init__(self, by_index):
        self.by_index = by_index

    def __add__(self, other):
        merged = dict(self.by_index)
        for i, g in other.by_index.items():
            merged[i] = g if i not in merged else merged[i] + g
        return OutputGrads(merged)


def _select(name, i):
    """The op of output ``i``: it hands its gradient to the hub under index ``i``."""
    return Op(name, (lambda g: OutputGrads({i: g}),), jvp=lambda ts, y: ts[0][i])


class _OutputRef:
    """Stands for output ``i`` among saved values (the node keeps the array, not the tensor,
    so the graph holds no reference cycle)."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


def _connect(name, inputs, outputs, rule, saved, keep_outputs=False, constant_outputs=(),
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
            o = record(_select(name, i), (hub,), o._a, o._dev, ())
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


def _output_again(node, name, i, constant):
    """Output ``i`` of a custom node, rebuilt in backward from the array the node kept (as a
    constant if it was marked non-differentiable), with its forward-mode tangents if any."""
    kept, first = node.out[i], node.out[0]
    a = kept._a if kept.__class__ is Tensor else kept
    if constant:
        out = Tensor(a, node.device)
    else:
        hub = Tensor(first._a if first.__class__ is Tensor else first, node.device, node,
                     node.in_graph())
        out = record(_select(name, i), (hub,), a, node.device, ())
    if kept.__class__ is Tensor:
        carry(out, dict(kept._tan))
    return out


def _expandable(small, big):
    """Whether shape ``small`` broadcasts to shape ``big`` (a gradient of shape ``big`` then
    sums down to it)."""
    if len(small) > len(big):
        return False
    return all(s in (1, b) for s, b in zip(reversed(small), reversed(big)))


def _check_grad(where, i, label, g, x, exact=True):
    """Gradient ``g`` for input ``x``, checked: a tensor on ``x``'s device whose shape is
    ``x``'s (unless not ``exact``: then also one that sums down to it, as PyTorch allows)."""
    if g is None or not isinstance(x, Tensor):
        return None
    if not isinstance(g, Tensor):
        from ..ops._args import constant

        g = constant(g, x._dev, x)
    if g._dev is not x._dev:
        raise CustomGradientError(
            f"gpuad: {where}: the gradient for input {i} ({label}) is on {g._dev} but the "
            f"input is on {x._dev}; return it on {x._dev}")
    if g.shape != x.shape and (exact or not _expandable(x.shape, g.shape)):
        raise CustomGradientError(
            f"gpuad: {where}: the gradient for input {i} ({label}) has shape {g.shape}, but "
            f"the input has shape {x.shape}; return one gradient of each input's shape"
        )
    return g


def _materialized(tangents, args, k):
    """One tangent per argument for a user's JVP rule: zeros ``(k,) + shape`` for floating
    tensors without one, None for other arguments."""
    out = []
    for t, x in zip(tangents, args):
        if t is None and isinstance(x, Tensor) and x.dtype.kind == "f":
            t = Tensor(x._dev.backend.zeros((k,) + x.shape, dtype=x.dtype), x._dev)
        out.append(t)
    return out


def _checked_tangents(where, given, n):
    given = _flat(given)
    if len(given) != n:
        raise CustomGradientError(f"gpuad: {where} returned {len(given)} tangents for {n} "
                                  "outputs; return one per output (None for none)")
    return given


def _flat(value):
    """The gradients a grad_fn returned, flattened (nested lists, tuples and dicts allowed)."""
    return structure.flatten(value)


# ---- @custom_gradient ---------------------------------------------------------------------

def custom_gradient(f):
    """Give ``f`` its own gradient: ``f(*args, **kwargs)`` returns ``(y, grad_fn)``.

    ``grad_fn(*upstream)`` gets one gradient per output of ``y`` (a tensor or a list/tuple of
    them) and returns one gradient per tensor argument of ``f``, in the order of ``f``'s
    parameters (keyword arguments included, however they were passed; nested lists of
    tensors flattened; None for no gradient). When ``f`` reads leaves that require grad
    without taking them as arguments (trainable Variables), ``grad_fn`` must accept
    ``variables=`` and return ``(argument_gradients, variable_gradients)``; other tensors
    computed outside ``f`` and read inside it are constants to its gradient, as in TensorFlow.

    ``f`` runs as usual, recorded by the active tapes and the ``requires_grad`` graph, so
    intermediate results that ``grad_fn`` uses are differentiable to higher order (as in
    TensorFlow); its outputs, though, get their gradient from ``grad_fn`` only.

    >>> import gpuad as ad
    >>> @ad.custom_gradient
    ... def clip_gradient(x):
    ...     return x * 1.0, lambda g: ad.clip(g, -0.5, 0.5)
    >>> x = ad.Variable([1.0, 2.0])
    >>> with ad.GradientTape() as tape:
    ...     y = (clip_gradient(x) * 3.0).sum()
    >>> tape.gradient(y, x)
    tensor([0.5000, 0.5000])
    """
    fname = getattr(f, "__qualname__", repr(f))
    jvp_rule = []

    @functools.wraps(f)
    def call(*args, **kwargs):
        labels, leaves = _arguments(f, args, kwargs)
        reads = {}
        mode.watchers = mode.watchers + (reads,)
        count_active(1)
        try:
            with deferring(jvp_rule):
                result = f(*args, **kwargs)  # recorded as usual, as TensorFlow does: what
        finally:  # grad_fn keeps from it is then differentiable to higher order
            mode.watchers = mode.watchers[:-1]
            count_active(-1)
        if not (isinstance(result, (tuple, list)) and len(result) == 2 and callable(result[1])):
            raise TypeError(f"gpuad: custom_gradient function {fname!r} must return "
                            "(output, grad_fn), with grad_fn a function of the output gradients")
        y, grad_fn = result
        outputs = structure.flatten(y)
        for o in outputs:
            if not isinstance(o, Tensor):
                raise TypeError(f"gpuad: custom_gradient function {fname!r} returned a "
                                f"{type(o).__name__} as output; outputs must be tensors")
        arg_ids = {id(t) for t in leaves if isinstance(t, Tensor)}
        captured = [t for t in reads.values() if id(t) not in arg_ids]
        if captured and not _takes_variables(grad_fn):
            names = ", ".join(_describe(t) for t in captured)
            raise TypeError(
                f"gpuad: custom_gradient function {fname!r} reads tensors that require grad "
                f"but are not its arguments ({names}); their gradients would be lost. Give its "
                "grad_fn a `variables=None` keyword argument and return (argument_gradients, "
                "variable_gradients), or pass those tensors as arguments"
            )
        rule = _gradient_rule(fname, grad_fn, leaves, labels, captured)
        inputs = leaves + captured
        jvp = None
        if jvp_rule:
            def jvp(ts, k, hub):
                if any(t is not None for t in ts[len(leaves):]):
                    raise CustomGradientError(
                        f"gpuad: custom_gradient function {fname!r} reads variables that "
                        "carry forward-mode tangents; its JVP rule covers its arguments only, "
                        "so pass them as arguments")
                given = jvp_rule[0](list(leaves), _materialized(ts, leaves, k))
                return _checked_tangents(f"the JVP rule of {fname!r}", given, len(outputs))
        wrapped, node = _connect(_op_name(f), inputs, outputs, rule, (grad_fn,), jvp=jvp)
        if node is not None:  # grad_fn may read any input: an in-place change later raises
            node.vers += [(t._ver, t._ver[0]) for t in inputs if isinstance(t, Tensor)]
        return structure.unflattener(y)(wrapped)

    def defjvp(rule):
        """Give ``f`` a forward-mode rule: ``rule(primals, tangents)`` gets ``f``'s arguments
        (flattened as for ``grad_fn``) and one tangent per argument, each with a leading axis
        of directions (zeros where there is none), and returns the outputs' tangents, with
        that axis, in the structure of ``f``'s output."""
        jvp_rule[:] = [rule]
        return rule

    call.defjvp = defjvp
    return call


def _gradient_rule(fname, grad_fn, leaves, labels, captured):
    where = f"custom_gradient function {fname!r}"
    tensor_at = [i for i, t in enumerate(leaves) if isinstance(t, Tensor)]

    def rule(node, upstream, saved):
        grad_fn = saved[0]
        if captured:
            result = grad_fn(*upstream, variables=list(captured))
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise TypeError(f"gpuad: {where}: with variables=, grad_fn must return "
                                "(argument_gradients, variable_gradients)")
            given, var_grads = _flat(result[0]), _flat(result[1])
            if len(var_grads) != len(captured):
                names = ", ".join(_describe(t) for t in captured)
                raise CustomGradientError(
                    f"gpuad: {where}: grad_fn returned {len(var_grads)} variable gradients for "
                    f"{len(captured)} variables ({names})")
        else:
            given, var_grads = _flat(grad_fn(*upstream)), []
        if len(given) == len(leaves):
            per_leaf = given
        elif len(given) == len(tensor_at):
            per_leaf = [None] * len(leaves)
            for i, g in zip(tensor_at, given):
                per_leaf[i] = g
        else:
            names = ", ".join(labels[i] for i in tensor_at)
            raise CustomGradientError(
                f"gpuad: {where}: grad_fn returned {len(given)} gradients, but the function "
                f"was called with {len(tensor_at)} tensor inputs ({names}); return one "
                "gradient per tensor input, in the order of the function's parameters"
            )
        out = [_check_grad(where, i, labels[i], g, x)
               for i, (g, x) in enumerate(zip(per_leaf, leaves))]
        out += [_check_grad(where, i, _describe(v), g, v)
                for i, (g, v) in enumerate(zip(var_grads, captured))]
        return out

    return rule


def _arguments(f, args, kwargs):
    """The call's arguments in ``f``'s signature order (keyword ones where their parameters
    are, whatever order they were passed in), flattened: ``(labels, leaves)``, with a name for
    each leaf for error messages (``x``, ``xs[1]``, ``scale``)."""
    try:
        bound = inspect.signature(f).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):  # no signature to bind to: the order of the call
        bound = {f"args[{i}]": a for i, a in enumerate(args)}
        bound.update(kwargs)
    labels, leaves = [], []
    for name, value in bound.items():
        flat = structure.flatten(value)
        leaves += flat
        if len(flat) == 1 and not isinstance(value, (list, tuple, dict)):
            labels.append(name)
        else:
            labels += [f"{name}[{j}]" for j in range(len(flat))]
    return labels, leaves


def _takes_variables(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "variables" or p.kind is p.VAR_KEYWORD for p in params)


def _describe(t):
    name = getattr(t, "name", None)
    what = f"Variable {name!r}" if isinstance(name, str) else "tensor"
    return f"{what} of shape {t.shape}"


def _op_name(f):
    return getattr(f, "__name__", "custom").strip("_<>") or "custom"


# ---- class Function ------------------------------------------------------------------------

class FunctionCtx:
    """The ``ctx`` that ``forward`` fills for ``backward``: tensors saved with
    ``save_for_backward``, any other attributes, and ``needs_input_grad`` (one flag per
    argument of ``apply``)."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._to_save = ()
        self._saved = None
        self._constant = ()
        self._dirty = ()
        self._materialize = True
        self._for_forward = ()

    def mark_non_differentiable(self, *outputs):
        """These outputs (returned by forward) get no gradient and do not require grad."""
        self._constant = outputs

    def mark_dirty(self, *tensors):
        """These inputs were changed in place by forward and are returned as outputs."""
        self._dirty = tensors

    def set_materialize_grads(self, value):
        """With False, backward gets None (not zeros) for outputs that received no gradient."""
        self._materialize = bool(value)

    def save_for_backward(self, *tensors):
        for t in tensors:
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"gpuad: save_for_backward takes tensors (or None), got a "
                                f"{type(t).__name__}; keep other values as ctx attributes")
        self._to_save = tensors

    def save_for_forward(self, *tensors):
        """Keep tensors for ``jvp``, where ``ctx.saved_tensors`` returns them."""
        self._for_forward = tensors

    @property
    def saved_tensors(self):
        if self._saved is None:
            raise RuntimeError("gpuad: ctx.saved_tensors can be read in backward only (and in "
                               "jvp, from save_for_forward); after a backward without "
                               "retain_graph=True they are freed")
        return self._saved


class Function:
    """A PyTorch-style op with its own rules: subclass it with static ``forward(ctx, *args)``
    and ``backward(ctx, *grad_outputs)``, and call ``F.apply(*args)``.

    ``forward`` runs without recording; ``backward`` gets one gradient per output (zeros for
    outputs that received none) and returns one per argument of ``apply`` (None where there is
    none). ``backward`` runs as ordinary gpuad code, so ``create_graph=True`` differentiates it.

    >>> import gpuad as ad
    >>> class Cube(ad.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * x ** 2
    >>> x = ad.tensor(2.0, requires_grad=True)
    >>> Cube.apply(x).backward()
    >>> x.grad
    tensor(12.)
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("gpuad: a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("gpuad: a Function subclass must define backward(ctx, ...)")

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward mode: one tangent per argument of ``apply`` (zeros for floating tensors
        without one, None for other arguments), each with a leading axis of directions;
        returns one tangent per output, with that axis. Optional."""
        raise NotImplementedError

    @staticmethod
    def setup_context(ctx, inputs, output):
        """PyTorch 2's form: define it, and ``forward(*args)`` without ``ctx``."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        for name, value in kwargs.items():
            if needs_grad(value) and mode.enabled:
                raise TypeError(
                    f"gpuad: {cls.__name__}.apply: keyword argument {name!r} is a tensor that "
                    "needs a gradient, but backward returns gradients for positional arguments "
                    "only; pass it positionally"
                )
        on = mode.enabled
        ctx = FunctionCtx(tuple(bool(on and needs_grad(a) and a.dtype.kind == "f")
                                for a in args))
        tangents = [(a, getattr(a, "_tan", None)) for a in args if isinstance(a, Tensor)]
        with no_grad(), deferring(cls.jvp is not Function.jvp):
            if cls.setup_context is Function.setup_context:
                result = cls.forward(ctx, *args, **kwargs)
            else:  # PyTorch 2's form: forward(*args), then setup_context(ctx, inputs, output)
                result = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, result)
        for a, tan in tangents:  # the JVP rule starts from the tangents the inputs came with
            if getattr(a, "_tan", None) is not tan:
                carry(a, tan if tan is not None else {})
        single = not isinstance(result, tuple)
        outputs = [result] if single else list(result)
        out_at = {id(o): i for i, o in enumerate(outputs) if isinstance(o, Tensor)}
        saved = tuple(_OutputRef(out_at[id(s)]) if s is not None and id(s) in out_at else s
                      for s in ctx._to_save)
        ctx._to_save = ()
        keep = any(isinstance(s, _OutputRef) for s in saved)
        constant = {out_at[id(t)] for t in ctx._constant if id(t) in out_at}
        name = cls.__name__
        dirty = _dirty_outputs(name, ctx._dirty, out_at)
        rule = _function_rule(cls, name, args, constant)
        jvp = (None if cls.jvp is Function.jvp
               else _function_jvp(cls, ctx, args, outputs, out_at, constant))
        wrapped, node = _connect(name, list(args), outputs, rule, (ctx,) + saved, keep,
                                 constant, ctx._materialize, dirty, jvp)
        if node is not None:  # in-place changes of saved outputs are caught as of inputs
            node.vers += [(wrapped[s.index]._ver, wrapped[s.index]._ver[0]) for s in saved
                          if isinstance(s, _OutputRef)]
        return wrapped[0] if single else tuple(wrapped)


def _dirty_outputs(name, dirty, out_at):
    """The output indices of the inputs ``forward`` marked dirty, checked."""
    at = set()
    for t in dirty:
        if id(t) not in out_at:
            raise RuntimeError(f"gpuad: {name}.forward marked a tensor dirty but did not return "
                               "it; return every input it changes in place")
        if t._rg and t._grad_fn is None and mode.enabled:
            raise RuntimeError(f"gpuad: {name}: a leaf tensor that requires grad (shape "
                               f"{t.shape}) was changed in place by forward; clone it first")
        if t._autowatch and mode.enabled and mode.tapes:
            raise RuntimeError(f"gpuad: {name}: a trainable Variable (shape {t.shape}) was "
                               "changed in place by forward while a GradientTape records; use "
                               "its assign methods outside the Function, or clone it first")
        if t._base is not None:
            raise NotImplementedError(f"gpuad: {name}: mark_dirty on a view is not supported; "
                                      "pass a tensor that owns its storage (clone the view)")
        at.add(out_at[id(t)])
    return at


def _function_jvp(cls, ctx, args, outputs, out_at, constant):
    """The hub's JVP rule from ``cls.jvp``. Outputs among the tensors saved for it are rebuilt
    from the hub, so they stay differentiable (reverse mode over the JVP)."""
    n = len(outputs)

    def jvp(ts, k, hub):
        name = cls.__name__
        ctx._saved = tuple(
            record(_select(name, out_at[id(t)]), (hub,), t._a, t._dev, ())
            if t is not None and id(t) in out_at and out_at[id(t)] not in constant else t
            for t in ctx._for_forward)
        try:
            given = cls.jvp(ctx, *_materialized(ts, args, k))
        finally:
            ctx._saved = None
        return _checked_tangents(f"{cls.__name__}.jvp", given, n)
    return jvp


def _function_rule(cls, name, args, constant):
    where = f"{name}.backward"

    def rule(node, upstream, saved):
        ctx = saved[0]
        ctx._saved = tuple(_output_again(node, name, s.index, s.index in constant)
                           if isinstance(s, _OutputRef) else s for s in saved[1:])
        try:
            result = cls.backward(ctx, *upstream)
        finally:
            ctx._saved = None
        given = list(result) if isinstance(result, (tuple, list)) else [result]
        while len(given) > len(args) and given[-1] is None:
            given.pop()
        if len(given) != len(args):
            raise CustomGradientError(
                f"gpuad: {where} returned {len(given)} gradients, but apply() got {len(args)} "
                "arguments; return one per argument (None where there is none)")
        return [_check_grad(where, i, f"argument {i}", g, x, exact=False)
                for i, (g, x) in enumerate(zip(given, args))]

    return rule
