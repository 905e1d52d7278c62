"""Losses, as ``torch.nn.functional`` spells them: ``mse_loss``, ``cross_entropy``,
``nll_loss`` and ``binary_cross_entropy_with_logits``, each with ``reduction`` "mean", "sum"
or "none", and gradients that match PyTorch's; and ``linear`` (x Wᵀ + b, from ``ops.linalg``).

``cross_entropy`` runs the backend's one-pass softmax cross-entropy (loss and the logits'
gradient together: the kernel of kernels/rowwise.cu on CUDA, NumPy on the CPU); its gradient is
then a node whose own derivative is the composed softmax rule, so second derivatives still
work. Where no one-pass version applies (float16 on the CPU) it is composed from ops.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from ..autograd.linearize import jvp, vjp
from ..autograd.node import Op
from ..autograd.record import needs_grad, record
from ..dtypes import float16
from ..ops import (
    abs,
    exp,
    expand_dims,
    log1p,
    log_softmax,
    maximum,
    moveaxis,
    reshape,
    softmax,
    take_along_axis,
    where,
)
from ..ops._args import plain
from ..ops.linalg import linear  # noqa: F401  (F.linear, as PyTorch)
from ..tensor import Tensor

if TYPE_CHECKING:  # (gpuad imports its aliases for the checker only)
    from collections.abc import Callable

    import numpy as np

    from .._typing import Array

#: How a loss per element is reduced: averaged, summed, or not at all (a type for users'
#: annotations; not in ``__all__``).
Reduction: TypeAlias = Literal["mean", "sum", "none"]
_REDUCTIONS = get_args(Reduction)

__all__ = ["mse_loss", "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy",
           "linear", "softmax", "log_softmax"]


def _reduce(loss: Tensor, reduction: str, name: str, ignored: Tensor | None = None) -> Tensor:
    """The loss per element reduced; the mean divides by the number of elements, or of rows
    not ``ignored`` (a bool tensor, one per row) where given."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"gpuad.nn.functional.{name}: reduction must be one of "
                         f"{_REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return loss
    half = loss.dtype == "float16"  # sums and counts past 65504: in float32, then cast back
    wide = loss.astype("float32") if half else loss
    total = wide.sum()
    if reduction == "mean" and ignored is None:
        # nothing to average (an empty batch): nan, as PyTorch, quietly
        total = total / loss.size if loss.size else total * float("nan")
    elif reduction == "mean" and ignored is not None:
        count, empty = _divisor(ignored, wide.dtype)
        total = total / count + empty
    return total.astype("float16") if half else total


def _check_pair(name: str, a: object, b: object) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"gpuad.nn.functional.{name}: input and target must be tensors")
    if a.device != b.device:
        raise _mismatch(name, a, b)


def _mismatch(name: str, a: Tensor, b: Tensor) -> Exception:
    from ..errors import DeviceMismatchError

    return DeviceMismatchError(
        f"gpuad.nn.functional.{name}: input is on {a.device} but target on {b.device}; move "
        "one explicitly (nothing moves between devices implicitly)")


def mse_loss(input: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """mean((input - target)^2), for ``input`` and ``target`` of one shape (a ValueError
    otherwise: PyTorch broadcasts them, with a warning).

    >>> x = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> loss = ad.nn.functional.mse_loss(x, ad.tensor([1.0, 0.0, 5.0]))
    >>> loss  # (0 + 4 + 4) / 3
    tensor(2.6667, grad_fn=<DivBackward>)
    >>> loss.backward()
    >>> x.grad  # 2 (x - target) / 3
    tensor([ 0.0000,  1.3333, -1.3333])
    """
    _check_pair("mse_loss", input, target)
    if input.shape != target.shape:
        raise ValueError(f"gpuad.nn.functional.mse_loss: input shape {input.shape} and target "
                         f"shape {target.shape} differ; they must be equal")
    d = input - target
    return _reduce(d * d, reduction, "mse_loss")


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,
                                     reduction: Reduction = "mean",
                                     pos_weight: Tensor | float | None = None) -> Tensor:
    """-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), in the stable form
    max(x, 0) - x t + log1p(exp(-|x|)); ``pos_weight`` weighs the positive term.

    >>> x, t = ad.tensor([0.0, 2.0, -1.0]), ad.tensor([1.0, 1.0, 0.0])
    >>> ad.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
    tensor([0.6931, 0.1269, 0.3133])
    >>> ad.nn.functional.binary_cross_entropy_with_logits(x, t)
    tensor(0.3778)
    """
    _check_pair("binary_cross_entropy_with_logits", input, target)
    if input.shape != target.shape:
        raise ValueError("gpuad.nn.functional.binary_cross_entropy_with_logits: input shape "
                         f"{input.shape} and target shape {target.shape} differ")
    softplus_neg = log1p(exp(-abs(input))) + maximum(-input, 0)  # log(1 + exp(-x))
    if pos_weight is None:
        loss = (1 - target) * input + softplus_neg
    else:
        loss = (1 - target) * input + (1 + (pos_weight - 1) * target) * softplus_neg
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


