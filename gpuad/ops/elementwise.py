"""Elementwise ops. Each is defined by its backend forward and its derivative rule, side by side.

Unary rules take the output gradient ``g`` and either the input ``x`` or the output ``y``
(``save="y"``), whichever the derivative is cheaper from. For an elementwise op the Jacobian is
diagonal, so the same rules serve as its JVP (``jvp=DIAGONAL``: the tangent ``t`` in place of
``g``, summed over the inputs; tangents carry a leading batch axis, which the rules broadcast
over). Rules are written with gpuad ops, so they are differentiable again.
"""
import math

from ..autograd.forward import DIAGONAL
from ..autograd.grad_mode import active, mode
from ..autograd.node import Op
from ..dtypes import float16, float32
from ..tensor import Tensor, needs_grad, record, record1
from ._args import SCALARS, constant, mismatch, operands, plain, to_tensor


def _unary(name, method, rule, save="x", params=False):
    """Define ``name(x, *params)``: forward ``backend.<method>(x, *params)``, VJP/JVP ``rule``.

    ``save`` picks what the rule receives after ``g``: "x" (the input), "y" (the output) or
    None (nothing); the op's parameters follow.
    """
    op = Op(name, (_fusable(name, rule) if save else rule,), jvp=DIAGONAL,
            save_out=save == "y")

    if params:
        def forward(x, *args):
            if not isinstance(x, Tensor):
                x = to_tensor(x, name)
            out = getattr(x._dev._backend, method)(x._a, *args)
            return record1(op, x, out, ((x,) if save == "x" else ()) + args)
    elif save == "x":
        def forward(x):
            if not isinstance(x, Tensor):
                x = to_tensor(x, name)
            return record1(op, x, getattr(x._dev._backend, method)(x._a), (x,))
    else:
        def forward(x):
            if not isinstance(x, Tensor):
                x = to_tensor(x, name)
            return record1(op, x, getattr(x._dev._backend, method)(x._a), ())
    forward.__name__ = forward.__qualname__ = name
    forward.op = op
    return forward


def _fusable(name, rule):
    """``rule(g, s, *params)`` run in one kernel where the backend has one (CUDA), as a node
    of its own whose derivatives are ordinary differentiable code (so ``create_graph`` works
    on the fast path); elsewhere the rule itself, as composed ops. A backend whose fused rules
    only save Python per op (the CPU: ``fused_grad_nodes`` False) runs them only where nothing
    records, since the composed rule differentiates again faster than a fused node."""
    grad_op = None

    def vjp(g, s, *params):
        nonlocal grad_op
        backend = g._dev._backend
        fused = backend.fused_unary_grad
        if fused is not None and s.__class__ is Tensor and (
                backend.fused_grad_nodes or not (mode.enabled or (active[0] and (
                    mode.levels or mode.tapes or mode.watchers)))):  # (not the anomaly mode)
            out = fused(name, g._a, s._a, params)
            if out is not None:
                if grad_op is None:
                    grad_op = Op(f"{name}_grad", (
                        lambda gg, g, s, *p: vjp(gg, s, *p),  # the rule is linear in g
                        lambda gg, g, s, *p: _rule_along_s(rule, g, s, p, gg),
                    ), jvp=DIAGONAL)
                return record(grad_op, (g, s), out, g._dev, (g, s) + params)
        return rule(g, s, *params)

    return vjp


def _rule_along_s(rule, g, s, params, direction):
    """d rule(g, s) / ds times ``direction``, elementwise (the rule is diagonal in s): the
    derivative of the fused derivative node, by forward mode over the composed rule."""
    from ..autograd.functional import jvp
    from .shape import broadcast_to

    shape = direction.shape
    g = g if g.shape == shape else broadcast_to(g, shape)
    s = s if s.shape == shape else broadcast_to(s, shape)
    return jvp(lambda v: rule(g, v, *params), s, direction)[1]


