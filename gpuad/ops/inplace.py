"""In-place ops: ``x += 1``, ``x[0] = 5``, ``add_``, ``mul_``, ``zero_``, ``copy_`` ...

Without anything to record (grad mode off, or no tensor involved requires grad) the backend
array is changed directly. Otherwise the op is computed out of place from a snapshot of the old
value, written back into the same storage, and the tensor becomes the output of the new node
(the graph is "rebased"). Every in-place change bumps the version counter, so a backward pass
that saved the old value raises instead of using the new one.
"""
from ..autograd.forward import DIAGONAL, carry, has_tangent
from ..autograd.grad_mode import mode
from ..autograd.node import Op
from ..autograd.record import on_stale_view, record, tape_tracked
from ..dtypes import value_dtype
from ..tensor import Tensor
from ._args import SCALARS, mismatch, operands, plain
from .casts import astype, to_device
from .define import zero as _zero
from .elementwise import add, div, mul, pow, sub
from .indexing import _batch_last, _index, batched_index, refresh_view
from .selection import where
from .shape import broadcast_to, moveaxis, reshape, view_positions

# In-place changes are what make a view stale (its storage changed under its graph): the
# recording refreshes such a view, before an op reads it, with the view ops' rebuild.
on_stale_view(refresh_view)


def _check_leaf(t, name):
    """Refuse, before anything is written, to change a grad-requiring leaf (or a view of one)
    while grad mode is on, or a trainable Variable while a tape records."""
    if not mode.enabled:
        return
    for leaf, what in ((t, "a leaf tensor"), (t._base, "a view of a leaf tensor")):
        if leaf is None or leaf._grad_fn is not None:
            continue
        if leaf._rg:
            raise RuntimeError(
                f"gpuad: {name}: {what} that requires grad (shape {leaf.shape}) cannot be "
                "modified in place while grad mode is on; do the update inside "
                "`with ad.no_grad():`, or use an out-of-place op (x = x + 1)"
            )
        if leaf._autowatch and mode.tapes:
            raise RuntimeError(
                f"gpuad: {name}: a trainable Variable (shape {leaf.shape}) cannot be modified "
                "in place by an op while a GradientTape records; use its assign, assign_add or "
                "assign_sub (not recorded), or an out-of-place op (y = v + 1)"
            )


def _tracking(t, other=None):
    """Whether the change must be recorded: grad mode is on and the tensor, the new value, or
    the base the tensor views requires grad or is watched by a recording gradient tape; or
    (whatever the grad mode) one of them carries a forward-mode tangent."""
    base = t._base
    if base is not None and t._view_ver != t._ver[0] and (mode.enabled or mode.levels):
        refresh_view(t)
    if mode.levels and any(has_tangent(v) for v in (t, other, base)):
        if not mode.enabled:
            return True
        tangents = True
    else:
        tangents = False
    if not mode.enabled:
        return False
    if base is not None:
        if base._rg and not t._rg:
            raise RuntimeError(
                f"gpuad: a view (shape {t.shape}) of a tensor that requires grad was made under "
                "no_grad, so it does not require grad, and is now changed in place with grad "
                "mode on; the base's gradient would silently miss the change. Make the view "
                "with grad mode on, or change it inside no_grad"
            )
    involved = (t, other, base)
    if tangents or any(isinstance(v, Tensor) and v._rg for v in involved):
        return True
    return bool(mode.tapes) and any(isinstance(v, Tensor) and tape_tracked(v) for v in involved)


def _bump(t):
    """Count one in-place change; a view's own graph is current after it."""
    t._ver[0] += 1
    if t._base is not None:
        t._view_ver = t._ver[0]


def _snapshot(t):
    """A copy of ``t``'s current value that sits at ``t``'s place in the graph (with its
    forward-mode tangents)."""
    s = Tensor(t._dev._backend.copy(t._a), t._dev, t._grad_fn, t._rg)
    tan = getattr(t, "_tan", None)
    if tan:
        carry(s, dict(tan))
    return s


def _take_tangents(t, new):
    """``t`` now holds ``new``'s value: it takes ``new``'s tangents too."""
    if mode.levels:
        tan = getattr(new, "_tan", None)
        carry(t, dict(tan) if tan else {})


def _rebase(t, new, name):
    """Write ``new`` into ``t``'s storage and make ``t`` the output of ``new``'s node.

    When ``t`` is a view, its base's graph becomes "the old base with this view's positions
    replaced by the new values", so the base (and, lazily, its other views) see the change.
    Everything that can refuse is checked before the storage is touched."""
    if new.shape != t.shape:
        raise RuntimeError(
            f"gpuad: {name}: the result has shape {new.shape} but the tensor changed in place "
            f"has shape {t.shape}; an in-place op cannot change the shape"
        )
    if _overlapping(t._a):
        raise RuntimeError(
            f"gpuad: {name}: this tensor (shape {t.shape}) is a read-only view, such as one "
            "made by broadcast_to, whose elements share memory; .clone() it first"
        )
    if new.dtype != t.dtype:
        new = astype(new, t.dtype)
    t._dev._backend.setitem(t._a, Ellipsis, new._a)
    if not mode.enabled:  # only tangents to carry: the graph stays as it was
        _take_tangents(t, new)
        base = t._base
        if base is not None:
            flat = _setitem_functional(reshape(_snapshot(base), (-1,)), (view_positions(t),), t)
            _take_tangents(base, reshape(flat, base.shape))
        return
    old = t._grad_fn
    if old is not None and old.retained is not None and new._grad_fn is not None:
        new._grad_fn.retained, old.retained = old.retained, None  # .grad of the new value
    t._grad_fn = new._grad_fn
    t._rg = new._rg
    _take_tangents(t, new)
    base = t._base
    if base is not None:
        positions = view_positions(t)
        flat = _setitem_functional(reshape(_snapshot(base), (-1,)), (positions,), t)
        fresh = reshape(flat, base.shape)
        base._grad_fn, base._rg = fresh._grad_fn, fresh._rg
        _take_tangents(base, fresh)


