"""Every warning gpuad gives names the user's line (the first frame outside gpuad), not a line
inside gpuad: warnings.warn is always called with stacklevel=user_stacklevel()."""
import ast
import pathlib
import warnings

import pytest

import gpuad as ad
from gpuad import devices
from gpuad.devices import _Policy

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _only_warning(record, category):
    (w,) = [w for w in record if issubclass(w.category, category)]
    return w


def _here(w):
    """The warning names this file, at the line of the call."""
    assert pathlib.Path(w.filename).resolve() == pathlib.Path(__file__).resolve(), w.filename
    return w.lineno


@pytest.fixture
def fallback(monkeypatch):
    """CUDA unusable (on any machine) and CPU fallback on; restores the policy."""
    saved = (_Policy.default, _Policy.fallback, _Policy.warned)
    monkeypatch.setattr(devices, "cuda_unavailable_reason", lambda index: "no GPU (test)")
    ad.set_cpu_fallback(True)
    _Policy.warned = False
    yield
    _Policy.default, _Policy.fallback, _Policy.warned = saved


@pytest.mark.parametrize("make", [
    lambda: ad.ones(2, device="cuda"),
    lambda: ad.tensor([1.0], device="cuda:0"),
    lambda: ad.randn(3, device="cuda"),
    lambda: ad.zeros_like(ad.zeros(2), device="cuda"),
    lambda: ad.tensor([1.0]).to("cuda"),
    lambda: ad.tensor([1.0]).cuda(),
    lambda: ad.nn.Linear(2, 2).to("cuda"),
    lambda: ad.set_default_device("cuda"),
], ids=["ones", "tensor", "randn", "zeros_like", "to", "cuda", "module_to", "default"])
def test_cpu_fallback_warning_names_the_users_line(fallback, make):
    with pytest.warns(RuntimeWarning, match="falling back to the CPU") as record:
        make()
    _here(_only_warning(record, RuntimeWarning))


def test_tape_warnings_name_the_users_line():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with pytest.warns(ad.GradientTapeWarning, match="integer") as record:
        with ad.GradientTape() as tape:
            tape.watch(ad.tensor([1, 2]))
    assert _here(_only_warning(record, ad.GradientTapeWarning)) == \
        test_tape_warnings_name_the_users_line.__code__.co_firstlineno + 4
    with pytest.warns(ad.GradientTapeWarning, match=r"\.numpy\(\)") as record:
        with ad.GradientTape() as tape:
            (x * 2).numpy()
    assert _here(_only_warning(record, ad.GradientTapeWarning)) == \
        test_tape_warnings_name_the_users_line.__code__.co_firstlineno + 9


def _warn_calls(tree):
    """The warnings.warn(...) (or warn(...)) calls in a module's syntax tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (isinstance(f, ast.Attribute) and f.attr == "warn") or \
                    (isinstance(f, ast.Name) and f.id == "warn"):
                yield node


def test_every_warning_in_gpuad_uses_user_stacklevel():
    """(So a warning added later points at the user's line too.)"""
    calls = [(path.name, call) for path in sorted((ROOT / "gpuad").rglob("*.py"))
             for call in _warn_calls(ast.parse(path.read_text()))]
    assert len(calls) >= 2
    for name, call in calls:
        (level,) = [k.value for k in call.keywords if k.arg == "stacklevel"] or [None]
        assert isinstance(level, ast.Call) and ast.unparse(level) == "user_stacklevel()", (
            f"{name}:{call.lineno}: warnings.warn without stacklevel=user_stacklevel()")


def test_user_stacklevel_outside_gpuad_is_the_caller():
    from gpuad._frames import user_stacklevel

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.warn("here", UserWarning, stacklevel=user_stacklevel())
    assert user_stacklevel() == 1 and _here(record[0])