def _zero(g, *saved):
    return plain(g._dev._backend.zeros_like(g._a), g._dev)


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# ---- one input --------------------------------------------------------------------------
neg = _unary("neg", "negative", lambda g: -g, save=None)
abs = _unary("abs", "abs", lambda g, x: g * sign(x))  # abs'(0) = 0, as in PyTorch
exp = _unary("exp", "exp", lambda g, y: g * y, save="y")
expm1 = _unary("expm1", "expm1", lambda g, y: g * (y + 1), save="y")
log = _unary("log", "log", lambda g, x: g / x)
log1p = _unary("log1p", "log1p", lambda g, x: g / (x + 1))
sqrt = _unary("sqrt", "sqrt", lambda g, y: g / (y * 2), save="y")  # sqrt'(0) = inf
# (left to right: the partial products are monotone, so none overflows before the result)
rsqrt = _unary("rsqrt", "rsqrt", lambda g, y: g * y * y * y * -0.5, save="y")
square = _unary("square", "square", lambda g, x: g * x * 2)
reciprocal = _unary("reciprocal", "reciprocal", lambda g, y: -g * y * y, save="y")
sin = _unary("sin", "sin", lambda g, x: g * cos(x))
cos = _unary("cos", "cos", lambda g, x: -g * sin(x))
tan = _unary("tan", "tan", lambda g, y: g * y * y + g, save="y")  # g (1 + y^2), no y^2 alone
tanh = _unary("tanh", "tanh", lambda g, y: g * (1 - y * y), save="y")
sinh = _unary("sinh", "sinh", lambda g, x: g * cosh(x))
cosh = _unary("cosh", "cosh", lambda g, x: g * sinh(x))
arctan = _unary("arctan", "arctan", lambda g, x: _arctan_grad(g, x))
erf = _unary("erf", "erf", lambda g, x: g * exp(-x * x) * _TWO_OVER_SQRT_PI)
sigmoid = _unary("sigmoid", "sigmoid", lambda g, y: g * y * (1 - y), save="y")
# step(x) = 1 where x > 0 else 0, with a zero gradient: rules built on it stay connected to x,
# so their own derivative is zero (not "does not require grad") under create_graph.
step = _unary("step", "step", lambda g: _zero(g), save=None)
# relu'(0) = 0 and relu'(nan) = 1 (PyTorch: the gradient is cut where y <= 0 only); selected,
# not multiplied by a 0/1 mask, so an inf or nan g where y <= 0 gives 0, not 0 * inf = nan
relu = _unary("relu", "relu", lambda g, y: where(y <= 0, step(y), g), save="y")
silu = _unary("silu", "silu", lambda g, x: g * _silu_grad(x))
_leaky_relu = _unary(
    "leaky_relu", "leaky_relu", lambda g, x, slope: g * (step(x) * (1 - slope) + slope),
    params=True,
)
# elu'(0) = alpha and elu''(0) = 0, as PyTorch: the exp is taken of x only where x < 0
_elu = _unary(
    "elu", "elu", lambda g, x, alpha: where(x <= 0, g * alpha * exp(where(x < 0, x, 0)), g),
    params=True,
)
_gelu = _unary("gelu", "gelu", lambda g, x, approx: g * _gelu_grad(x, approx), params=True)
_softplus = _unary(
    "softplus", "softplus",
    lambda g, x, beta, threshold: where(x * beta > threshold, g, g * sigmoid(x * beta)),
    params=True,
)
# Piecewise-constant ops: their gradient is zero everywhere (PyTorch's convention).
sign = _unary("sign", "sign", _zero, save=None)
floor = _unary("floor", "floor", _zero, save=None)
ceil = _unary("ceil", "ceil", _zero, save=None)
round = _unary("round", "rint", _zero, save=None)  # half to even, like NumPy and PyTorch


def _arctan_grad(g, x):
    """g arctan'(x) = g / (1 + x^2), the backend's (:meth:`Backend.arctan_grad`), as a node
    of its own (:data:`_ARCTAN_GRAD`)."""
    return record(_ARCTAN_GRAD, (g, x), x._dev._backend.arctan_grad(g._a, x._a), g._dev,
                  (g, x))


def _x_over_1_plus_x2(x):
    """x / (1 + x^2), as 1 / (x + 1 / x) past |x| = 1 (x^2 would overflow first); each branch
    sees only its own x values (the other gets 1), so neither makes an inf or nan that a
    derivative would multiply by zero."""
    big = abs(x) > 1
    xb, xs = where(big, x, 1), where(big, 1, x)
    return where(big, 1 / (xb + 1 / xb), xs / (xs * xs + 1))