def _overlapping(a):
    """Whether ``a`` cannot be written element by element: read-only (NumPy) or with elements
    sharing memory (a zero stride, as broadcast_to makes; CuPy has no read-only flag). An
    empty array has nothing to write (NumPy may give its axes zero strides)."""
    if not getattr(a.flags, "writeable", True):
        return True
    return a.size > 0 and any(st == 0 and n > 1 for st, n in zip(a.strides, a.shape))


def _setitem_rule_base(g, index):
    """Gradient for the old value: everything except the overwritten positions."""
    backend = g._dev._backend
    keep = backend.ones(g.shape, dtype=bool)
    backend.setitem(keep, index, False)
    return where(Tensor(keep, g._dev), g, 0)


def _setitem_jvp(ts, y, index):
    """The old value's tangent with the new value's written at ``index`` (zeros for none)."""
    t_old, t_value = ts
    if t_old is None:
        k = t_value.shape[0]
        t_old = plain(y._dev._backend.zeros((k,) + y.shape, y.dtype), y._dev)
    value = 0 if t_value is None else moveaxis(t_value, 0, -1)
    return _batch_last(_setitem_functional, t_old, batched_index(index, y.ndim), value)


_SETITEM = Op("setitem", (_setitem_rule_base, lambda g, index: g[index]), jvp=_setitem_jvp)


def _setitem_functional(old, index, value):
    backend = old._dev._backend
    out = backend.copy(old._a)
    backend.setitem(out, index, value._a if isinstance(value, Tensor) else value)
    return record(_SETITEM, (old, value), out, old._dev, (index,))


def setitem(t, index, value):
    """``t[index] = value``."""
    _check_leaf(t, "setitem")
    idx, _ = _index(index, t)
    if isinstance(value, Tensor):
        if value._dev is not t._dev:
            raise mismatch("setitem", t._dev, value._dev)
    elif value.__class__ not in SCALARS:
        value_dtype(value, "setitem")  # (NumPy would store None as nan)
        value = Tensor(t._dev.backend.asarray(value), t._dev)
    try:
        if _tracking(t, value):
            _rebase(t, _setitem_functional(_snapshot(t), idx, value), "setitem")
        else:
            t._dev._backend.setitem(t._a, idx, value._a if isinstance(value, Tensor) else value)
    except ValueError as exc:
        raise ValueError(
            f"gpuad: setitem cannot store a value of shape {getattr(value, 'shape', ())} at "
            f"{index!r} of a tensor of shape {t.shape}: {exc}"
        ) from None
    _bump(t)


def _binary_inplace(name, fn, method, symbol):
    """The in-place ``t <symbol>= other`` named ``name``: ``fn`` (the out-of-place op), and the
    backend's ``method`` writing into ``t`` where nothing records."""
    def inplace(t, other):
        _check_leaf(t, name)
        if _tracking(t, other):
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
        _bump(t)
        return t

    inplace.__name__ = inplace.__qualname__ = name
    inplace.__doc__ = (
        f"{name}(t, other): t {symbol}= other, in place; returns t, which keeps its shape, "
        "dtype and device (other must broadcast to that shape). Recorded as "
        f"t = {fn.__name__}(t, other) where a gradient is needed (a leaf that requires grad "
        "refuses while grad mode is on).")
    return inplace


add_ = _binary_inplace("add_", add, "add", "+")
sub_ = _binary_inplace("sub_", sub, "subtract", "-")
mul_ = _binary_inplace("mul_", mul, "multiply", "*")
div_ = _binary_inplace("div_", div, "true_divide", "/")
pow_ = _binary_inplace("pow_", pow, "power", "**")

_FILL = Op("fill", (_zero,), jvp=DIAGONAL)


def fill_(t, value):
    """Set every element to ``value``; the old value gets a zero gradient."""
    _check_leaf(t, "fill_")
    if value.__class__ not in SCALARS:
        value_dtype(value, "fill_")
    if _tracking(t):
        full = t._dev._backend.full(t.shape, value, dtype=t.dtype)
        _rebase(t, record(_FILL, (_snapshot(t),), full, t._dev, ()), "fill_")
    else:
        t._dev._backend.setitem(t._a, Ellipsis, value)
    _bump(t)
    return t


def zero_(t):
    """Set every element to 0 (``fill_(t, 0)``); the old value gets a zero gradient."""
    return fill_(t, 0)


def copy_(t, src):
    """Copy ``src`` (broadcast, cast, and moved from its device explicitly) into ``t``."""
    _check_leaf(t, "copy_")
    if not isinstance(src, Tensor):
        src = Tensor(t._dev.backend.asarray(src, dtype=t.dtype), t._dev)
    if src._dev is not t._dev:
        src = to_device(src, t._dev)
    if _tracking(t, src):
        # (the old value stays an input, with a zero gradient: t still requires grad after
        # a constant is copied in, as in PyTorch)
        new = broadcast_to(astype(src, t.dtype), t.shape)
        _rebase(t, _setitem_functional(_snapshot(t), (Ellipsis,), new), "copy_")
    else:
        try:
            t._dev._backend.setitem(t._a, Ellipsis, src._a)
        except ValueError:
            raise ValueError(
                f"gpuad: copy_ cannot copy shape {src.shape} into shape {t.shape}; the source "
                "must broadcast to the destination"
            ) from None
    _bump(t)
    return t
