"""The layering of gpuad, measured from the code: the import graph (imports inside functions
included) read with ``ast``, checked against one table of floors.

A module may import from its own floor and the floors below, never from a floor above; no
modules import each other in a cycle (imports under ``if TYPE_CHECKING:`` do not count:
they never run, they only name types for annotations); the autograd core reaches neither the
ops nor nn/optim, and touches no array library (it works on whatever the backends hand it).
Files stay short: 400 lines for the library, 600 for the tests.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gpuad"

#: The floors, lowest first. A name stands for that module and, ending in ".", for every
#: module of that package (the package itself included); the longest matching name wins.
FLOORS = (
    ("backends", ("gpuad.backends.", "gpuad._frames", "gpuad.errors", "gpuad.dtypes")),
    ("devices", ("gpuad.devices", "gpuad.cuda", "gpuad.cuda_graph", "gpuad.cuda_graph_errors",
                 "gpuad.printing")),
    ("tensor", ("gpuad.tensor", "gpuad._typing", "gpuad.convert", "gpuad.creation",
                "gpuad.checkpoint")),
    ("autograd core", ("gpuad.autograd", "gpuad.autograd.collector", "gpuad.autograd.grad_mode",
                       "gpuad.autograd.node",
                       "gpuad.autograd.structure", "gpuad.autograd.forward",
                       "gpuad.autograd.record", "gpuad.autograd.unbroadcast",
                       "gpuad.autograd.accumulate", "gpuad.autograd.anomaly",
                       "gpuad.autograd.engine", "gpuad.autograd.linearize",
                       "gpuad.autograd.custom", "gpuad.autograd.custom_gradient",
                       "gpuad.autograd.function", "gpuad.autograd.callbacks")),
    ("ops", ("gpuad.ops.",)),
    ("transforms", ("gpuad.autograd.tape", "gpuad.autograd.functional",
                    "gpuad.autograd.rows", "gpuad.gradcheck", "gpuad.variables")),
    ("nn/optim", ("gpuad.nn.", "gpuad.optim.", "gpuad.data", "gpuad.distributed.")),
    ("capture", ("gpuad.capture.",)),
    ("CLI", ("gpuad", "gpuad.__main__", "gpuad._cli", "gpuad.demo")),
)
CORE = "autograd core"
#: what the autograd core must not import: floors above it that it could otherwise reach
NOT_FROM_CORE = ("gpuad.ops", "gpuad.nn", "gpuad.optim")
ARRAY_LIBRARIES = ("numpy", "cupy", "cupyx")
LIBRARY_LIMIT, TEST_LIMIT = 400, 600


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_module(name):
    return name in MODULES


def _lazy_names(path):
    """A package's names imported on first use: its ``_TRANSFORMS`` dict (name -> module)."""
    for node in ast.parse(path.read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and [getattr(t, "id", None) for t in node.targets] == ["_TRANSFORMS"]):
            return ast.literal_eval(node.value)
    return None


#: package -> {name: the module of the package a ``from package import name`` loads}
LAZY = {name: lazy for name, path in MODULES.items() if path.name == "__init__.py"
        and (lazy := _lazy_names(path)) is not None}


def _imports(name, path):
    """``(gpuad modules, other top-level packages)`` that module ``name`` imports, anywhere
    in it (inside functions too). ``from X import y`` counts as module ``X.y`` when that is a
    module, else as ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours, others = set(), set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [(base, [a.name for a in node.names])]
        else:
            continue
        for base, names in targets:
            if base.split(".")[0] != "gpuad":
                others.add(base.split(".")[0])
                continue
            lazy = LAZY.get(base, {})
            subs = [f"{base}.{n}" for n in names if _is_module(f"{base}.{n}")]
            subs += [f"{base}.{lazy[n]}" for n in names if n in lazy]
            ours.update(subs)
            if len(subs) < len(names) or not names:
                ours.add(base)
    ours.discard(name)
    return ours, others


def _is_type_checking(node):
    """Whether ``node`` is ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id.endswith("TYPE_CHECKING")) or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _packages_loaded_with(module, importer):
    """The packages whose ``__init__`` importing ``module`` runs first, for ``importer``: each
    package above ``module`` except the root (``gpuad``'s own ``__init__``, the public facade,
    is what every import of gpuad starts from) and except those that hold ``importer`` (already
    loaded when it runs)."""
    parts = module.split(".")
    above = (".".join(parts[:n]) for n in range(2, len(parts)))
    return {p for p in above if p in MODULES and not (importer + ".").startswith(p + ".")}


GRAPH, FOREIGN = {}, {}
for _name, _path in MODULES.items():
    GRAPH[_name], FOREIGN[_name] = _imports(_name, _path)
for _name, _targets in GRAPH.items():
    _targets |= {p for d in list(_targets) for p in _packages_loaded_with(d, _name)}


def floor_of(name):
    """The index of the floor ``name`` is on (None: on none)."""
    best, found = -1, None
    for i, (_, entries) in enumerate(FLOORS):
        for entry in entries:
            hit = (name == entry.rstrip(".") or name.startswith(entry)) if entry.endswith(".") \
                else name == entry
            if hit and len(entry) > best:
                best, found = len(entry), i
    return found


