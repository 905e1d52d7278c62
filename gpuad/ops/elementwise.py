"""The elementwise ops, one row each (:class:`~.define.Unary` for one input, :func:`~.define.binary`
for two): the forward, the derivative rule next to it, what the rule reads, the CUDA kernel and
the CPU's raw-array path that run the same rule, and a line of math for the docstring.

Adding an op: CONTRIBUTING.md, "Adding an op".
"""
import math
from typing import TYPE_CHECKING

from ..autograd.forward import DIAGONAL
from ..autograd.node import Op
from ..autograd.record import record
from ..dtypes import float16, float32
from ._args import SCALARS
from .define import binary, unary, zero
from .registry import exports, public
from .selection import clip, where

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# ---- one input ------------------------------------------------------------------------------
# name, rule (g and what it reads -> the input's gradient), reads, then: the kernel of
# kernels/elementwise.cuh running the rule (and the forward, kernel_forward), the raw-array rule
# the CPU runs where nothing records (fast), the NumPy forward's warnings silenced (quiet); last,
# the math of the docstring (doc) and its example, the lines of a doctest (example)
neg = unary("neg", lambda g: -g, None, forward="negative", doc="-x",
            example=(">>> ad.neg(ad.tensor([1.0, -2.0]))",
                     "tensor([-1.,  2.])"))
abs = unary("abs", lambda g, x: g * sign(x), kernel="abs",
            doc="|x|; the derivative at 0 is 0 (PyTorch's)",
            example=(">>> ad.abs(ad.tensor([-1.5, 0.0, 2.0]))",
                     "tensor([1.5000, 0.0000, 2.0000])",
                     ">>> x = ad.tensor([-2.0, 0.0, 3.0], requires_grad=True)",
                     ">>> ad.abs(x).sum().backward()",
                     ">>> x.grad",
                     "tensor([-1.,  0.,  1.])"))
exp = unary("exp", lambda g, y: g * y, "y", kernel="exp", fast=lambda b, g, y: g * y,
            quiet=True, doc="e^x",
            example=(">>> ad.exp(ad.tensor([0.0, 1.0]))",
                     "tensor([1.0000, 2.7183])",
                     ">>> x = ad.tensor([0.0, 1.0], requires_grad=True)",
                     ">>> ad.exp(x).sum().backward()",
                     ">>> x.grad",
                     "tensor([1.0000, 2.7183])"))
expm1 = unary("expm1", lambda g, y: g * (y + 1), "y", kernel="expm1", quiet=True,
              doc="e^x - 1, exact near 0",
              example=(">>> x = ad.tensor([1e-8, 1.0])",
                       ">>> ad.expm1(x)",
                       "tensor([1.0000e-08, 1.7183e+00])",
                       ">>> ad.exp(x) - 1",
                       "tensor([0.0000, 1.7183])"))
log = unary("log", lambda g, x: g / x, kernel="log", quiet=True,
            doc="the natural logarithm ln x, the inverse of e^x; -inf at 0, nan below",
            example=(">>> ad.log(ad.tensor([1.0, 4.0, 0.0, -1.0]))",
                     "tensor([0.0000, 1.3863,   -inf,    nan])"))
log1p = unary("log1p", lambda g, x: g / (x + 1), kernel="log1p", quiet=True,
              doc="log(1 + x), exact near 0",
              example=(">>> x = ad.tensor([1e-8, 1.0])",
                       ">>> ad.log1p(x)",
                       "tensor([1.0000e-08, 6.9315e-01])",
                       ">>> ad.log(1 + x)",
                       "tensor([0.0000, 0.6931])"))
sqrt = unary("sqrt", lambda g, y: g / (y * 2), "y", kernel="sqrt", quiet=True,
             doc="the square root x^(1/2) (nan below 0); the derivative at 0 is inf",
             example=(">>> ad.sqrt(ad.tensor([0.0, 4.0, 9.0]))",
                      "tensor([0., 2., 3.])",
                      ">>> x = ad.tensor([0.0, 4.0], requires_grad=True)",
                      ">>> ad.sqrt(x).sum().backward()",
                      ">>> x.grad",
                      "tensor([   inf, 0.2500])"))
