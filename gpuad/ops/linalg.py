"""Linear algebra: matmul (batched, NumPy's 1-D rules), dot, outer, tensordot, einsum.

dot, outer and tensordot are built from matmul, reshape and transpose, so their derivative
rules (both modes) are those ops'.
"""
import math
import string
from typing import TYPE_CHECKING

from ..autograd.node import Op
from ..autograd.record import record
from ._args import axes_tuple, axis_index, operands, plain, tensors
from .registry import exports, public
from .shape import broadcast_to, expand_dims, reshape, squeeze, swapaxes, transpose


def _t(x):
    return swapaxes(x, -1, -2)


def _matmul_a(g, a, b):
    """d(a @ b)/da, with the 1-D cases promoted as NumPy does (the engine sums batch axes)."""
    if b.ndim == 1:
        return expand_dims(g, -1) * b
    if a.ndim == 1:
        return squeeze(expand_dims(g, -2) @ _t(b), -2)
    return g @ _t(b)


def _matmul_b(g, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return g * a
    if a.ndim == 1:
        return expand_dims(a, -1) * expand_dims(g, -2)
    if b.ndim == 1:
        return squeeze(_t(a) @ expand_dims(g, -1), -1)
    if a.ndim == 2 and b.ndim == 2 and _column_major(b):
        # (gᵀ a)ᵀ: the same product, laid out as b is. For b = W.T (x @ W.T, as Linear) the
        # gradient reaching W is then row-major like W, not a transposed view
        return _t(_t(g) @ a)
    return _t(a) @ g


def _column_major(t):
    flags = t._a.flags
    return flags.f_contiguous and not flags.c_contiguous


def _lift(t, ndim):
    """A tangent ``(k, *s)`` with axes of size 1 after the batch axis, to ``ndim + 1`` axes."""
    pad = ndim + 1 - t.ndim
    return t if pad <= 0 else reshape(t, t.shape[:1] + (1,) * pad + t.shape[1:])


def _matmul_jvp(ts, y, a, b):
    """d(a @ b) = da @ b + a @ db; a tangent's batch axis joins the rows of one matrix
    product where the other operand is a plain matrix or vector (the common cases)."""
    ta, tb = ts
    out = None
    if ta is not None:
        out = _tangent_at_left(ta, a, b)
    if tb is not None:
        term = _tangent_at_right(a, tb, b)
        out = term if out is None else out + term
    return out


def _tangent_at_left(ta, a, b):
    """ta @ b for a tangent ``ta`` of ``a`` (shape ``(k,) + a.shape``)."""
    if b.ndim == 1 or (a.ndim == 1 and b.ndim == 2):
        return ta @ b  # no batch axes to align: NumPy's rules give (k,) + out.shape
    if b.ndim == 2:
        return _rows_times(ta, b)
    if a.ndim == 1:
        return squeeze(_lift(expand_dims(ta, -2), b.ndim) @ b, -2)
    return _lift(ta, b.ndim) @ b


def _tangent_at_right(a, tb, b):
    """a @ tb for a tangent ``tb`` of ``b`` (shape ``(k,) + b.shape``)."""
    if a.ndim == 1:
        return a @ tb if b.ndim > 1 else tb @ a
    if b.ndim == 1:
        if a.ndim == 2:
            return tb @ _t(a)
        return squeeze(a @ _lift(expand_dims(tb, -1), a.ndim), -1)
    if a.ndim == 2:
        return _t(_rows_times(_t(tb), _t(a)))
    return a @ _lift(tb, a.ndim)


def _rows_times(t, m):
    """t @ m for a matrix ``m`` as one matrix product: all of t's rows stacked."""
    rows = math.prod(t.shape[:-1])
    return reshape(reshape(t, (rows, t.shape[-1])) @ m, t.shape[:-1] + (m.shape[-1],))


_MATMUL = Op("matmul", (_matmul_a, _matmul_b), jvp=_matmul_jvp)


@public(method=True)
def matmul(a, b):
    """Matrix product, (a @ b)[i, j] = sum_k a[i, k] b[k, j], with NumPy's rules: batched
    over leading axes (which broadcast), 1-D operands promoted (a vector b as a column, a
    vector a as a row, the added axis dropped from the result).

    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.matmul(a, ad.tensor([[1.0, 0.0], [1.0, 1.0]]))
    tensor([[3., 2.],
            [7., 4.]])
    >>> ad.matmul(a, ad.tensor([1.0, 1.0]))
    tensor([3., 7.])
    """
    a, b, xa, xb, dev = operands(a, b, "matmul")
    sa, sb = getattr(xa, "shape", ()), getattr(xb, "shape", ())
    if not sa or not sb:
        raise ValueError(f"gpuad: matmul needs operands with at least 1 dimension, got {sa}, {sb}")
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if sa[-1] != k_b:
        raise ValueError(
            f"gpuad: matmul shape mismatch: {sa} @ {sb}; the last axis of the first "
            f"({sa[-1]}) must equal the {'only' if len(sb) == 1 else 'second-to-last'} axis of "
            f"the second ({k_b}). Transpose or reshape one operand"
        )
    try:
        out = dev._backend.matmul(xa, xb)
    except ValueError as exc:
        raise ValueError(f"gpuad: matmul cannot broadcast batch shapes {sa} and {sb}: {exc}") \
            from None
    return record(_MATMUL, (a, b), out, dev, (a, b))


@public(method=True)
def dot(a, b):
    """NumPy's dot: inner product of vectors, matmul of matrices, and for N-D a sum over the
    last axis of ``a`` and the second-to-last of ``b``; a 0-d operand multiplies.

    >>> ad.dot(ad.tensor([1.0, 2.0, 3.0]), ad.tensor([4.0, 5.0, 6.0]))
    tensor(32.)
    """
    a, b = tensors((a, b), "dot")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    return tensordot(a, b, axes=([a.ndim - 1], [b.ndim - 2 if b.ndim >= 2 else 0]))


@public(method=True)
def outer(a, b):
    """The outer product of the flattened inputs: out[i, j] = a[i] b[j].

    >>> ad.outer(ad.tensor([1.0, 2.0]), ad.tensor([1.0, 10.0, 100.0]))
    tensor([[  1.,  10., 100.],
            [  2.,  20., 200.]])
    """
    a, b = tensors((a, b), "outer")
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


@public
def tensordot(a, b, axes=2):
    """Sum products over ``axes`` (an int: the last n of ``a`` and first n of ``b``; or two
    sequences of axes), as ``numpy.tensordot``. Built from transpose, reshape and matmul.
    The result's axes are the free axes of ``a``, then those of ``b``.

    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.tensordot(a, a)
    tensor(30.)
    >>> ad.tensordot(a, a, axes=([0], [0]))
    tensor([[10., 14.],
            [14., 20.]])
    """
    a, b = tensors((a, b), "tensordot")
    ax_a, ax_b = _contracted(axes, a.ndim, b.ndim)
    if len(ax_a) != len(ax_b) or any(a.shape[i] != b.shape[j] for i, j in zip(ax_a, ax_b)):
        raise ValueError(
            f"gpuad: tensordot cannot contract axes {ax_a} of {a.shape} with {ax_b} of {b.shape}; "
            "the contracted sizes must match"
        )
    free_a = [i for i in range(a.ndim) if i not in ax_a]
    free_b = [i for i in range(b.ndim) if i not in ax_b]
    k = math.prod(a.shape[i] for i in ax_a)  # (sizes, not -1: k may be 0, a sum of nothing)
    a2 = reshape(transpose(a, free_a + ax_a), (math.prod(a.shape[i] for i in free_a), k))
    b2 = reshape(transpose(b, ax_b + free_b), (k, math.prod(b.shape[i] for i in free_b)))
    return reshape(a2 @ b2, tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b))


