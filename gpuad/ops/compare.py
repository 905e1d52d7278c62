"""Comparisons, logic and classification, elementwise: boolean results, no gradient."""
from typing import TYPE_CHECKING

from ..tensor import Tensor
from ._args import operands, plain, to_tensor
from .define import shape_error
from .registry import exports, public


def _comparison(name, math):
    """The public op ``name(a, b)``: ``math`` elementwise, with broadcasting, as a bool tensor."""
    def compare(a, b):
        a, b, xa, xb, dev = operands(a, b, name)
        try:
            return plain(getattr(dev._backend, name)(xa, xb), dev)
        except ValueError as exc:
            raise shape_error(name, a, b, exc) from None

    compare.__name__ = compare.__qualname__ = name
    compare.__doc__ = (f"{name}(a, b): {math}, elementwise, with NumPy broadcasting, as a "
                       "bool tensor on the operands' device (no gradient).")
    compare.math = math
    return public(compare)


equal = _comparison("equal", "a == b")
not_equal = _comparison("not_equal", "a != b")
less = _comparison("less", "a < b")
less_equal = _comparison("less_equal", "a <= b")
greater = _comparison("greater", "a > b")
greater_equal = _comparison("greater_equal", "a >= b")
logical_and = _comparison("logical_and", "a and b (non-zero is true)")
logical_or = _comparison("logical_or", "a or b (non-zero is true)")
logical_xor = _comparison("logical_xor", "a xor b (non-zero is true)")


@public
def logical_not(x):
    """logical_not(x): not x (non-zero is true), elementwise, as a bool tensor (no gradient)."""
    if not isinstance(x, Tensor):
        x = to_tensor(x, "logical_not")
    return plain(x._dev._backend.logical_not(x._a), x._dev)


def _classify(name, math):
    """The public op and Tensor method ``name(x)``: whether each element is ``math``."""
    def test(x):
        if not isinstance(x, Tensor):
            x = to_tensor(x, name)
        return plain(getattr(x._dev._backend, name)(x._a), x._dev)

    test.__name__ = test.__qualname__ = name
    test.__doc__ = (f"{name}(x): whether each element of x is {math}, as a bool tensor of x's "
                    "shape (no gradient).")
    test.math = math
    return public(test, method=True)


isnan = _classify("isnan", "nan")
isinf = _classify("isinf", "+inf or -inf")
isfinite = _classify("isfinite", "finite (neither nan nor inf)")

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
