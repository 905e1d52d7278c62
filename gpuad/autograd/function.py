"""``Function`` (PyTorch style): an op with static ``forward`` and ``backward`` (and optionally
``jvp``) of its own (:mod:`.custom`: how the call goes into the graph)."""
from ..errors import CustomGradientError
from ..tensor import Tensor
from .custom import (
    OutputRef,
    check_grad,
    checked_tangents,
    connect,
    materialized,
    output_again,
    select,
)
from .forward import carry, deferring
from .grad_mode import mode, no_grad
from .record import needs_grad, record


class FunctionCtx:
    """The ``ctx`` that ``forward`` fills for ``backward``: tensors saved with
    ``save_for_backward``, any other attributes, and ``needs_input_grad`` (one flag per
    argument of ``apply``).

    >>> class Scale(ad.Function):
    ...     @staticmethod
    ...     def forward(ctx, x, k):
    ...         ctx.k = k  # any attribute, for backward
    ...         return x * k
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         print(ctx.needs_input_grad)
    ...         return g * ctx.k, None  # None: k is a number, it has no gradient
    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> Scale.apply(x, 3.0).sum().backward()
    (True, False)
    >>> x.grad
    tensor([3., 3.])
    """

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
        """Keep tensors (or None) for ``backward``, where ``ctx.saved_tensors`` returns them;
        saving is checked against later in-place changes, which make backward raise."""
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
        """The tensors of ``save_for_backward`` (in ``backward``) or of ``save_for_forward``
        (in ``jvp``), as a tuple; anywhere else, or once freed, a RuntimeError."""
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
        """The op's value from the arguments of ``apply``, run without recording; it saves
        on ``ctx`` what ``backward`` needs. Each subclass defines it."""
        raise NotImplementedError("gpuad: a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        """The vector-Jacobian product: one gradient per output in, one per argument of
        ``apply`` out (None where there is none). Each subclass defines it."""
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
        """Run ``forward`` on ``args`` and return its output(s), connected to the graph so
        that gradients reach the tensor arguments through ``backward`` (and tangents through
        ``jvp`` where defined). Tensors that need a gradient must be passed positionally."""
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
        saved = tuple(OutputRef(out_at[id(s)]) if s is not None and id(s) in out_at else s
                      for s in ctx._to_save)
        ctx._to_save = ()
        keep = any(isinstance(s, OutputRef) for s in saved)
        constant = {out_at[id(t)] for t in ctx._constant if id(t) in out_at}
        name = cls.__name__
        dirty = _dirty_outputs(name, ctx._dirty, out_at)
        rule = _function_rule(cls, name, args, constant)
        jvp = (None if cls.jvp is Function.jvp
               else _function_jvp(cls, ctx, args, outputs, out_at, constant))
        wrapped, node = connect(name, list(args), outputs, rule, (ctx,) + saved, keep,
                                 constant, ctx._materialize, dirty, jvp)
        if node is not None:  # in-place changes of saved outputs are caught as of inputs
            node.vers += [(wrapped[s.index]._ver, wrapped[s.index]._ver[0]) for s in saved
                          if isinstance(s, OutputRef)]
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
            record(select(name, out_at[id(t)]), (hub,), t._a, t._dev, ())
            if t is not None and id(t) in out_at and out_at[id(t)] not in constant else t
            for t in ctx._for_forward)
        try:
            given = cls.jvp(ctx, *materialized(ts, args, k))
        finally:
            ctx._saved = None
        return checked_tangents(f"{cls.__name__}.jvp", given, n)
    return jvp


def _function_rule(cls, name, args, constant):
    where = f"{name}.backward"

    def rule(node, upstream, saved):
        ctx = saved[0]
        ctx._saved = tuple(output_again(node, name, s.index, s.index in constant)
                           if isinstance(s, OutputRef) else s for s in saved[1:])
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
        return [check_grad(where, i, f"argument {i}", g, x, exact=False)
                for i, (g, x) in enumerate(zip(given, args))]

    return rule
