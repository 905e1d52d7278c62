"""Type information: the typed example runs and is right, mypy passes on gpuad and on it
(where mypy is installed: the test extra has it), mypy rejects misuse of the annotated API,
and the stub of the ops installed on Tensor declares exactly what is installed."""
import ast
import importlib.util
import inspect
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from gpuad.tensor import Tensor

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "typed_usage.py"
STUB = ROOT / "gpuad" / "_tensor_methods.pyi"


def test_typed_example_runs_and_is_right():
    pytest.importorskip("safetensors")
    spec = importlib.util.spec_from_file_location("typed_usage", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    got = example.main()
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(got["backward"], 2 * x + 2, rtol=1e-6)
    np.testing.assert_allclose(got["grad"], 3 * x**2, rtol=1e-6)
    assert got["tape"] == pytest.approx(6.0)
    np.testing.assert_allclose(got["jvp"], np.cos([0.0, 1.0]) * [1.0, 2.0], rtol=1e-6)
    for name in ("sgd", "adam"):
        losses = got[name]
        assert len(losses) == 30 and all(math.isfinite(v) for v in losses), name
        assert losses[-1] < 0.2 * losses[0], (name, losses)
    assert got["checkpoint"] == 0.0


def _mypy(*args):
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]')")
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_mypy_passes_on_gpuad_and_the_example():
    out = _mypy()  # the files and settings of pyproject's [tool.mypy]
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


MISUSE = """\
import gpuad as ad
from gpuad import nn, optim
x = ad.zeros(2, 3, requires_grad=True)
y: ad.Tensor = (x * 2 + 1).sum(axis=0).exp()
x.sum(keepdims="yes")
x.backward(retain_graph="no")
n: int = x + 1
nn.Linear("2", 3)
optim.SGD(nn.Linear(2, 3).parameters(), lr="fast")
ad.tensor([1.0], device=3)
g: ad.Tensor = x.grad
layer: nn.Linear = nn.Linear(2, 3).to("cpu").train()
first: nn.Linear = nn.Sequential(nn.Linear(2, 3))[0]
maybe: ad.Tensor = ad.grad(x.sum(), x, allow_unused=True)[0]
sure: ad.Tensor = ad.grad(x.sum(), x)[0]
"""


def test_mypy_rejects_misuse_of_the_annotated_api(tmp_path):
    """Each line from the fifth but two is a mistake the annotations make visible (a
    Sequential's item is a Module, not a Linear; ``grad`` with ``allow_unused`` may give
    None); the others are right."""
    program = tmp_path / "misuse.py"
    program.write_text(MISUSE)
    out = _mypy("--config-file", "pyproject.toml", str(program))
    # (by file name: mypy's cache may report the folder of an earlier run of the same text)
    lines = {int(n) for n in re.findall(r"misuse\.py:(\d+): error:", out.stdout)}
    assert lines == {5, 6, 7, 8, 9, 10, 11, 13, 14}, out.stdout


def _stub_methods():
    """The stub's declarations: name -> [(parameter, kind, has a default)] after ``self``."""
    (cls,) = [n for n in ast.parse(STUB.read_text()).body if isinstance(n, ast.ClassDef)]
    out = {}
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef):
            a = fn.args
            params = [(p.arg, "positional", i >= len(a.args) - len(a.defaults))
                      for i, p in enumerate(a.args)][1:]
            if a.vararg:
                params.append((a.vararg.arg, "*", False))
            params += [(p.arg, "keyword", d is not None)
                       for p, d in zip(a.kwonlyargs, a.kw_defaults)]
            if a.kwarg:
                params.append((a.kwarg.arg, "**", False))
            out[fn.name] = params
    return out


_KINDS = {inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
          inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.KEYWORD_ONLY: "keyword",
          inspect.Parameter.VAR_KEYWORD: "**"}


def _installed_methods():
    """What gpuad.ops installs on Tensor: name -> its parameters after the tensor itself."""
    out = {}
    for name, value in vars(Tensor).items():
        fn = value.fget if isinstance(value, property) else value
        module = getattr(fn, "__module__", "")  # a public op's is "gpuad" (ops/registry.py)
        if module.startswith("gpuad.ops") or module == "gpuad":
            params = list(inspect.signature(fn).parameters.values())[1:]
            out[name] = [(p.name, _KINDS[p.kind], p.default is not p.empty) for p in params]
    return out


def test_stub_declares_exactly_the_installed_methods():
    stub, installed = _stub_methods(), _installed_methods()
    assert sorted(set(installed) - set(stub)) == [], "installed on Tensor, not declared"
    assert sorted(set(stub) - set(installed)) == [], "declared, not installed on Tensor"
    wrong = {name: (stub[name], installed[name]) for name in stub
             if stub[name] != installed[name]}
    assert wrong == {}, "parameters differ (stub, installed)"