def _as_rows(input: Tensor, target: Tensor, name: str
             ) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """(N, C) logits and (N,) labels from (C,), (N, C) or (N, C, d1, ...) inputs; and a
    function giving the per-element loss its input shape back."""
    if input.ndim == 1:
        return reshape(input, (1, -1)), reshape(target, (1,)), lambda loss: reshape(loss, ())
    if input.ndim == 2:
        return input, target, lambda loss: loss
    c = input.shape[1]
    rows = moveaxis(input, 1, -1)
    shape = rows.shape[:-1]
    return reshape(rows, (-1, c)), reshape(target, (-1,)), lambda loss: reshape(loss, shape)


def _labels(target: Tensor, n: int, c: int, name: str) -> Tensor:
    if target.dtype.kind not in "iu":
        raise TypeError(f"gpuad.nn.functional.{name}: target must hold integer class indices "
                        f"(int64), got {target.dtype}; for class probabilities pass a float "
                        "target of the input's shape to cross_entropy")
    if target.shape != (n,):
        raise ValueError(f"gpuad.nn.functional.{name}: {n} rows of logits but target shape "
                         f"{target.shape}")
    return target


def nll_loss(input: Tensor, target: Tensor, ignore_index: int = -100,
             reduction: Reduction = "mean") -> Tensor:
    """-input[i, target[i]] for log-probabilities ``input`` of shape (N, C) (or (C,) or
    (N, C, d...)); rows whose target is ``ignore_index`` give 0 and do not count in the mean.

    >>> logp = ad.tensor([[-0.5, -1.0], [-2.0, -0.1]])
    >>> ad.nn.functional.nll_loss(logp, ad.tensor([0, 1]))  # (0.5 + 0.1) / 2
    tensor(0.3000)
    """
    _check_pair("nll_loss", input, target)
    x, t, back = _as_rows(input, target, "nll_loss")
    n, c = x.shape
    t = _labels(t, n, c, "nll_loss")
    ignored = t == ignore_index
    _check_range(x, t, ignored, "nll_loss")
    safe = where(ignored, 0, t)
    picked = take_along_axis(x, expand_dims(safe, 1), 1)
    loss = where(ignored, 0, -reshape(picked, (n,)))
    return _reduce(back(loss), reduction, "nll_loss", ignored)


def _divisor(ignored: Tensor, dtype: np.dtype) -> tuple[Tensor, Tensor]:
    """The mean's divisor over the rows not ``ignored``, as two constants on the device, so
    that no count is read back to the host: ``(count, empty)`` with count = max(rows counted,
    1) and empty = nan where no row counts, else 0. total / count + empty is the mean (nan for
    no rows, as PyTorch), and its gradient g / count stays finite where every row is ignored
    (their rows take 0, not inf * 0)."""
    dev = ignored.device
    return tuple(plain(a, dev) for a in dev.backend.mean_divisor(ignored.array, dtype))


def _check_range(x: Tensor, t: Tensor, ignored: Tensor, name: str) -> None:
    """IndexError for a label outside [0, C) other than ignore_index: at once on the CPU, at
    the next host read on CUDA (``backend.require``, gpuad/backends/deferred.py)."""
    c = x.shape[1]
    t.device.backend.require_in_range(
        t.array, 0, c, IndexError,
        lambda: f"gpuad.nn.functional.{name}: target holds class indices outside [0, {c}) "
        f"(other than ignore_index), for logits of shape {x.shape} and a target of shape {t.shape} "
        f"({t.dtype}); labels must be class numbers 0..{c - 1}, or ignore_index for rows that "
        "do not count", skip=ignored.array)


