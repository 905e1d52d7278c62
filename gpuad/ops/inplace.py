"""In-place ops: ``x += 1``, ``x[0] = 5``, ``add_``, ``mul_``, ``zero_``, ``copy_`` ...

Without anything to record (grad mode off, or no tensor involved requires grad) the backend
array is changed directly. Otherwise the op is computed out of place from a snapshot of the old
value, written back into the same storage, and the tensor becomes the output of the new node
(the graph is "rebased"). Every in-place change bumps the version counter, so a backward pass
that saved the old value raises instead of using the new one.
"""
from ..autograd.grad_mode import mode
from ..autograd.node import Op
from ..tensor import Tensor, record
from ._args import SCALARS, mismatch, operands
from .elementwise import _zero, add, div, mul, pow, sub, where
from .shape import _index, astype, broadcast_to, clone, to_device


def _check_leaf(t, name):
    """Refuse, before anything is written, to change a grad-requiring leaf (or a view of one)
    while grad mode is on."""
    if not mode.enabled:
        return
    for leaf, what in ((t, "a leaf tensor"), (t._base, "a view of a leaf tensor")):
        if leaf is not None and leaf._rg and leaf._grad_fn is None:
            raise RuntimeError(
                f"gpuad: {name}: {what} that requires grad (shape {leaf.shape}) cannot be "
                "modified in place while grad mode is on; do the update inside "
                "`with ad.no_grad():`, or use an out-of-place op (x = x + 1)"
            )


def _snapshot(t):
    """A copy of ``t``'s current value that sits at ``t``'s place in the graph."""
    return Tensor(t._dev._backend.copy(t._a), t._dev, t._grad_fn, t._rg)


def _rebase(t, new, name):
    """Write ``new`` into ``t``'s storage and make ``t`` the output of ``new``'s node.

    Everything that can refuse is checked before the storage is touched."""
    if new.shape != t.shape:
        raise RuntimeError(
            f"gpuad: {name}: the result has shape {new.shape} but the tensor changed in place "
            f"has shape {t.shape}; an in-place op cannot change the shape"
        )
    base = t._base
    index = None
    if base is not None:
        index = getattr(t, "_view_index", None)
        if index is None:
            raise RuntimeError(
                f"gpuad: {name}: in-place change of a view (from reshape, transpose or a view "
                "of a view) while recording gradients is not supported, because the tensor it "
                "views would not see the change in its graph; .clone() the view first, or "
                "index the base tensor directly (base[i] += v)"
            )
    if new.dtype != t.dtype:
        new = astype(new, t.dtype)
    t._a[...] = new._a
    t._grad_fn = new._grad_fn
    t._rg = new._rg
    if base is not None:
        _rebase_base(base, index, t)


def _rebase_base(base, index, view):
    """The base's graph after its view at ``index`` was changed: setitem of the new view."""
    new = _setitem_functional(_snapshot(base), index, view)
    base._grad_fn = new._grad_fn
    base._rg = new._rg


def _setitem_rule_base(g, index):
    """Gradient for the old value: everything except the overwritten positions."""
    backend = g._dev._backend
    keep = backend.ones(g.shape, dtype=bool)
    keep[index] = False
    return where(Tensor(keep, g._dev), g, 0)


_SETITEM = Op("setitem", (_setitem_rule_base, lambda g, index: g[index]))


def _setitem_functional(old, index, value):
    out = old._dev._backend.copy(old._a)
    out[index] = value._a if value.__class__ is Tensor else value
    return record(_SETITEM, (old, value), out, old._dev, (index,))


def setitem(t, index, value):
    """``t[index] = value``."""
    _check_leaf(t, "setitem")
    idx, _ = _index(index, t)
    if value.__class__ is Tensor:
        if value._dev is not t._dev:
            raise mismatch("setitem", t._dev, value._dev)
    elif value.__class__ not in SCALARS:
        value = Tensor(t._dev.backend.asarray(value), t._dev)
    if mode.enabled and (t._rg or (value.__class__ is Tensor and value._rg)):
        _rebase(t, _setitem_functional(_snapshot(t), idx, value), "setitem")
    else:
        t._a[idx] = value._a if value.__class__ is Tensor else value
    t._ver[0] += 1


def _binary_inplace(name, fn, method):
    def inplace(t, other):
        _check_leaf(t, name)
        if mode.enabled and (t._rg or (other.__class__ is Tensor and other._rg)):
            _rebase(t, fn(_snapshot(t), other), name)
        else:
            _, _, xa, xb, dev = operands(t, other, name)
            try:
                getattr(dev._backend, method)(xa, xb, out=xa)
            except (TypeError, ValueError) as exc:
                raise RuntimeError(
                    f"gpuad: {name} cannot store the result in a tensor of shape {t.shape} and "
                    f"dtype {t.dtype}: {exc}"
                ) from None
        t._ver[0] += 1
        return t

    inplace.__name__ = inplace.__qualname__ = name
    return inplace


add_ = _binary_inplace("add_", add, "add")
sub_ = _binary_inplace("sub_", sub, "subtract")
mul_ = _binary_inplace("mul_", mul, "multiply")
div_ = _binary_inplace("div_", div, "true_divide")
pow_ = _binary_inplace("pow_", pow, "power")

_FILL = Op("fill", (_zero,))


def fill_(t, value):
    """Set every element to ``value``; the old value gets a zero gradient."""
    _check_leaf(t, "fill_")
    if mode.enabled and t._rg:
        full = t._dev._backend.full(t.shape, value, dtype=t.dtype)
        _rebase(t, record(_FILL, (_snapshot(t),), full, t._dev, ()), "fill_")
    else:
        t._a.fill(value)
    t._ver[0] += 1
    return t


def zero_(t):
    return fill_(t, 0)


def copy_(t, src):
    """Copy ``src`` (broadcast, cast, and moved from its device explicitly) into ``t``."""
    _check_leaf(t, "copy_")
    if src.__class__ is not Tensor:
        src = Tensor(t._dev.backend.asarray(src, dtype=t.dtype), t._dev)
    if src._dev is not t._dev:
        src = to_device(src, t._dev)
    if mode.enabled and (t._rg or src._rg):
        _rebase(t, clone(broadcast_to(astype(src, t.dtype), t.shape)), "copy_")
    else:
        t._a[...] = src._a
    t._ver[0] += 1
    return t