def _cycles():
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = iter(range(len(GRAPH) * 2))

    def visit(v):
        index[v] = low[v] = next(counter)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    """The reader sees imports at the top, inside functions and of the ``from . import x``
    form (which counts as module ``x``)."""
    assert "gpuad.autograd.record" in GRAPH["gpuad.ops.elementwise"]
    assert "gpuad.ops.shape" in GRAPH["gpuad.ops.methods"]  # from . import ..., shape
    assert "gpuad.creation" in GRAPH["gpuad.ops._args"]  # inside to_tensor
    assert "numpy" in FOREIGN["gpuad.backends.numpy_backend"]
    # (tensor.py names Node for annotations only, under TYPE_CHECKING)
    assert "gpuad.autograd.node" not in GRAPH["gpuad.tensor"]
    # importing gpuad.autograd.record runs gpuad/autograd/__init__.py first
    assert "gpuad.autograd" in GRAPH["gpuad.ops.elementwise"]
    assert "gpuad.ops" not in GRAPH["gpuad.ops.methods"]  # its own package: already loaded


def test_a_name_a_package_loads_on_first_use_counts_as_its_module(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("from gpuad.autograd import GradientTape, grad\n")
    ours, _ = _imports("gpuad.probe", path)
    assert {"gpuad.autograd", "gpuad.autograd.tape"} <= ours
    assert "gpuad.autograd.engine" not in ours  # (grad is imported eagerly by the package)


def test_every_module_is_on_a_floor():
    missing = sorted(m for m in MODULES if floor_of(m) is None)
    assert not missing, f"modules on no floor (add them to FLOORS): {missing}"


def test_no_import_cycle():
    cycles = _cycles()
    report = []
    for members in cycles:
        report.append(f"a cycle of {len(members)} modules:")
        report += [f"  {m} -> {sorted(GRAPH[m] & members)}" for m in sorted(members)]
    assert not cycles, "\n".join(report)


def test_imports_go_down_the_floors():
    upward = [f"{m} ({FLOORS[floor_of(m)][0]}) -> {d} ({FLOORS[floor_of(d)][0]})"
              for m in sorted(GRAPH) for d in sorted(GRAPH[m])
              if d in MODULES and floor_of(m) is not None and floor_of(d) is not None
              and floor_of(d) > floor_of(m)]
    assert not upward, "imports that climb a floor:\n" + "\n".join(upward)


def _core():
    core = FLOORS[[name for name, _ in FLOORS].index(CORE)][1]
    return [m for m in MODULES if m in core]


def test_the_autograd_core_does_not_import_ops_nn_or_optim():
    bad = [f"{m} -> {d}" for m in _core() for d in sorted(GRAPH[m])
           if any(d == p or d.startswith(p + ".") for p in NOT_FROM_CORE)]
    assert _core() and not bad, bad


def test_the_autograd_core_imports_no_array_library():
    bad = [f"{m} imports {sorted(FOREIGN[m] & set(ARRAY_LIBRARIES))}" for m in _core()
           if FOREIGN[m] & set(ARRAY_LIBRARIES)]
    assert not bad, bad


def _example_lines(text):
    """The line numbers of docstring examples: in a module's, class's or function's docstring,
    each ``>>>`` line and what follows it up to a blank line or the docstring's end."""
    lines, found = text.splitlines(), set()
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)) or ast.get_docstring(node) is None:
            continue
        doc = node.body[0]
        inside = False
        for number in range(doc.lineno, doc.end_lineno + 1):
            stripped = lines[number - 1].strip()
            inside = stripped.startswith(">>>") or (inside and bool(stripped))
            if inside:
                found.add(number)
    return found


def _lines(path):
    """A file's length, not counting its docstring examples (every public name has one, and
    they are documentation, not code to split)."""
    text = path.read_text()
    return len(text.splitlines()) - len(_example_lines(text))


# The limits apply to every file of the package and of tests/ (tests/*/ too: the stand-in).
@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_library_file_length(path):
    assert _lines(path) <= LIBRARY_LIMIT, f"{path.name}: {_lines(path)} lines"


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_test_file_length(path):
    assert _lines(path) <= TEST_LIMIT, f"{path.name}: {_lines(path)} lines"


def test_the_autograd_package_names_what_it_promises():
    """gpuad.autograd imports only the core and finds the transforms on first use
    (``_TRANSFORMS``); each public name is the object itself, never a submodule of that name,
    and a transform is named where the floors put it."""
    import inspect

    import gpuad.autograd as autograd
    for name in autograd.__all__:
        value = getattr(autograd, name)
        assert not inspect.ismodule(value), name
        assert value.__module__.startswith("gpuad.autograd."), name
    lazy = {f"gpuad.autograd.{m}" for m in autograd._TRANSFORMS.values()}
    assert LAZY == {"gpuad.autograd": autograd._TRANSFORMS}
    assert {FLOORS[floor_of(m)][0] for m in lazy} == {"transforms"}
    assert set(autograd._TRANSFORMS) <= set(dir(autograd))
    assert not [n for n in dir(autograd) if n.startswith("_") and not n.startswith("__")]
    with pytest.raises(AttributeError, match="no attribute 'Tape'"):
        autograd.Tape  # noqa: B018