# (left to right: the partial products are monotone, so none overflows before the result)
rsqrt = unary("rsqrt", lambda g, y: g * y * y * y * -0.5, "y", kernel="rsqrt",
              kernel_forward=True, quiet=True, doc="1 / sqrt(x)",
              example=(">>> ad.rsqrt(ad.tensor([1.0, 4.0, 16.0]))",
                       "tensor([1.0000, 0.5000, 0.2500])"))
square = unary("square", lambda g, x: g * x * 2, kernel="square", doc="x^2",
               example=(">>> ad.square(ad.tensor([-3.0, 0.5, 2.0]))",
                        "tensor([9.0000, 0.2500, 4.0000])"))
reciprocal = unary("reciprocal", lambda g, y: -g * y * y, "y", kernel="reciprocal", quiet=True,
                   doc="1 / x",
                   example=(">>> ad.reciprocal(ad.tensor([2.0, -4.0, 0.0]))",
                            "tensor([ 0.5000, -0.2500,     inf])"))
sin = unary("sin", lambda g, x: g * cos(x), kernel="sin", fast=lambda b, g, x: g * b.cos(x),
            doc="the sine, sin x (x in radians)",
            example=(">>> ad.sin(ad.tensor([0.0, np.pi / 2, -np.pi / 6]))",
                     "tensor([ 0.0000,  1.0000, -0.5000])"))
cos = unary("cos", lambda g, x: -g * sin(x), kernel="cos", fast=lambda b, g, x: -g * b.sin(x),
            doc="the cosine, cos x (x in radians)",
            example=(">>> ad.cos(ad.tensor([0.0, np.pi, np.pi / 3]))",
                     "tensor([ 1.0000, -1.0000,  0.5000])"))
# g (1 + y^2), as g y^2 + g: no y^2 alone, which overflows first
tan = unary("tan", lambda g, y: g * y * y + g, "y", kernel="tan",
            doc="the tangent, tan x = sin x / cos x (x in radians)",
            example=(">>> ad.tan(ad.tensor([0.0, np.pi / 4, -np.pi / 4]))",
                     "tensor([ 0.,  1., -1.])"))
tanh = unary("tanh", lambda g, y: g * (1 - y * y), "y", kernel="tanh",
             fast=lambda b, g, y: g * (1 - y * y),
             doc="the hyperbolic tangent, tanh x = (e^x - e^-x) / (e^x + e^-x)",
             example=(">>> ad.tanh(ad.tensor([0.0, 1.0, -1.0]))",
                      "tensor([ 0.0000,  0.7616, -0.7616])"))
sinh = unary("sinh", lambda g, x: g * cosh(x), kernel="sinh", quiet=True,
             doc="the hyperbolic sine, sinh x = (e^x - e^-x) / 2",
             example=(">>> ad.sinh(ad.tensor([0.0, 1.0, -1.0]))",
                      "tensor([ 0.0000,  1.1752, -1.1752])"))
cosh = unary("cosh", lambda g, x: g * sinh(x), kernel="cosh", quiet=True,
             doc="the hyperbolic cosine, cosh x = (e^x + e^-x) / 2",
             example=(">>> ad.cosh(ad.tensor([0.0, 1.0, -1.0]))",
                      "tensor([1.0000, 1.5431, 1.5431])"))
arctan = unary("arctan", lambda g, x: _arctan_grad(g, x), kernel="arctan",
               fast=lambda b, g, x: b.arctan_grad(g, x),
               doc="the inverse tangent: the angle in (-pi/2, pi/2) radians whose tangent is x",
               example=(">>> ad.arctan(ad.tensor([0.0, 1.0, -np.inf]))",
                        "tensor([ 0.0000,  0.7854, -1.5708])"))
erf = unary("erf", lambda g, x: g * exp(-x * x) * _TWO_OVER_SQRT_PI, kernel="erf",
            doc="the error function, 2/sqrt(pi) times the integral of e^(-t^2) from 0 to x",
            example=(">>> ad.erf(ad.tensor([0.0, 1.0, -np.inf]))",
                     "tensor([ 0.0000,  0.8427, -1.0000])"))
