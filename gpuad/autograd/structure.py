"""Nested structures of tensors (lists, tuples, named tuples, dicts), as TensorFlow's ``nest``:
flatten them to a list of leaves, and rebuild the same structure around new leaves."""


def flatten(struct):
    """The leaves of ``struct`` in order (dicts by insertion order); a leaf is anything that is
    not a list, tuple or dict."""
    out = []
    stack = [struct]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def unflattener(struct):
    """A function that puts a flat list of new leaves back into ``struct``'s shape."""

    def rebuild(leaves):
        it = iter(leaves)
        return _fill(struct, it)

    return rebuild


def _fill(struct, it):
    if isinstance(struct, dict):
        return type(struct)((k, _fill(v, it)) for k, v in struct.items())
    if isinstance(struct, tuple) and hasattr(struct, "_fields"):  # a named tuple
        return type(struct)(*[_fill(v, it) for v in struct])
    if isinstance(struct, (list, tuple)):
        return type(struct)(_fill(v, it) for v in struct)
    return next(it)