# d/dx y = -2 y (x / (1 + x^2)) for y = g / (1 + x^2), the node's output: factors of size
# 1/x^2 and 1/x, so nothing underflows before the result does (differentiating the quotient
# itself went through g / (1 + x^2)^2, of size 1/x^4: float32 arctan''(2e11) was 0, not
# -2.3e-34); linear in g
_ARCTAN_GRAD = Op("arctan_grad", (
    lambda gg, y, g, x: _arctan_grad(gg, x),
    lambda gg, y, g, x: gg * (y * _x_over_1_plus_x2(x) * -2),
), jvp=DIAGONAL, save_out=True)


def _silu_grad(x):
    """d/dx x sigmoid(x) = s (1 + x (1 - s))."""
    s = sigmoid(x)
    return s * (x * (1 - s) + 1)


def _gelu_grad(x, approximate):
    """d gelu/dx: Phi(x) + x phi(x) (erf form) or the derivative of the tanh form."""
    if x.dtype == float16:  # x^3 overflows float16; compute in float32
        return _gelu_grad(x.astype(float32), approximate).astype(float16)
    if approximate == "tanh":
        # past |x| = 100 tanh has saturated (t = +-1 exactly): x taken there gives the same
        # value, without the inf * 0 = nan of an overflowed x^3
        x = clip(x, -100.0, 100.0)
        t = tanh((x + x * x * x * 0.044715) * _SQRT_2_OVER_PI)
        du = (x * x * (3 * 0.044715) + 1) * _SQRT_2_OVER_PI
        return (t + 1) * 0.5 + x * (1 - t * t) * du * 0.5
    return (erf(x * _INV_SQRT_2) + 1) * 0.5 + x * exp(x * x * -0.5) * _INV_SQRT_2PI


def leaky_relu(x, negative_slope=0.01):
    """max(x, 0) + negative_slope min(x, 0); the gradient at 0 is negative_slope."""
    return _leaky_relu(x, negative_slope)


def elu(x, alpha=1.0):
    """x if x > 0 else alpha (exp(x) - 1)."""
    return _elu(x, alpha)


def gelu(x, approximate="none"):
    """x Phi(x), Phi the standard normal CDF (``approximate="tanh"``: PyTorch's tanh form)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gpuad.gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu(x, approximate)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as PyTorch)."""
    return _softplus(x, beta, threshold)


# ---- two inputs -------------------------------------------------------------------------

def _binary(name, method, rule_a, rule_b, reads=((True, True), (True, True))):
    """Define ``name(a, b)`` with broadcasting; rules get ``(g, a, b)`` (``(g,)`` if neither
    reads an operand). ``reads[i]`` says which operands rule ``i`` reads: only those needed by
    the rules of inputs that require grad are saved (the others are None)."""
    op = Op(name, (rule_a, rule_b), jvp=DIAGONAL)
    saves = any(map(any, reads))

    def forward(a, b):
        a, b, xa, xb, dev = operands(a, b, name)
        try:
            out = getattr(dev._backend, method)(xa, xb)
        except ValueError as exc:
            raise _shape_error(name, a, b, exc) from None
        saved = ()
        if saves:
            # A view made stale by a change of its base gets its current graph first.
            if xa is not a and a._base is not None and a._view_ver != a._ver[0]:
                _refresh_view(a)  # (it rebuilds only while something records)
            if xb is not b and b._base is not None and b._view_ver != b._ver[0]:
                _refresh_view(b)
            # An operand is a tensor exactly when its raw value is not itself (operands keeps
            # Python scalars raw); the tape check costs only while a tape is active.
            need_a = xa is not a and (a._rg or (active[0] > 0 and needs_grad(a, False)))
            need_b = xb is not b and (b._rg or (active[0] > 0 and needs_grad(b, False)))
            saved = (a if (need_a and reads[0][0]) or (need_b and reads[1][0]) else None,
                     b if (need_a and reads[0][1]) or (need_b and reads[1][1]) else None)
            if active[0] and mode.levels:  # the JVP rules read both (the node keeps its own)
                return record(op, (a, b), out, dev, saved, (a, b))
        return record(op, (a, b), out, dev, saved)

    forward.__name__ = forward.__qualname__ = name
    forward.op = op
    return forward


