"""Every public name has a docstring that says what it is (issue 17, section 4).

The public names are walked, not listed: ``__all__`` of ``gpuad`` and of every gpuad module it
reaches through ``__all__`` (``nn``, ``nn.functional``, ``nn.init``, ``optim``, ...), plus
``gpuad.autograd`` and ``gpuad.distributed``; every public class among them, with each public
method and property it defines (a subclass's override needs its own docstring); and so every
Tensor method, including the ops that :mod:`gpuad.ops.methods` installs from the registry. A
docstring must be non-empty, and its first line must say more than the name (``"relu(x): ."``
does not). The docstrings built from an op's row (:func:`gpuad.ops.define.unary`, ``binary``, the
comparisons and reductions) must contain the math the row gives.
"""
import inspect
import re
import types

import numpy as np
import pytest

import gpuad
import gpuad.autograd
import gpuad.distributed
from gpuad.backends import kernel_table
from gpuad.ops.registry import EXPORTS, METHODS
from gpuad.tensor import Tensor

ROOTS = (gpuad, gpuad.autograd, gpuad.distributed)


def _ours(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "gpuad"


def _names(mod):
    """A module's public names: its ``__all__``, else every name without an underscore."""
    names = getattr(mod, "__all__", None)
    return list(names) if names is not None else [n for n in vars(mod) if n[0] != "_"]


def _public_modules():
    """The gpuad modules reachable from the roots through their public names, roots
    included."""
    found, todo = {}, list(ROOTS)
    while todo:
        mod = todo.pop()
        if mod.__name__ in found:
            continue
        found[mod.__name__] = mod
        for name in _names(mod):
            value = getattr(mod, name, None)
            if isinstance(value, types.ModuleType) and value.__name__.startswith("gpuad"):
                todo.append(value)
    return found


def _members(cls):
    """``(defining class, name, attribute)`` for each public method or property that ``cls``
    or a gpuad base of it defines (builtins' methods, as an exception's, are not ours)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not _ours(owner):
            continue
        value = vars(owner)[name]
        if isinstance(value, (property, staticmethod, classmethod)) or callable(value):
            yield owner, name, value


def _public_objects():
    """``{label: (name, object)}`` of every public name and public class member."""
    out = {}
    classes = []
    for mod_name, mod in _public_modules().items():
        out[mod_name] = (mod_name.rpartition(".")[2], mod)
        for name in _names(mod):
            value = getattr(mod, name)
            out[f"{mod_name}.{name}"] = (name, value)
            if isinstance(value, type) and _ours(value):
                classes.append(value)
    for name, op in {**EXPORTS, **METHODS}.items():
        out.setdefault(f"gpuad.ops.{name}", (name, op))
    for cls in classes + [Tensor]:
        for owner, name, value in _members(cls):
            out[f"{owner.__module__}.{owner.__qualname__}.{name}"] = (name, value)
    return out


def _doc(obj):
    """The object's own docstring (a method's, not the one it overrides)."""
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property) and obj.__doc__ is None and obj.fget is not None:
        obj = obj.fget
    return obj.__doc__


def _problem(name, obj):
    """Why ``obj``'s docstring does not do, or None."""
    doc = _doc(obj)
    if not doc or not doc.strip():
        return "no docstring"
    first = doc.strip().splitlines()[0]
    # a leading "name(args)" is the signature, not a description
    rest = re.sub(rf"^\W*{re.escape(name)}\s*(\([^)]*\))?", "", first)
    words = [w for w in re.findall(r"\w+", rest) if w.lower() not in (name.lower(), "a", "an",
                                                                     "the")]
    if not words:
        return f"its first line {first!r} says nothing beyond the name"
    return None


_DATA_TYPES = (np.dtype,)  # a public name bound to data: documented by its type (the dtypes)


def _documentable(obj):
    return isinstance(obj, (types.ModuleType, type, property, staticmethod, classmethod)) or (
        callable(obj))


