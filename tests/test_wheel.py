"""The built wheel carries kernels/ and finds it once installed: the wheel is built from this
checkout, installed into a fresh virtual environment, and asked for its kernel sources from
outside the checkout."""
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.network  # pip builds the wheel in an isolated environment from the index
def test_installed_wheel_finds_its_kernels(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("gpuad-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for source in ROOT.joinpath("kernels").glob("*.cu*"):
        assert f"gpuad/kernels/{source.name}" in names, source.name
    assert "gpuad/data/digits.csv.gz" in names  # the demo's data travels with the package
    assert {"gpuad/py.typed", "gpuad/_tensor_methods.pyi"} <= set(names)  # and its types
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    # NumPy from this environment (the fresh one has no index to install it from), linked
    # alone into a folder of its own, so that the import below finds the installed wheel
    numpy_dir = tmp_path / "numpy_only"
    numpy_dir.mkdir()
    site = pathlib.Path(np.__file__).resolve().parents[1]
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (numpy_dir / name).symlink_to(site / name)
    probe = ("import gpuad, gpuad.backends.kernel_sources as k;"
             "print(gpuad.__file__); print(k.kernels_dir());"
             "print(len(k.read('elementwise.cuh')), len(k.read('rowwise.cu')))")
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(numpy_dir)}).stdout.split("\n")
    assert str(env_dir) in out[0], out  # the installed copy, not this checkout
    assert out[1].startswith(str(env_dir)) and out[1].endswith(os.path.join("gpuad", "kernels"))
    sizes = [int(v) for v in out[2].split()]
    assert sizes == [len(ROOT.joinpath("kernels", n).read_text())
                     for n in ("elementwise.cuh", "rowwise.cu")]