def _refresh_view(t):
    from .indexing import refresh_view

    refresh_view(t)


def _shape_error(name, a, b, exc):
    shapes = [getattr(v, "shape", ()) for v in (a, b)]
    if "broadcast" not in str(exc):
        dtypes = [getattr(v, "dtype", type(v).__name__) for v in (a, b)]
        return ValueError(f"gpuad: {name} of {dtypes[0]} {shapes[0]} and {dtypes[1]} "
                          f"{shapes[1]} failed: {exc}")
    return ValueError(
        f"gpuad: {name} cannot broadcast shapes {shapes[0]} and {shapes[1]} ({exc}); make "
        "the shapes broadcast-compatible, e.g. with reshape or expand_dims"
    )


def _larger(g, a, b):
    """0 where a < b, g/2 where a == b (ties split evenly), else g: also where either is nan,
    so a nan operand gets the gradient (as PyTorch)."""
    return where(a < b, 0, where(a == b, g * 0.5, g))


# The pow rules multiply g by the whole derivative, g (b a^(b-1)) and g (a^b log a), as PyTorch:
# (g b) a^(b-1) underflows g b to 0 (or overflows it) next to a huge (tiny) power, 0 * inf = nan.
def _pow_base(g, a, b):
    """d(a^b)/da = b a^(b-1), defined as 0 where b == 0."""
    if b.__class__ in SCALARS:
        return _zero(g) if b == 0 else g * (b * a ** (b - 1))
    return where(b == 0, 0, g * (b * a ** (b - 1)))


def _pow_exponent(g, a, b):
    """d(a^b)/db = a^b log(a), defined as 0 where a == 0 and b >= 0."""
    if a.__class__ in SCALARS:
        if a == 0:
            return where(b >= 0, 0, g * (a ** b * -math.inf))
        return g * (a ** b * (math.log(a) if a > 0 else math.nan))
    return where((a == 0) & (b >= 0), 0, g * (a ** b * log(a)))


_NOTHING = ((False, False), (False, False))
add = _binary("add", "add", lambda g: g, lambda g: g, reads=_NOTHING)
sub = _binary("sub", "subtract", lambda g: g, lambda g: -g, reads=_NOTHING)
mul = _binary("mul", "multiply", lambda g, a, b: g * b, lambda g, a, b: g * a,
              reads=((False, True), (True, False)))
# d(a/b)/db = -g ((a/b) / b), as PyTorch: no b*b, which overflows or underflows where the result
# does not; no g/b, which overflows next to a tiny b where a = 0 (then inf * 0 = nan; here -0);
# no g (a/b), which overflows with a loss-scaled g in float16 where the result does not
div = _binary("div", "true_divide", lambda g, a, b: g / b, lambda g, a, b: -g * ((a / b) / b),
              reads=((False, True), (True, True)))
pow = _binary("pow", "power", _pow_base, _pow_exponent)
maximum = _binary("maximum", "maximum", lambda g, a, b: _larger(g, a, b),
                  lambda g, a, b: _larger(g, b, a))
minimum = _binary("minimum", "minimum", lambda g, a, b: _larger(g, b, a),
                  lambda g, a, b: _larger(g, a, b))


# ---- selection ----------------------------------------------------------------------------
_WHERE = Op("where", (None, lambda g, c: where(c, g, 0), lambda g, c: where(c, 0, g)),
            jvp=DIAGONAL)


def where(condition, x=None, y=None):
    """``x`` where ``condition`` is true, else ``y`` (broadcast together). With only the
    condition, the indices of its non-zero elements, one int64 tensor per axis (NumPy)."""
    if x is None and y is None:
        c = condition if isinstance(condition, Tensor) else to_tensor(condition)
        return tuple(plain(i, c._dev) for i in c._dev._backend.nonzero(c._a))
    if x is None or y is None:
        raise TypeError("gpuad.where takes the condition alone, or the condition, x and y")
    items = (condition, x, y)
    dev = next((v._dev for v in items if isinstance(v, Tensor)), None)
    if dev is None:
        condition = to_tensor(condition)
        dev = condition._dev
    raw = []
    conv = []
    for v in (condition, x, y):
        if isinstance(v, Tensor):
            if v._dev is not dev:
                raise mismatch("where", dev, v._dev)
            raw.append(v._a)
            conv.append(v)
        elif v.__class__ in SCALARS:
            raw.append(v)
            conv.append(v)
        else:
            t = constant(v, dev)
            raw.append(t._a)
            conv.append(t)
    condition = conv[0]
    if not isinstance(condition, Tensor):
        condition = constant(condition, dev)
    if condition.dtype.kind != "b":
        condition = condition != 0
        raw[0] = condition._a
    try:
        out = dev._backend.where(*raw)
    except ValueError as exc:
        shapes = [getattr(v, "shape", ()) for v in conv]
        raise ValueError(
            f"gpuad: where cannot broadcast condition, x and y of shapes {shapes} ({exc})"
        ) from None
    return record(_WHERE, (condition, conv[1], conv[2]), out, dev, (condition,))