sigmoid = unary("sigmoid", lambda g, y: g * y * (1 - y), "y", kernel="sigmoid",
                kernel_forward=True, fast=lambda b, g, y: g * y * (1 - y),
                doc="1 / (1 + e^-x), without overflow for large |x|",
                example=(">>> x = ad.tensor([0.0, 2.0], requires_grad=True)",
                         ">>> ad.sigmoid(x)",
                         "tensor([0.5000, 0.8808], grad_fn=<SigmoidBackward>)",
                         ">>> ad.sigmoid(x).sum().backward()",
                         ">>> x.grad  # sigmoid(x) (1 - sigmoid(x))",
                         "tensor([0.2500, 0.1050])"))
# step(x) = 1 where x > 0 else 0, with a zero gradient: rules built on it stay connected to x,
# so their own derivative is zero (not "does not require grad") under create_graph.
step = unary("step", lambda g: zero(g), None, register=False, doc="1 where x > 0, else 0")
# relu'(0) = 0 and relu'(nan) = 1 (PyTorch: the gradient is cut where y <= 0 only); selected,
# not multiplied by a 0/1 mask, so an inf or nan g where y <= 0 gives 0, not 0 * inf = nan
relu = unary("relu", lambda g, y: where(y <= 0, step(y), g), "y", kernel="relu",
             fast=lambda b, g, y: b.relu_grad(g, y),
             doc="max(x, 0); the derivative at 0 is 0 (PyTorch's)",
             example=(">>> x = ad.tensor([-1.0, 0.0, 2.0], requires_grad=True)",
                      ">>> ad.relu(x)",
                      "tensor([0., 0., 2.], grad_fn=<ReluBackward>)",
                      ">>> ad.relu(x).sum().backward()",
                      ">>> x.grad",
                      "tensor([0., 0., 1.])"))
softsign = unary("softsign", lambda g, x: g / square(abs(x) + 1), kernel="softsign",
                 method=False, quiet=True, doc="x / (1 + |x|)",  # (no Tensor.softsign in PyTorch)
                 example=(">>> ad.softsign(ad.tensor([-3.0, 0.0, 1.0]))",
                          "tensor([-0.7500,  0.0000,  0.5000])"))
silu = unary("silu", lambda g, x: g * _silu_grad(x), kernel="silu", kernel_forward=True,
             doc="x sigmoid(x) = x / (1 + e^-x) (swish)",
             example=(">>> ad.silu(ad.tensor([0.0, 1.0, -1.0]))",
                      "tensor([ 0.0000,  0.7311, -0.2689])"))
_leaky_relu = unary("leaky_relu", lambda g, x, slope: g * (step(x) * (1 - slope) + slope),
                    params=("negative_slope",), kernel="leaky_relu", kernel_forward=True,
                    register=False, doc="x if x > 0 else negative_slope x")
# elu'(0) = alpha and elu''(0) = 0, as PyTorch: the exp is taken of x only where x < 0
_elu = unary("elu", lambda g, x, alpha: where(x <= 0, g * alpha * exp(where(x < 0, x, 0)), g),
             params=("alpha",), kernel="elu", kernel_forward=True, register=False,
             doc="x if x > 0 else alpha (e^x - 1)")
_gelu = {form: unary("gelu", lambda g, x, form=form: g * _gelu_grad(x, form), args=(form,),
                     kernel=f"gelu_{kernel}", kernel_forward=True, register=False,
                     doc=f"x Phi(x) ({form} form)")
         for form, kernel in (("none", "erf"), ("tanh", "tanh"))}
_softplus = unary("softplus",
                  lambda g, x, beta, threshold: where(x * beta > threshold, g,
                                                      g * sigmoid(x * beta)),
                  params=("beta", "threshold"), kernel="softplus", kernel_forward=True,
                  register=False, doc="log(1 + e^(beta x)) / beta")
