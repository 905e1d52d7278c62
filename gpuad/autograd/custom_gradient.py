"""``@custom_gradient`` (TensorFlow style): a function that returns its output and the function
of its gradient (:mod:`.custom`: how the call goes into the graph)."""
import functools
import inspect

from ..errors import CustomGradientError
from ..tensor import Tensor
from . import structure
from .custom import check_grad, checked_tangents, connect, flat, materialized
from .forward import deferring
from .grad_mode import count_active, mode


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
                given = jvp_rule[0](list(leaves), materialized(ts, leaves, k))
                return checked_tangents(f"the JVP rule of {fname!r}", given, len(outputs))
        wrapped, node = connect(_op_name(f), inputs, outputs, rule, (grad_fn,), jvp=jvp)
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
            given, var_grads = flat(result[0]), flat(result[1])
            if len(var_grads) != len(captured):
                names = ", ".join(_describe(t) for t in captured)
                raise CustomGradientError(
                    f"gpuad: {where}: grad_fn returned {len(var_grads)} variable gradients for "
                    f"{len(captured)} variables ({names})")
        else:
            given, var_grads = flat(grad_fn(*upstream)), []
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
        out = [check_grad(where, i, labels[i], g, x)
               for i, (g, x) in enumerate(zip(per_leaf, leaves))]
        out += [check_grad(where, i, _describe(v), g, v)
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