def _contracted(axes, nd_a, nd_b):
    """tensordot's ``axes`` as two lists of axes of ``a`` and ``b``, each checked once."""
    if hasattr(axes, "__index__") and axes.__class__ is not bool:
        n = axes.__index__()
        if not 0 <= n <= min(nd_a, nd_b):
            raise ValueError(f"gpuad.tensordot: axes={n} contracts the last {n} axes of a "
                             f"({nd_a}-d) with the first {n} of b ({nd_b}-d); it must be in "
                             f"0..{min(nd_a, nd_b)}")
        return list(range(nd_a - n, nd_a)), list(range(n))
    if isinstance(axes, (str, bytes)) or not hasattr(axes, "__len__") or len(axes) != 2:
        raise TypeError(f"gpuad.tensordot: axes is an int or a pair (axes of a, axes of b), "
                        f"got {axes!r}")
    out = []
    for which, ax, nd in (("a", axes[0], nd_a), ("b", axes[1], nd_b)):
        ax = [axis_index(i, nd, f"tensordot (axes of {which})") for i in axes_tuple(
            ax, "tensordot")]
        if len(set(ax)) != len(ax):
            raise ValueError(f"gpuad.tensordot: repeated axis in the axes of {which}: {axes!r}")
        out.append(ax)
    return out


