"""Nested structures of tensors (lists, tuples, named tuples, dicts), as TensorFlow's ``nest``:
flatten them to a list of leaves, and rebuild the same structure around new leaves. Dicts are
walked in sorted key order (their keys must sort), so two dicts with the same keys pair up
whatever order they were written in."""


def _keys(d):
    try:
        return sorted(d)
    except TypeError:
        raise TypeError(
            f"gpuad: the keys of a dict of tensors must sort, so that two dicts pair up by key "
            f"(as in TensorFlow's nest); got keys {list(d)!r}. Use keys of one type"
        ) from None


def flatten(struct):
    """The leaves of ``struct`` in order; a leaf is anything not a list, tuple or dict."""
    out = []
    stack = [struct]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item[k] for k in reversed(_keys(item)))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def unflattener(struct):
    """A function that puts a flat list of new leaves back into ``struct``'s shape."""

    def rebuild(leaves):
        return _fill(struct, iter(leaves))

    return rebuild


def _fill(struct, it):
    if isinstance(struct, dict):
        filled = {k: _fill(struct[k], it) for k in _keys(struct)}
        pairs = [(k, filled[k]) for k in struct]  # the caller's key order
        try:
            return type(struct)(pairs)
        except TypeError:  # a dict subclass with another constructor (defaultdict)
            return dict(pairs)
    if isinstance(struct, tuple) and hasattr(struct, "_fields"):  # a named tuple
        return type(struct)(*[_fill(v, it) for v in struct])
    if isinstance(struct, (list, tuple)):
        return type(struct)(_fill(v, it) for v in struct)
    return next(it)
