"""Builds plain C wrappers, loaded with ctypes, around every function of kernels/ that the CUDA
backend launches: the elementwise functions the kernel table names (over arrays), the row-wise
math one row at a time and the optimizer updates one element at a time."""
import ctypes
import pathlib
import shutil
import subprocess

import numpy as np

from gpuad.backends.kernel_table import kernel_rows, launched, row_mode_defines

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "kernels"
CTYPES = {"f32": ("float", np.float32), "f64": ("double", np.float64)}


def _functions():
    """(function, array arguments, double parameters) of every function the table launches."""
    out = []
    for row in kernel_rows():
        for function, n_inputs in launched(row):
            arrays = ["x"] if n_inputs == 1 else ["g", "s"]
            out.append((function, arrays, len(row.params)))
    return out


def source():
    """C++ source wrapping every launched elementwise function for float and double:
    ``k_<function>_<f32|f64>(arrays..., out, n, params...)``."""
    lines = ['#include "elementwise.cuh"', "", 'extern "C" {']
    for name, arrays, n in _functions():
        call = ", ".join([f"{a}[i]" for a in arrays] + [f"T(p{i})" for i in range(n)])
        for suffix, (ctype, _) in CTYPES.items():
            args = [f"const {ctype}* {a}" for a in arrays] + [f"{ctype}* out", "long n"]
            args += [f"double p{i}" for i in range(n)]
            lines.append(f"void k_{name}_{suffix}({', '.join(args)}) {{\n"
                         f"    typedef {ctype} T;\n"
                         f"    for (long i = 0; i < n; ++i) out[i] = gpuad::{name}<T>({call});\n}}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def host_compiler():
    for cc in ("g++", "c++", "clang++"):
        path = shutil.which(cc)
        if path:
            return path
    return None


def build_host_library(tmp):
    """Compile the wrappers for the host into a shared library; returns the ctypes handle."""
    src = pathlib.Path(tmp) / "harness.cpp"
    src.write_text(source())
    lib = pathlib.Path(tmp) / "harness.so"
    # -ffp-contract=off: no fused multiply-adds, so the host evaluates the formulas as written
    subprocess.run([host_compiler(), "-O2", "-std=c++17", "-shared", "-fPIC",
                    "-ffp-contract=off", f"-I{KERNELS}", str(src), "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))


class Harness:
    """Calls the host-compiled kernel functions on NumPy arrays."""

    def __init__(self, lib):
        self.lib = lib

    def __call__(self, name, dtype, *arrays, params=()):
        suffix = "f32" if np.dtype(dtype) == np.float32 else "f64"
        arrays = [np.ascontiguousarray(a, dtype=dtype) for a in arrays]
        n = arrays[0].size
        out = np.empty(n, dtype=dtype)
        fn = getattr(self.lib, f"k_{name}_{suffix}")
        ptr = ctypes.c_void_p
        fn.argtypes = [ptr] * (len(arrays) + 1) + [ctypes.c_long] + [ctypes.c_double] * len(
            params)
        fn.restype = None
        fn(*[a.ctypes.data_as(ptr) for a in arrays], out.ctypes.data_as(ptr), n,
           *[float(p) for p in params])
        return out


def rowwise_source():
    """Host wrappers running the row-wise math of kernels/rowwise.cuh one row at a time (a
    group of one thread), and the optimizer updates of kernels/optim.cuh one element at a
    time, for float and double."""
    lines = [row_mode_defines(), '#include "rowwise.cuh"', '#include "optim.cuh"',
             'extern "C" {']
    for suffix, (t, _) in CTYPES.items():
        lines.append(f"""
void k_sgd_update_{suffix}({t}* p, const {t}* g, {t}* buf, const double* hyper, long long n) {{
    for (long long i = 0; i < n; ++i) gpuad::sgd_element<{t}, {t}>(p, g, buf, hyper, i);
}}
void k_adam_update_{suffix}({t}* p, const {t}* g, {t}* m, {t}* v, const double* hyper,
                          long long n) {{
    for (long long i = 0; i < n; ++i) gpuad::adam_element<{t}, {t}>(p, g, m, v, hyper, i);
}}""")
        lines.append(f"""
void k_softmax_{suffix}(int mode, const {t}* x, {t}* out, long long rows, long long cols) {{
    for (long long r = 0; r < rows; ++r)
        gpuad::softmax_row<{t}>(gpuad::Serial(), mode, x + r * cols,
                                 out + (mode == GPUAD_LOGSUMEXP ? r : r * cols), cols);
}}
void k_softmax_backward_{suffix}(int mode, const {t}* g, const {t}* y, const {t}* x, {t}* dx,
                               long long rows, long long cols) {{
    for (long long r = 0; r < rows; ++r) {{
        long long one = mode == GPUAD_LOGSUMEXP ? r : r * cols;
        gpuad::softmax_row_backward<{t}>(gpuad::Serial(), mode, g + one, y + one,
                                          x + r * cols, dx + r * cols, cols);
    }}
}}
void k_cross_entropy_{suffix}(const {t}* x, const long long* labels, long long ignore,
                            double eps, {t}* loss, {t}* dlogits, long long rows, long long cols) {{
    for (long long r = 0; r < rows; ++r)
        gpuad::cross_entropy_row<{t}>(gpuad::Serial(), x + r * cols, (long long)labels[r],
                                       (long long)ignore, ({t})eps, loss + r,
                                       dlogits + r * cols, cols);
}}""")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_rowwise_library(tmp):
    src = pathlib.Path(tmp) / "rowwise_harness.cpp"
    src.write_text(rowwise_source())
    lib = pathlib.Path(tmp) / "rowwise_harness.so"
    subprocess.run([host_compiler(), "-O2", "-std=c++17", "-shared", "-fPIC",
                    "-ffp-contract=off", f"-I{KERNELS}", str(src), "-o", str(lib)],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(lib))