# Piecewise-constant ops: their gradient is zero everywhere (PyTorch's convention).
sign = unary("sign", zero, None, doc="-1, 0 or 1 by the sign of x (nan stays nan); zero gradient",
             example=(">>> ad.sign(ad.tensor([-2.0, 0.0, 3.0, np.nan]))",
                      "tensor([-1.,  0.,  1., nan])"))
floor = unary("floor", zero, None, doc="the largest integer <= x; zero gradient",
              example=(">>> ad.floor(ad.tensor([-1.5, 0.5, 2.0]))",
                       "tensor([-2.,  0.,  2.])"))
ceil = unary("ceil", zero, None, doc="the smallest integer >= x; zero gradient",
             example=(">>> ad.ceil(ad.tensor([-1.5, 0.5, 2.0]))",
                      "tensor([-1.,  1.,  2.])"))
round = unary("round", zero, None, forward="rint",
              doc="x rounded to the nearest integer, halves to even (as NumPy and PyTorch); "
                  "zero gradient",
              example=(">>> ad.round(ad.tensor([0.5, 1.5, 2.5, -1.7]))",
                       "tensor([ 0.,  2.,  2., -2.])"))


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


@public(method=True)
def leaky_relu(x, negative_slope=0.01):
    """max(x, 0) + negative_slope min(x, 0), elementwise; the gradient at 0 is negative_slope.

    >>> x = ad.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    >>> ad.leaky_relu(x, 0.1)
    tensor([-0.2000,  0.0000,  3.0000], grad_fn=<LeakyReluBackward>)
    >>> ad.leaky_relu(x, 0.1).sum().backward()
    >>> x.grad
    tensor([0.1000, 0.1000, 1.0000])
    """
    return _leaky_relu(x, negative_slope)


@public(method=True)
def elu(x, alpha=1.0):
    """x if x > 0 else alpha (exp(x) - 1), elementwise; the derivative at 0 is alpha.

    >>> ad.elu(ad.tensor([-1.0, 0.0, 2.0]))
    tensor([-0.6321,  0.0000,  2.0000])
    >>> ad.elu(ad.tensor([-1.0, 0.0, 2.0]), alpha=2.0)
    tensor([-1.2642,  0.0000,  2.0000])
    """
    return _elu(x, alpha)


