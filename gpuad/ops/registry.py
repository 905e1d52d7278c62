"""The public ops, registered where each is defined: the one list that the exports of
``gpuad.ops`` (and so of ``gpuad``), the Tensor methods and the op docstrings derive from.

An op module marks each public op with :func:`public` (a decorator, or a call on a factory's
result). ``gpuad.ops`` star-imports the op modules, whose ``__all__`` is :func:`exports` of
their globals; ``ops.methods`` attaches every op registered with ``method`` to Tensor.
"""
from collections.abc import Callable
from typing import Any

EXPORTS: dict[str, Callable[..., Any]] = {}  #: public name -> op, in the order defined
METHODS: dict[str, Callable[..., Any]] = {}  #: Tensor method name -> op


def public(fn: Any = None, *, name: str | None = None, method: bool | str = False,
           doc: str | None = None) -> Any:
    """Register ``fn`` as the public op ``name`` (default: its ``__name__``), found as
    ``gpuad.<name>``; ``method`` True
    (or a name) also makes it a Tensor method; ``doc`` becomes its docstring where it has
    none. Returns ``fn``, so it works as ``@public`` or ``@public(method=True)``."""
    if fn is None:
        return lambda f: public(f, name=name, method=method, doc=doc)
    name = name or fn.__name__
    if name in EXPORTS and EXPORTS[name] is not fn:
        raise ValueError(f"gpuad.ops: two ops are named {name!r}")
    if doc and not fn.__doc__:
        fn.__doc__ = doc
    if fn not in EXPORTS.values():
        # Found where users find it, whatever factory made it: pickle (and so multiprocessing,
        # checkpoints of a module holding an op) looks ops up as gpuad.<name>.
        fn.__module__, fn.__qualname__ = "gpuad", name
    EXPORTS[name] = fn
    if method:
        METHODS[name if method is True else str(method)] = fn
    return fn


def exports(namespace: dict[str, Any]) -> list[str]:
    """The public ops that the module whose globals are ``namespace`` holds (its ``__all__``:
    ``__all__ = exports(globals())`` at its end)."""
    return [name for name, fn in EXPORTS.items() if namespace.get(name) is fn]
