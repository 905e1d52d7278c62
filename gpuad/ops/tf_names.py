"""TensorFlow's spellings of gpuad ops (SPEC section 4), and its control flow, run eagerly.

Each name is the gpuad op under TensorFlow's name and argument names (SPEC's list, plus
``reduce_prod``, ``reduce_logsumexp`` and ``concat``); ``cond`` and
``while_loop`` are plain Python control flow, so a tape records whatever branch or iterations
actually run. ``fill``, ``gather_nd``, ``less``, ``greater``, ``equal``, ``add`` and
``square`` already have TensorFlow's names.
"""
from .casts import astype
from .define import example_section
from .elementwise import clip, div, mul, sub
from .joining import concatenate
from .reduction import logsumexp, max, mean, min, prod, sum


def _reduce(reduction, doc, example):
    """TensorFlow's ``reduce_<name>``: ``reduction`` over ``axis`` (all axes when None), under
    TensorFlow's argument names; ``doc`` is its docstring, ``example`` the lines of its
    doctest."""
    def reduce(input_tensor, axis=None, keepdims=False, name=None):
        return reduction(input_tensor, axis=axis, keepdims=keepdims)

    reduce.__name__ = reduce.__qualname__ = f"reduce_{reduction.__name__}"
    reduce.__doc__ = doc + example_section(example)
    return reduce


reduce_sum = _reduce(sum, "The sum over ``axis`` (all axes when None).", (
    ">>> ad.reduce_sum(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=1)",
    "tensor([3., 7.])"))
reduce_mean = _reduce(mean, "The mean over ``axis`` (all axes when None).", (
    ">>> ad.reduce_mean(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=0)",
    "tensor([2., 3.])"))
reduce_max = _reduce(max, "The maximum over ``axis``; ties share the gradient evenly.", (
    ">>> ad.reduce_max(ad.tensor([[1.0, 5.0], [3.0, 2.0]]), axis=1)",
    "tensor([5., 3.])"))
reduce_min = _reduce(min, "The minimum over ``axis``; ties share the gradient evenly.", (
    ">>> ad.reduce_min(ad.tensor([[1.0, 5.0], [3.0, 2.0]]), axis=1)",
    "tensor([1., 2.])"))
reduce_prod = _reduce(prod, "The product over ``axis``; exact with zeros.", (
    ">>> ad.reduce_prod(ad.tensor([[1.0, 2.0], [3.0, 4.0]]), axis=1)",
    "tensor([ 2., 12.])"))
reduce_logsumexp = _reduce(logsumexp, "log(sum(exp(x))) over ``axis``, shifted by the maximum.", (
    ">>> ad.reduce_logsumexp(ad.tensor([[0.0, 0.0], [1.0, 1.0]]), axis=1)",
    "tensor([0.6931, 1.6931])"))


def concat(values, axis, name=None):
    """Join tensors along an existing ``axis``.

    >>> ad.concat([ad.tensor([[1.0, 2.0]]), ad.tensor([[3.0, 4.0]])], axis=0)
    tensor([[1., 2.],
            [3., 4.]])
    """
    return concatenate(values, axis)


def multiply(x, y, name=None):
    """x * y, broadcast.

    >>> ad.multiply(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 4.0]))
    tensor([3., 8.])
    """
    return mul(x, y)


def subtract(x, y, name=None):
    """x - y, broadcast.

    >>> ad.subtract(ad.tensor([1.0, 2.0]), ad.tensor([3.0, 5.0]))
    tensor([-2., -3.])
    """
    return sub(x, y)


def divide(x, y, name=None):
    """x / y, broadcast.

    >>> ad.divide(ad.tensor([1.0, 2.0]), ad.tensor([4.0, 8.0]))
    tensor([0.2500, 0.2500])
    """
    return div(x, y)


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    """``t`` limited to [clip_value_min, clip_value_max]; gradient 1 inside, 0 outside.

    >>> ad.clip_by_value(ad.tensor([-2.0, 0.5, 3.0]), 0.0, 1.0)
    tensor([0.0000, 0.5000, 1.0000])
    """
    return clip(t, clip_value_min, clip_value_max)


def cast(x, dtype, name=None):
    """``x`` as ``dtype`` (floats to integers truncate toward zero).

    >>> ad.cast(ad.tensor([1.7, -1.7]), ad.int32)
    tensor([ 1, -1], dtype=int32)
    """
    return astype(x, dtype)


def cond(pred, true_fn=None, false_fn=None, name=None):
    """``true_fn()`` if ``pred`` (a bool or one-element tensor) holds, else ``false_fn()``;
    only the branch taken runs.

    >>> x = ad.tensor(3.0)
    >>> ad.cond(x > 0, lambda: x * 2, lambda: -x)
    tensor(6.)
    """
    if true_fn is None or false_fn is None:
        raise TypeError("gpuad.cond needs both true_fn and false_fn")
    return true_fn() if bool(pred) else false_fn()


def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, maximum_iterations=None, name=None):
    """Run ``loop_vars = body(*loop_vars)`` while ``cond(*loop_vars)`` holds (at most
    ``maximum_iterations`` times). Returns the final loop variables: a tuple when
    ``loop_vars`` is a list or tuple, else the single value. The arguments that only shape
    TensorFlow's graph building (``shape_invariants``, ``parallel_iterations``, ...) are
    accepted and change nothing.

    >>> ad.while_loop(lambda x: x < 10, lambda x: x * 2, ad.tensor(1.0))
    tensor(16.)
    >>> ad.while_loop(lambda i, s: i < 4, lambda i, s: (i + 1, s + i), (0, 0))
    (4, 6)
    """
    single = not isinstance(loop_vars, (list, tuple))
    values = [loop_vars] if single else list(loop_vars)
    done = 0
    while (maximum_iterations is None or done < maximum_iterations) and bool(cond(*values)):
        out = body(*values)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        if len(out) != len(values):
            raise ValueError(f"gpuad.while_loop: body returned {len(out)} values for "
                             f"{len(values)} loop variables; return one per loop variable")
        values = out
        done += 1
    return values[0] if single else tuple(values)