@public(method=True)
def gelu(x, approximate="none"):
    """x Phi(x), Phi the standard normal CDF, elementwise (``approximate="tanh"``: PyTorch's
    tanh form, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))).

    >>> ad.gelu(ad.tensor([-1.0, 0.0, 1.0]))
    tensor([-0.1587,  0.0000,  0.8413])
    >>> ad.gelu(ad.tensor([-1.0, 0.0, 1.0]), approximate="tanh")
    tensor([-0.1588,  0.0000,  0.8412])
    """
    if approximate not in _gelu:
        raise ValueError(f"gpuad.gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu[approximate](x)


@public(method=True)
def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta x)) / beta, elementwise, and x itself where beta x > threshold (as
    PyTorch).

    >>> ad.softplus(ad.tensor([0.0, 1.0, 30.0]))
    tensor([ 0.6931,  1.3133, 30.0000])
    >>> ad.softplus(ad.tensor([0.0, 1.0]), beta=2.0)
    tensor([0.3466, 1.0635])
    """
    return _softplus(x, beta, threshold)


# ---- two inputs ---------------------------------------------------------------------------
def _larger(g, a, b):
    """0 where a < b, g/2 where a == b (ties split evenly), else g: also where either is nan,
    so a nan operand gets the gradient (as PyTorch)."""
    return where(a < b, 0, where(a == b, g * 0.5, g))


# The pow rules multiply g by the whole derivative, g (b a^(b-1)) and g (a^b log a), as PyTorch:
# (g b) a^(b-1) underflows g b to 0 (or overflows it) next to a huge (tiny) power, 0 * inf = nan.
def _pow_base(g, a, b):
    """d(a^b)/da = b a^(b-1), defined as 0 where b == 0."""
    if b.__class__ in SCALARS:
        return zero(g) if b == 0 else g * (b * a ** (b - 1))
    return where(b == 0, 0, g * (b * a ** (b - 1)))


def _pow_exponent(g, a, b):
    """d(a^b)/db = a^b log(a), defined as 0 where a == 0 and b >= 0."""
    if a.__class__ in SCALARS:
        if a == 0:
            return where(b >= 0, 0, g * (a ** b * -math.inf))
        return g * (a ** b * (math.log(a) if a > 0 else math.nan))
    return where((a == 0) & (b >= 0), 0, g * (a ** b * log(a)))


_NOTHING = ((False, False), (False, False))
add = binary("add", "add", lambda g: g, lambda g: g, reads=_NOTHING, doc="a + b",
             example=(">>> ad.add(ad.tensor([1.0, 2.0]), ad.tensor([10.0, 20.0]))",
                      "tensor([11., 22.])",
                      ">>> ad.add(ad.tensor([[1.0], [2.0]]), ad.tensor([10.0, 20.0]))",
                      "tensor([[11., 21.],",
                      "        [12., 22.]])"))
sub = binary("sub", "subtract", lambda g: g, lambda g: -g, reads=_NOTHING, doc="a - b",
             example=(">>> ad.sub(ad.tensor([5.0, 7.0]), 2.0)",
                      "tensor([3., 5.])",
                      ">>> ad.sub(1.0, ad.tensor([5.0, 7.0]))",
                      "tensor([-4., -6.])"))
mul = binary("mul", "multiply", lambda g, a, b: g * b, lambda g, a, b: g * a,
             reads=((False, True), (True, False)), doc="a b",
             example=(">>> a = ad.tensor([1.0, 2.0], requires_grad=True)",
                      ">>> b = ad.tensor([3.0, 4.0])",
                      ">>> ad.mul(a, b)",
                      "tensor([3., 8.], grad_fn=<MulBackward>)",
                      ">>> ad.mul(a, b).sum().backward()",
                      ">>> a.grad  # d(a b)/da = b",
                      "tensor([3., 4.])"))
# d(a/b)/db = -g ((a/b) / b), as PyTorch: no b*b, which overflows or underflows where the result
# does not; no g/b, which overflows next to a tiny b where a = 0 (then inf * 0 = nan; here -0);
# no g (a/b), which overflows with a loss-scaled g in float16 where the result does not
div = binary("div", "true_divide", lambda g, a, b: g / b, lambda g, a, b: -g * ((a / b) / b),
             reads=((False, True), (True, True)), doc="a / b (true division)",
             example=(">>> ad.div(ad.tensor([1.0, 3.0, 1.0]), ad.tensor([2.0, 4.0, 0.0]))",
                      "tensor([0.5000, 0.7500,    inf])"))
pow = binary("pow", "power", _pow_base, _pow_exponent,
             doc="a^b; d/da is 0 where b == 0, d/db is 0 where a == 0 and b >= 0",
             example=(">>> ad.pow(ad.tensor([2.0, 3.0, -2.0]), 2)",
                      "tensor([4., 9., 4.])",
                      ">>> ad.pow(2.0, ad.tensor([0.0, 3.0, -1.0]))",
                      "tensor([1.0000, 8.0000, 0.5000])"))
maximum = binary("maximum", "maximum", lambda g, a, b: _larger(g, a, b),
                 lambda g, a, b: _larger(g, b, a),
                 doc="the larger of a and b (nan if either is); ties split the gradient evenly",
                 example=(">>> ad.maximum(ad.tensor([1.0, 5.0, 2.0]), ad.tensor([3.0, 2.0, 2.0]))",
                          "tensor([3., 5., 2.])",
                          ">>> a = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)",
                          ">>> ad.maximum(a, 2.0).sum().backward()",
                          ">>> a.grad  # the tie at 2.0 gives a half",
                          "tensor([0.0000, 0.5000, 1.0000])"))
minimum = binary("minimum", "minimum", lambda g, a, b: _larger(g, b, a),
                 lambda g, a, b: _larger(g, a, b),
                 doc="the smaller of a and b (nan if either is); ties split the gradient evenly",
                 example=(">>> ad.minimum(ad.tensor([1.0, 5.0, np.nan]), 2.0)",
                          "tensor([ 1.,  2., nan])"))



if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
