"""Every CUDA source in kernels/ compiles with nvcc for sm_80 (A100) and sm_90 (H100), with
the header's functions instantiated for float and double (a kernel per function, as the CUDA
backend builds them). Skipped, saying so, where nvcc is not installed."""
import pathlib
import shutil
import subprocess

import pytest
from kernel_harness import KERNELS, rowwise_instances, source

ARCHS = ["sm_80", "sm_90"]


def _nvcc():
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc is not installed on this machine: the CUDA sources in kernels/ "
                    "were not compiled (install the CUDA toolkit to run this check)")
    return path


def _compile(nvcc, src, arch, tmp):
    out = pathlib.Path(tmp) / (pathlib.Path(src).stem + f"_{arch}.o")
    result = subprocess.run(
        [nvcc, f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", "-c",
         f"-I{KERNELS}", str(src), "-o", str(out)],
        capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc -arch={arch} {src} failed:\n{result.stderr}"
    assert out.stat().st_size > 0


def _sources():
    return sorted(p.name for p in KERNELS.glob("*.cu"))


@pytest.mark.parametrize("arch", ARCHS)
def test_elementwise_header_compiles(arch, tmp_path):
    nvcc = _nvcc()
    src = tmp_path / "elementwise_kernels.cu"
    src.write_text(source(device=True))
    _compile(nvcc, src, arch, tmp_path)


#: sources whose kernels are templates: a file that instantiates every one of them
INSTANCES = {"rowwise.cu": rowwise_instances}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", _sources())
def test_kernel_source_compiles(name, arch, tmp_path):
    nvcc = _nvcc()
    src = KERNELS / name
    if name in INSTANCES:
        src = tmp_path / f"{src.stem}_instances.cu"
        src.write_text(INSTANCES[name]())
    _compile(nvcc, src, arch, tmp_path)


def test_every_source_is_covered():
    assert "rowwise.cu" in _sources()
    assert set(INSTANCES) <= set(_sources())
