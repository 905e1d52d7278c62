"""python -m gpuad demo's options: --plot writes a PNG (where matplotlib is installed),
--epochs and --batch-size are honoured, and an unusable --device is a clear error."""
import pathlib
import re
import subprocess
import sys

import pytest
import tomllib

import gpuad as ad

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _demo(*args, check=True):
    return subprocess.run([sys.executable, "-m", "gpuad", "demo", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, check=check)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    out = _demo("--device", "cpu", "--epochs", "2", "--batch-size", "128", "--plot", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 epochs, batch 128" in out.stdout


def test_unusable_device_is_a_clear_error():
    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")
    out = _demo("--device", "cuda", check=False)
    assert out.returncode == 2
    assert "cannot use cuda:0" in out.stderr and "Traceback" not in out.stderr


def test_every_demo_dependency_is_used():
    """The demo extra holds what the demo imports and nothing more (the digits ship inside
    gpuad, so scikit-learn, their source, is not a dependency)."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["demo"]
    source = "\n".join(p.read_text() for p in (ROOT / "gpuad").rglob("*.py"))
    for requirement in extra:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).replace("-", "_")
        assert re.search(rf"^\s*(import|from) {name}\b", source, re.M), (
            f"the demo extra lists {requirement}, which gpuad never imports")
