"""Every script in examples/ runs to the end (its own asserts included), prints what it shows,
says in its docstring how to run it, and is listed in examples/README.md.

The scripts are found by globbing the folder, so a new example is tested without being named
here. Each runs in its own process with the environment as it is (``GPUAD_DEVICE`` included):
on a GPU machine they take the CUDA path.
"""
import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if p.name != "typed_usage.py")
# typed_usage.py is run and checked by tests/test_typing.py (it is in the README list below).

NEEDS = {"checkpoint_resume.py": "safetensors"}  # scripts that cannot run without a package


def test_examples_are_found():
    assert len(SCRIPTS) >= 6, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script):
    needed = NEEDS.get(script.name)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{script.name} needs {needed}")
    # The checkout's gpuad first, whatever is installed.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": path})
    assert r.returncode == 0, (f"{script.name} exited with {r.returncode}\n"
                               f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
    assert r.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_says_how_to_run_it(script):
    doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
    assert doc, f"{script.name} has no module docstring"
    assert f"python examples/{script.name}" in doc, doc


def test_readme_lists_every_example():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in sorted(EXAMPLES.glob("*.py")) if f"`{p.name}`" not in readme]
    assert not missing, f"examples/README.md does not mention {missing}"