# ---- einsum ---------------------------------------------------------------------------------

def _parse_einsum(subscripts, shapes):
    """Explicit subscripts with the ellipsis spelled out: (["ij", "jk"], "ik")."""
    subscripts = subscripts.replace(" ", "")
    lhs, arrow, out = subscripts.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(shapes):
        raise ValueError(
            f"gpuad: einsum subscripts {subscripts!r} name {len(ins)} operands, got {len(shapes)}"
        )
    used = set(subscripts) - set(".,->")
    spare = [c for c in string.ascii_letters if c not in used]
    ell_len = max((len(s) - (len(sub) - 3) for sub, s in zip(ins, shapes) if "..." in sub),
                  default=0)
    ell = "".join(spare[:ell_len])
    expanded = []
    for sub, shape in zip(ins, shapes):
        if "..." in sub:
            n = len(shape) - (len(sub) - 3)
            sub = sub.replace("...", ell[ell_len - n:] if n else "")
        if len(sub) != len(shape):
            raise ValueError(
                f"gpuad: einsum subscript {sub!r} has {len(sub)} letters for an operand of "
                f"shape {shape}"
            )
        expanded.append(sub)
    if arrow:
        out = out.replace("...", ell)
    else:
        counts = {}
        for c in "".join(expanded):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return expanded, out


def _einsum_rule(k):
    def rule(g, ins, out, *ops):
        target = ins[k]
        shape = ops[k].shape
        unique = "".join(dict.fromkeys(target))  # a repeated letter (a diagonal) once
        sizes = {c: shape[target.index(c)] for c in unique}
        others = [ins[i] for i in range(len(ins)) if i != k]
        present = set(out).union(*others) if others else set(out)
        kept = "".join(c for c in unique if c in present)
        grad = einsum(",".join([out] + others) + "->" + kept,
                      g, *[ops[i] for i in range(len(ops)) if i != k])
        if kept != unique:  # letters summed away in the forward pass come back by broadcasting
            grad = reshape(grad, tuple(sizes[c] if c in present else 1 for c in unique))
            grad = broadcast_to(grad, tuple(sizes[c] for c in unique))
        if unique != target:  # put the values back on the diagonal, zeros elsewhere
            spare = iter(c for c in string.ascii_letters if c not in "".join(ins) + out)
            spread, deltas = "", []
            for i, c in enumerate(target):
                if c in target[:i]:
                    fresh = next(spare)
                    spread += fresh
                    deltas.append(c + fresh)
                else:
                    spread += c
            eyes = [plain(g._dev.backend.eye(sizes[d[0]], dtype=g.dtype), g._dev)
                    for d in deltas]
            grad = einsum(",".join([unique] + deltas) + "->" + spread, grad, *eyes)
        return grad
    return rule


def _einsum_jvp(ts, y, ins, out, *ops):
    """Multilinear: the sum over operands of the product with that operand's tangent, whose
    batch axis gets a letter of its own that leads the output."""
    batch = next(c for c in string.ascii_letters if c not in "".join(ins) + out)
    total = None
    for k, t in enumerate(ts):
        if t is None:
            continue
        subs = list(ins)
        subs[k] = batch + subs[k]
        term = einsum(",".join(subs) + "->" + batch + out, *ops[:k], t, *ops[k + 1:])
        total = term if total is None else total + term
    return total