def _clip_x(g, x, lo, hi):
    keep = None
    if lo is not None:
        keep = x >= lo
    if hi is not None:
        keep = (x <= hi) if keep is None else keep & (x <= hi)
    return g if keep is None else where(keep, g, 0)


def _clip_lo(g, x, lo, hi):
    """min is active where x < min, unless min > max (then max wins everywhere)."""
    active = x < lo
    if hi is not None:
        active = active & (lo <= hi)
    return where(active, g, 0)


def _clip_hi(g, x, lo, hi):
    """max is active where x > max, and everywhere max < min."""
    active = x > hi
    if lo is not None:
        active = active | (lo > hi)
    return where(active, g, 0)


_CLIP = Op("clip", (_clip_x, _clip_lo, _clip_hi), jvp=DIAGONAL)


def clip(x, min=None, max=None, *, a_min=None, a_max=None):
    """``x`` limited to [min, max]; either bound (not both) may be None, a scalar or a tensor
    (NumPy's ``a_min``/``a_max`` keywords also work).

    The gradient reaches ``x`` where min <= x <= max and each bound where it is active.
    """
    min = a_min if min is None else min
    max = a_max if max is None else max
    if min is None and max is None:
        raise TypeError("gpuad.clip (clamp): at least one of min and max must not be None; "
                        "pass a bound, e.g. clip(x, min=0) (or x.clamp(min=0))")
    if not isinstance(x, Tensor):
        x = to_tensor(x, "clip")
    dev = x._dev
    bounds = []
    for b in (min, max):
        if b is None or b.__class__ in SCALARS:
            bounds.append(b)
        elif isinstance(b, Tensor):
            if b._dev is not dev:
                raise mismatch("clip", dev, b._dev)
            bounds.append(b)
        else:
            bounds.append(constant(b, dev))
    lo, hi = bounds
    raw = [b._a if isinstance(b, Tensor) else b for b in bounds]
    out = dev._backend.clip(x._a, raw[0], raw[1])
    return record(_CLIP, (x, lo, hi), out, dev, (x, lo, hi))


# ---- comparisons and logic (no gradient) ----------------------------------------------------

def _comparison(name, method):
    def compare(a, b):
        a, b, xa, xb, dev = operands(a, b, name)
        try:
            return plain(getattr(dev._backend, method)(xa, xb), dev)
        except ValueError as exc:
            raise _shape_error(name, a, b, exc) from None

    compare.__name__ = compare.__qualname__ = name
    return compare


equal = _comparison("equal", "equal")
not_equal = _comparison("not_equal", "not_equal")
less = _comparison("less", "less")
less_equal = _comparison("less_equal", "less_equal")
greater = _comparison("greater", "greater")
greater_equal = _comparison("greater_equal", "greater_equal")
logical_and = _comparison("logical_and", "logical_and")
logical_or = _comparison("logical_or", "logical_or")
logical_xor = _comparison("logical_xor", "logical_xor")


def logical_not(x):
    if not isinstance(x, Tensor):
        x = to_tensor(x, "logical_not")
    return plain(x._dev._backend.logical_not(x._a), x._dev)


def _classify(name):
    """An elementwise test (isnan, isinf, isfinite) of a tensor or array-like; no gradient."""
    def test(x):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        return plain(getattr(x._dev._backend, name)(x._a), x._dev)

    test.__name__ = test.__qualname__ = name
    return test


isnan = _classify("isnan")
isinf = _classify("isinf")
isfinite = _classify("isfinite")
