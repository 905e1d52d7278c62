"""python -m gpuad demo's options: --plot writes a PNG (where matplotlib is installed),
--epochs and --batch-size are honoured, and an unusable --device is a clear error."""
import pathlib
import subprocess
import sys

import pytest

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