@public
def einsum(subscripts, *operands_):
    """Einstein summation, as ``numpy.einsum`` (explicit or implicit output, ellipsis): the
    products of the operands' elements, summed over every letter the output lacks.

    >>> a = ad.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ad.einsum("ii->", a)
    tensor(5.)
    >>> ad.einsum("ij,j->i", a, ad.tensor([1.0, -1.0]))
    tensor([-1., -1.])
    """
    ts = tensors(operands_, "einsum")
    ins, out = _parse_einsum(subscripts, [t.shape for t in ts])
    spec = ",".join(ins) + "->" + out
    try:
        result = ts[0]._dev._backend.einsum(spec, *[t._a for t in ts])
    except ValueError as exc:
        raise ValueError(
            f"gpuad: einsum {subscripts!r} does not fit shapes {[t.shape for t in ts]}: {exc}"
        ) from None
    op = Op("einsum", tuple(_einsum_rule(k) for k in range(len(ts))), jvp=_einsum_jvp)
    return record(op, ts, result, ts[0]._dev, (ins, out) + tuple(ts))


# ---- linear: x Wᵀ + b, one node (PyTorch's F.linear) -------------------------------------------

def _linear_x(g, x, w):
    """d(x Wᵀ + b)/dx: g W."""
    return g @ w


def _linear_w(g, x, w):
    """d(x Wᵀ + b)/dW: gᵀ x over all the rows of x (row-major, like W)."""
    if x.ndim == 1:
        return expand_dims(g, -1) * x
    if x.ndim == 2:
        return transpose(g) @ x
    rows = math.prod(x.shape[:-1])
    return _t(reshape(g, (rows, g.shape[-1]))) @ reshape(x, (rows, x.shape[-1]))


def _linear_b(g, x, w):
    """d(x Wᵀ + b)/db: g summed over all but its last axis."""
    return g.sum(axis=tuple(range(g.ndim - 1))) if g.ndim > 1 else g


def _linear_jvp(ts, y, x, w):
    """d(x Wᵀ + b) = dx Wᵀ + x dWᵀ + db, each term with the tangents' batch axis first."""
    tx, tw = ts[0], ts[1]
    tb = ts[2] if len(ts) > 2 else None
    wt = _t(w)
    out = None if tx is None else _tangent_at_left(tx, x, wt)
    if tw is not None:
        term = _tangent_at_right(x, swapaxes(tw, -1, -2), wt)
        out = term if out is None else out + term
    if tb is not None:
        term = reshape(tb, tb.shape[:1] + (1,) * (y.ndim - 1) + tb.shape[1:])
        out = broadcast_to(term, tb.shape[:1] + y.shape) if out is None else out + term
    return out


_LINEAR = Op("linear", (_linear_x, _linear_w), jvp=_linear_jvp)
_LINEAR_BIAS = Op("linear", (_linear_x, _linear_w, _linear_b), jvp=_linear_jvp)


def linear(input, weight, bias=None):
    """``input @ weight.T + bias`` for ``weight`` of shape (out, in) and ``bias`` (out,), as
    ``torch.nn.functional.linear``: one graph node, the bias added in place into the product,
    and W's gradient computed as gᵀ x so it is row-major like W.

    >>> x = ad.tensor([[1.0, 2.0]])
    >>> w = ad.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    >>> ad.nn.functional.linear(x, w, ad.tensor([0.5, 0.0, 0.0]))
    tensor([[ 1.5000,  3.0000, -2.0000]])
    """
    x, w = tensors((input, weight), "linear")
    b = None if bias is None else tensors((bias, x), "linear")[0]
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[1] or (
            b is not None and b.shape != (w.shape[0],)):
        raise ValueError(
            f"gpuad.nn.functional.linear: input {x.shape} @ weight {w.shape}.T + bias "
            f"{None if b is None else b.shape}: the weight must be (out, in) with in = the "
            "input's last axis, and the bias (out,)")
    backend = x._dev._backend
    out = backend.matmul(x._a, w._a.T)
    if b is None:
        return record(_LINEAR, (x, w), out, x._dev, (x, w))
    if out.__class__ is backend.array_type and out.ndim and out.dtype == b._a.dtype:
        backend.add(out, b._a, out=out)  # the product is a fresh array: add in place
    else:
        out = backend.add(out, b._a)  # (a 0-d product, or a bias that promotes the result)
    return record(_LINEAR_BIAS, (x, w, b), out, x._dev, (x, w))

if not TYPE_CHECKING:  # (the checker reads the definitions)
    __all__ = exports(globals())
