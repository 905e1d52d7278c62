"""Every function of kernels/elementwise.cuh compiles with nvcc for sm_80 (A100) and sm_90
(H100), instantiated for float and double, with every warning an error. Skipped, saying so,
where nvcc is not installed.

Why nvcc still, next to tests/test_kernels_nvrtc.py (which compiles every kernel the CUDA
backend builds, with NVRTC, exactly as CuPy generates it): this check also covers the
header's binary and selection functions (add, mul, where, clip ...), which the host tests
run but no CUDA kernel of the backend uses yet, so NVRTC never sees them; and nvcc compiles
the header's ``__host__ __device__`` functions in its host pass too. The nvcc compiles of
rowwise.cu and optim.cu and of a copy of CuPy's elementwise wrapper added nothing NVRTC does
not check on the real sources, and were removed.
"""
import pathlib
import shutil
import subprocess

import pytest
from kernel_harness import KERNELS, source

ARCHS = ["sm_80", "sm_90"]


def _nvcc():
    path = shutil.which("nvcc")
    if path is None:
        pytest.skip("nvcc is not installed on this machine: kernels/elementwise.cuh was not "
                    "compiled with nvcc (install the CUDA toolkit to run this check)")
    return path


@pytest.mark.parametrize("arch", ARCHS)
def test_elementwise_header_compiles(arch, tmp_path):
    nvcc = _nvcc()
    src = tmp_path / "elementwise_kernels.cu"
    src.write_text(source(device=True))
    out = pathlib.Path(tmp_path) / f"elementwise_kernels_{arch}.o"
    result = subprocess.run(
        [nvcc, f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", "-c",
         f"-I{KERNELS}", str(src), "-o", str(out)],
        capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc -arch={arch} {src} failed:\n{result.stderr}"
    assert out.stat().st_size > 0
