"""Comparisons, logic and classification, elementwise: boolean results, no gradient."""
from typing import TYPE_CHECKING

from ..tensor import Tensor
from ._args import operands, plain, to_tensor
from .define import example_section, shape_error
from .registry import exports, public


def _comparison(name, math, example):
    """The public op ``name(a, b)``: ``math`` elementwise, with broadcasting, as a bool tensor;
    ``example``: the lines of its docstring's doctest."""
    def compare(a, b):
        a, b, xa, xb, dev = operands(a, b, name)
        try:
            return plain(getattr(dev._backend, name)(xa, xb), dev)
        except ValueError as exc:
            raise shape_error(name, a, b, exc) from None

    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = (f"{name}(a, b): {math}, elementwise, with NumPy broadcasting, as a "
                       "bool tensor on the operands' device (no gradient)."
                       + example_section(example))
    compare.math = math
    return public(compare)


equal = _comparison("equal", "a == b", (
    ">>> ad.equal(ad.tensor([1.0, 2.0, 3.0]), ad.tensor([1.0, 0.0, 3.0]))",
    "tensor([ True, False,  True])"))
not_equal = _comparison("not_equal", "a != b (true where either is nan)", (
    ">>> ad.not_equal(ad.tensor([1.0, 2.0, np.nan]), ad.tensor([1.0, 0.0, np.nan]))",
    "tensor([False,  True,  True])"))
less = _comparison("less", "a < b", (
    ">>> ad.less(ad.tensor([1.0, 2.0, 3.0]), 2.0)",
    "tensor([ True, False, False])"))
less_equal = _comparison("less_equal", "a <= b", (
    ">>> ad.less_equal(ad.tensor([1.0, 2.0, 3.0]), 2.0)",
    "tensor([ True,  True, False])"))
greater = _comparison("greater", "a > b", (
    ">>> ad.greater(ad.tensor([1.0, 2.0, 3.0]), 2.0)",
    "tensor([False, False,  True])"))
greater_equal = _comparison("greater_equal", "a >= b", (
    ">>> ad.greater_equal(ad.tensor([1.0, 2.0, 3.0]), 2.0)",
    "tensor([False,  True,  True])"))
logical_and = _comparison("logical_and", "a and b (non-zero is true)", (
    ">>> ad.logical_and(ad.tensor([1.0, 1.0, 0.0]), ad.tensor([2.0, 0.0, 0.0]))",
    "tensor([ True, False, False])"))
logical_or = _comparison("logical_or", "a or b (non-zero is true)", (
    ">>> ad.logical_or(ad.tensor([1.0, 1.0, 0.0]), ad.tensor([2.0, 0.0, 0.0]))",
    "tensor([ True,  True, False])"))
logical_xor = _comparison("logical_xor", "a xor b (non-zero is true)", (
    ">>> ad.logical_xor(ad.tensor([1.0, 1.0, 0.0]), ad.tensor([2.0, 0.0, 0.0]))",
    "tensor([False,  True, False])"))


@public
def logical_not(x):
    """logical_not(x): not x (non-zero is true), elementwise, as a bool tensor (no gradient).

    >>> ad.logical_not(ad.tensor([0.0, 2.0, -1.0]))
    tensor([ True, False, False])
    """
    if not isinstance(x, Tensor):
        x = to_tensor(x, "logical_not")
    return plain(x._dev._backend.logical_not(x._a), x._dev)


def _classify(name, math, example):
    """The public op and Tensor method ``name(x)``: whether each element is ``math``;
    ``example``: the lines of its docstring's doctest."""
    def test(x):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        return plain(getattr(x._dev._backend, name)(x._a), x._dev)

    test.__name__ = test.__qualname__ = name
    test.__doc__ = (f"{name}(x): whether each element of x is {math}, as a bool tensor of x's "
                    "shape (no gradient)." + example_section(example))
    test.math = math
    return public(test, method=True)


isnan = _classify("isnan", "nan", (
    ">>> ad.isnan(ad.tensor([1.0, np.nan, np.inf]))",
    "tensor([False,  True, False])"))
isinf = _classify("isinf", "+inf or -inf", (
    ">>> ad.isinf(ad.tensor([1.0, np.nan, np.inf, -np.inf]))",
    "tensor([False, False,  True,  True])"))
isfinite = _classify("isfinite", "finite (neither nan nor inf)", (
    ">>> ad.isfinite(ad.tensor([1.0, np.nan, np.inf, -np.inf]))",
    "tensor([ True, False, False, False])"))

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
