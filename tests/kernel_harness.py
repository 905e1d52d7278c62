"""Builds wrappers around every function of kernels/elementwise.cuh that the kernel table
uses: plain C functions over arrays for the host (loaded with ctypes), or ``__global__``
kernels for nvcc's compile check. One generator, so both see the same calls."""
import ctypes
import pathlib
import shutil
import subprocess

import numpy as np

from gpuad.backends.kernel_table import BINARY, SELECTION, UNARY

KERNELS = pathlib.Path(__file__).resolve().parents[1] / "kernels"
CTYPES = {"f32": ("float", np.float32), "f64": ("double", np.float64)}


def _n_params(row):
    return sum(1 for p in row.params if "=" not in p)


def _functions():
    """(wrapper name, array arguments, double parameters, expression) for every call."""
    out = []
    for row in UNARY:
        ps = [f"T(p{i})" for i in range(_n_params(row))]
        out.append((f"{row.kernel}_fwd", ["x"], len(ps),
                    f"gpuad::{row.kernel}_fwd<T>({', '.join(['x[i]'] + ps)})"))
        args = ["g[i]"] + (["s[i]"] if row.reads else []) + ps
        out.append((f"{row.kernel}_bwd", ["g"] + (["s"] if row.reads else []), len(ps),
                    f"gpuad::{row.kernel}_bwd<T>({', '.join(args)})"))
    for op in BINARY:
        out.append((f"{op}_fwd", ["a", "b"], 0, f"gpuad::{op}_fwd<T>(a[i], b[i])"))
        for side in "ab":
            out.append((f"{op}_bwd_{side}", ["g", "a", "b"], 0,
                        f"gpuad::{op}_bwd_{side}<T>(g[i], a[i], b[i])"))
    where = SELECTION["where"]
    out.append((where[0], ["c", "x", "y"], 0, "gpuad::where_fwd<T>(c[i] != T(0), x[i], y[i])"))
    for name in where[1:]:
        out.append((name, ["g", "c"], 0, f"gpuad::{name}<T>(g[i], c[i] != T(0))"))
    clip = SELECTION["clip"]
    out.append((clip[0], ["x", "lo", "hi"], 0, "gpuad::clip_fwd<T>(x[i], lo[i], hi[i])"))
    for name in clip[1:]:
        out.append((name, ["g", "x", "lo", "hi"], 0,
                    f"gpuad::{name}<T>(g[i], x[i], lo[i], hi[i])"))
    return out


def source(device=False):
    """C++ (host) or CUDA (device) source wrapping every table function for float and
    double: ``k_<function>_<f32|f64>(arrays..., out, n, params...)``."""
    lines = ['#include "elementwise.cuh"', ""]
    if not device:
        lines.append('extern "C" {')
    for name, arrays, n_params, expr in _functions():
        for suffix, (ctype, _) in CTYPES.items():
            args = [f"const {ctype}* {a}" for a in arrays] + [f"{ctype}* out", "long n"]
            args += [f"double p{i}" for i in range(n_params)]
            head = "__global__ void" if device else "void"
            body = (f"    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;\n"
                    f"    if (i < n) out[i] = {expr};" if device
                    else f"    for (long i = 0; i < n; ++i) out[i] = {expr};")
            lines.append(f"{head} k_{name}_{suffix}({', '.join(args)}) {{\n"
                         f"    typedef {ctype} T;\n{body}\n}}")
    if not device:
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
    src.write_text(source(device=False))
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
    lines = ['#include "rowwise.cuh"', '#include "optim.cuh"', 'extern "C" {']
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
                                 out + (mode == 2 ? r : r * cols), cols);
}}
void k_softmax_backward_{suffix}(int mode, const {t}* g, const {t}* y, const {t}* x, {t}* dx,
                               long long rows, long long cols) {{
    for (long long r = 0; r < rows; ++r) {{
        long long one = mode == 2 ? r : r * cols;
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
}}
void k_bias_act_forward_{suffix}(int act, const {t}* x, const {t}* b, {t}* z, {t}* y, long long n,
                               long long cols) {{
    for (long long i = 0; i < n; ++i) {{
        {t} zi = x[i] + b[i % cols];
        z[i] = zi;
        y[i] = gpuad::activation<{t}>(act, zi);
    }}
}}
void k_bias_act_backward_{suffix}(int act, const {t}* g, const {t}* z, const {t}* y, {t}* dz,
                                {t}* db_partial, long long rows, long long cols,
                                long long per) {{
    for (long long start = 0, chunk = 0; start < rows; start += per, ++chunk) {{
        long long count = rows - start < per ? rows - start : per, at = start * cols;
        for (long long c = 0; c < cols; ++c)
            db_partial[chunk * cols + c] = gpuad::bias_act_column_backward<{t}>(
                gpuad::Serial(), act, g + at, z + at, y + at, dz + at, count, cols, c);
    }}
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