def test_public_modules_declare_their_names():
    """A public module says what is public in ``__all__`` (so imports and typing helpers it
    uses are not), and each name there exists."""
    modules = _public_modules()
    assert {"gpuad", "gpuad.nn", "gpuad.nn.functional", "gpuad.nn.init", "gpuad.optim",
            "gpuad.autograd", "gpuad.cuda"} <= set(modules)
    for name, mod in modules.items():
        assert isinstance(getattr(mod, "__all__", None), list), f"{name} has no __all__"
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_every_public_name_has_a_docstring():
    objects = _public_objects()
    assert len(objects) > 400  # (the walk reached the ops, the Tensor methods, the classes)
    problems, data = [], []
    for label, (name, obj) in sorted(objects.items()):
        if not _documentable(obj):
            if not isinstance(obj, _DATA_TYPES):
                data.append(f"{label} ({type(obj).__name__})")
            continue
        why = _problem(name, obj)
        if why:
            problems.append(f"{label}: {why}")
    assert not data, "public names bound to data that no docstring can describe:\n" + (
        "\n".join(data))
    assert not problems, f"{len(problems)} public names lack a docstring:\n" + "\n".join(
        problems)


def test_every_tensor_method_and_operator_is_walked():
    """The walk sees every op installed as a Tensor method, and every installed public
    attribute (so the Tensor's API cannot grow past it)."""
    walked = {label.rpartition(".")[2] for label in _public_objects()
              if ".Tensor." in label}
    assert set(METHODS) <= walked
    public = {n for n in dir(Tensor) if not n.startswith("_")
              and (callable(getattr(Tensor, n)) or isinstance(inspect.getattr_static(
                  Tensor, n), property))}
    assert public <= walked, public - walked


def test_typing_helpers_are_private():
    """No public module exports a type alias or a typing name (``Callable``, a Literal
    alias): those stay private, or in :mod:`gpuad._typing`."""
    for name, mod in _public_modules().items():
        for n in _names(mod):
            value = getattr(mod, n)
            origin = getattr(value, "__module__", None)
            assert origin not in ("typing", "collections.abc", "types"), f"{name}.{n}"


def _row_ops():
    """``(name, op, math)`` for each op whose docstring a factory builds from its row."""
    ops = {id(op): op for op in [*EXPORTS.values(), *METHODS.values()]}
    out = [(op.__name__, op, op.math) for op in ops.values() if hasattr(op, "math")]
    out += [(row.name, row.op, row.doc) for row in kernel_table.UNARY]
    return out


def test_row_docstrings_state_the_rows_math():
    rows = _row_ops()
    # unary, binary, comparison, classification and reduction rows all reach the check
    names = {name for name, _, _ in rows}
    assert {"relu", "add", "less", "isnan", "sum", "leaky_relu"} <= names
    for name, op, math in rows:
        assert math and math.strip(), f"{name}: its row gives no math"
        first = op.__doc__.split("\n\n")[0]
        assert math in first, f"{name}: the docstring {first!r} lacks the row's {math!r}"


def test_kinks_state_the_derivative():
    """A unary op with a kink or a step says what its derivative is there."""
    for name in ("abs", "relu", "sqrt", "sign", "floor", "ceil", "round", "leaky_relu", "elu"):
        doc = getattr(gpuad, name).__doc__.split("\n\n")[0]
        assert re.search(r"derivative|gradient", doc), (name, doc)


@pytest.mark.parametrize("doc, ok", [
    (None, False), ("   ", False), ("relu(x): .", False), ("Relu.", False),
    ("relu(x): max(x, 0).", True), ("neg(x): -x.", True), ("The rectifier.", True),
])
def test_the_check_itself(doc, ok):
    def relu(x):
        pass

    relu.__doc__ = doc
    assert (_problem("relu", relu) is None) == ok


def test_every_public_function_and_class_of_a_module_is_in_its_all():
    """A function or class a public module defines without an underscore is in its
    ``__all__`` (so the walk above sees it, and its docstring is checked)."""
    for name, mod in _public_modules().items():
        listed = set(_names(mod))
        defined = [n for n, v in vars(mod).items() if not n.startswith("_")
                   and (inspect.isfunction(v) or inspect.isclass(v))
                   and getattr(v, "__module__", None) == mod.__name__]
        missing = sorted(set(defined) - listed)
        assert not missing, f"{name} defines {missing} but its __all__ does not list them"
