"""Every CUDA source in kernels/ compiles with nvcc for sm_80 (A100) and sm_90 (H100), with
the header's functions instantiated for float and double (a kernel per function, as the CUDA
backend builds them). Skipped, saying so, where nvcc is not installed."""
import pathlib
import shutil
import subprocess

import pytest
from kernel_harness import KERNELS, optim_instances, rowwise_instances, source

from gpuad.backends.kernel_table import TYPES, UNARY, elementwise_spec

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
INSTANCES = {"rowwise.cu": rowwise_instances, "optim.cu": optim_instances}


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
    assert {"rowwise.cu", "optim.cu"} <= set(_sources())
    assert set(INSTANCES) <= set(_sources())


def _cupy_like_source():
    """Every ElementwiseKernel the CUDA backend builds, wrapped the way CuPy wraps one (a
    loop over elements with the parameters as locals; float16 as cuda_fp16's __half), so
    their operation strings are compiled here too."""
    lines = ["#include <cuda_fp16.h>", "typedef __half float16;", "typedef float float32;",
             "typedef double float64;", '#include "elementwise.cuh"']
    for row in UNARY:
        n = sum(1 for p in row.params if "=" not in p)
        for function, n_in in ((f"{row.kernel}_fwd", 1), (f"{row.kernel}_bwd", 2)):
            if function.endswith("_bwd") and not row.reads:
                continue
            for dtype in TYPES:
                ins, outs, operation, name = elementwise_spec(function, dtype, n_in, n)
                params = [p.split() for p in ins.split(", ")]
                arrays = [(t, v) for t, v in params if v.startswith("a")]
                scalars = [(t, v) for t, v in params if v.startswith("p")]
                otype = outs.split()[0]
                sig = [f"const {t}* {v}_ptr" for t, v in arrays] + [f"{t} {v}" for t, v in scalars]
                sig += [f"{otype}* out_ptr", "long n"]
                loads = "".join(f"        const {t} {v} = {v}_ptr[i];\n" for t, v in arrays)
                lines.append(f"__global__ void {name}({', '.join(sig)}) {{\n"
                             f"    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; "
                             f"i < n; i += (long)blockDim.x * gridDim.x) {{\n{loads}"
                             f"        {otype} out;\n        {operation}\n"
                             f"        out_ptr[i] = out;\n    }}\n}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("arch", ARCHS)
def test_backend_elementwise_kernels_compile(arch, tmp_path):
    nvcc = _nvcc()
    src = tmp_path / "cupy_like.cu"
    src.write_text(_cupy_like_source())
    _compile(nvcc, src, arch, tmp_path)