def cross_entropy(input: Tensor, target: Tensor, ignore_index: int = -100,
                  reduction: Reduction = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (N, C) (or (C,), or (N, C, d...)) against
    integer ``target`` labels, or against class probabilities (a float target of the input's
    shape). With ``label_smoothing`` e the target is (1 - e) onehot + e / C; rows whose label is
    ``ignore_index`` give 0, do not count in the mean and take a zero gradient (also where
    their logits are nan or inf: the loss does not depend on them; PyTorch passes nan).

    For labels the loss of row i is logsumexp(z[i]) - z[i, target[i]]; "mean" averages it over
    the rows that count.

    >>> z = ad.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    >>> ad.nn.functional.cross_entropy(z, ad.tensor([0, 2]), reduction="none")
    tensor([0.1698, 1.0986])
    >>> ad.nn.functional.cross_entropy(z, ad.tensor([0, 2]))
    tensor(0.6342)
    >>> ad.nn.functional.cross_entropy(z, ad.tensor([0, -100]))  # row 1 ignored
    tensor(0.1698)
    """
    _check_pair("cross_entropy", input, target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError("gpuad.nn.functional.cross_entropy: label_smoothing must be in "
                         f"[0, 1], got {label_smoothing}")
    if target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError("gpuad.nn.functional.cross_entropy: a probability target must "
                             f"have the input's shape {input.shape}, got {target.shape}")
        axis = 0 if input.ndim == 1 else 1
        c = input.shape[axis]
        q = target * (1 - label_smoothing) + label_smoothing / c
        loss = -(q * log_softmax(input, axis=axis)).sum(axis=axis)
        return _reduce(loss, reduction, "cross_entropy")
    x, t, back = _as_rows(input, target, "cross_entropy")
    n, c = x.shape
    t = _labels(t, n, c, "cross_entropy")
    ignored = t == ignore_index
    _check_range(x, t, ignored, "cross_entropy")
    fused = x.device.backend.fused_cross_entropy
    loss = None
    if fused is not None:
        got = fused(x.array, t.array, ignore_index, label_smoothing)
        if got is not None:
            d = _loss_gradient(x, t, ignored, label_smoothing, got[1])
            if reduction in ("mean", "sum") and got[0].dtype != float16:
                # the reduction joins the loss's node (an ignored row has loss 0 and d 0)
                return _total(x, got[0], d, _divisor(ignored, got[0].dtype)
                              if reduction == "mean" else None)
            loss = record(_CE, (x,), got[0], x.device, (d,))
            loss = where(ignored, 0, loss)  # ignored rows take no gradient, even a nan one
    if loss is None:
        logp = log_softmax(x, axis=1)
        safe = where(ignored, 0, t)
        nll = -reshape(take_along_axis(logp, expand_dims(safe, 1), 1), (n,))
        if label_smoothing:
            nll = nll * (1 - label_smoothing) - logp.mean(axis=1) * label_smoothing
        loss = where(ignored, 0, nll)
    return _reduce(back(loss), reduction, "cross_entropy", ignored)


# ---- the fused path (one pass in a backend: a CUDA kernel, or NumPy on the CPU) -----------

def _target(x: Tensor, t: Tensor, ignored: Tensor, smoothing: float) -> Tensor:
    """The smoothed one-hot target q, zero on ignored rows (a constant)."""
    backend = x.device.backend
    n, c = x.shape
    q = backend.full((n, c), smoothing / c, dtype=x.dtype)
    safe = backend.where(ignored.array, 0, t.array)
    rows = backend.arange(n)
    q[rows, safe] += 1 - smoothing
    q[ignored.array] = 0
    return plain(q, x.device)


def _softmax_minus_target(x: Tensor, t: Tensor, ignored: Tensor, smoothing: float
                          ) -> Callable[[Tensor], Tensor]:
    """D(v) = where(mask, softmax(v) - q, 0) as a function of v, composed from ops (built only
    when D itself is differentiated)."""
    mask = expand_dims(~ignored, 1)
    q = _target(x, t, ignored, smoothing)
    return lambda v: where(mask, softmax(v, axis=1) - q, 0)


def _softmax_minus_target_vjp(gg: Tensor, x: Tensor, t: Tensor, ignored: Tensor,
                              smoothing: float) -> Tensor:
    _, pull = vjp(_softmax_minus_target(x, t, ignored, smoothing), x)
    return pull(gg)[0]


def _softmax_minus_target_jvp(ts: Any, out: Tensor, x: Tensor, t: Tensor, ignored: Tensor,
                              smoothing: float) -> Tensor:
    return jvp(_softmax_minus_target(x, t, ignored, smoothing), x, ts[0], batched=True)[1]


# D = dloss/dlogits (per row), a node of its own so that it differentiates again
_CE_GRAD = Op("cross_entropy_grad", (_softmax_minus_target_vjp,), jvp=_softmax_minus_target_jvp)
# the per-row loss: its gradient is g * D, its tangent sum(D * t)
_CE = Op("cross_entropy", (lambda g, d: expand_dims(g, 1) * d,),
         jvp=lambda ts, out, d: (ts[0] * d).sum(axis=-1))


# the loss summed (scale None) or averaged (scale: the row count) over rows, in one node
_CE_TOTAL = Op("cross_entropy", (
    lambda g, d, count: (g if count is None else g / count) * d,),
    jvp=lambda ts, out, d, count: _scaled((ts[0] * d).sum(axis=-1).sum(axis=-1), count))


def _scaled(total: Tensor, count: Tensor | None) -> Tensor:
    return total if count is None else total / count


def _loss_gradient(x: Tensor, t: Tensor, ignored: Tensor, smoothing: float, dlogits: Array
                   ) -> Tensor:
    """D = softmax(x) - q from the one-pass function, as a node when x needs gradients."""
    if needs_grad(x):
        return record(_CE_GRAD, (x,), dlogits, x.device, (x, t, ignored, smoothing))
    return Tensor(dlogits, x.device)


def _total(x: Tensor, loss: Array, d: Tensor, divisor: tuple[Tensor, Tensor] | None
           ) -> Tensor:
    """sum(loss), or for the mean sum(loss) / count + empty with ``divisor`` = (count, empty)
    from :func:`_divisor`: the same operations as ``_reduce``."""
    backend = x.device.backend
    total = backend.sum(loss)
    if divisor is None:
        return record(_CE_TOTAL, (x,), total, x.device, (d, None))
    count, empty = divisor
    value = backend.add(backend.true_divide(total, count.array), empty.array)
    return record(_CE_TOTAL, (x,), value, x.device, (d, count))
