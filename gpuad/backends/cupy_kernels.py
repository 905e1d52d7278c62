"""The CUDA backend's own kernels, built from ``kernels/`` with CuPy (NVRTC) on first use.

Elementwise kernels wrap one function of ``kernels/elementwise.cuh`` (the header is their
preamble), per function and dtype: float16 and float32 data are computed in float32, float64 in
double. They are made lazily and memoized (CuPy caches the compiled code across runs), and
every launch is counted, so tests can check that a fused rule is one launch.
"""
import cupy
import numpy as np

from . import kernel_sources
from .cuda_errors import is_out_of_memory
from .kernel_table import MODULES, elementwise_spec, row_mode_defines


class KernelCompileError(RuntimeError):
    """A kernel of ``kernels/`` failed to compile; the message has its name and NVRTC's log."""


def elementwise_kernel(function, dtype, n_inputs, n_params=0):
    """The CuPy ElementwiseKernel applying ``gpuad::<function>`` (see
    :func:`~.kernel_table.elementwise_spec`) with ``kernels/elementwise.cuh`` as its preamble;
    CuPy generates and compiles its code at the first call."""
    ins, outs, operation, name = elementwise_spec(function, dtype, n_inputs, n_params)
    return cupy.ElementwiseKernel(ins, outs, operation, name=name,
                                  preamble=kernel_sources.read("elementwise.cuh"))


def all_finite_kernel(kind):
    """The CuPy ReductionKernel telling whether no value of a float (``kind`` "f") or complex
    ("c") array is nan or ±inf (float16 tested as float, as the others)."""
    test = ("isfinite((double)x.real()) && isfinite((double)x.imag())" if kind == "c"
            else "isfinite((double)x)")
    return cupy.ReductionKernel("T x", "bool y", test, "a && b", "y = a", "true",
                                f"gpuad_all_finite_{kind}")


def row_module(source):
    """The CuPy RawModule of ``kernels/<source>`` (rowwise.cu or optim.cu) with every kernel
    of the file instantiated for every dtype; CuPy compiles it at the first get_function."""
    names = [f"gpuad::{k}<{t}>" for k in MODULES[source] for t in _TEMPLATE.values()]
    return cupy.RawModule(code=row_mode_defines() + kernel_sources.inlined(source),
                          options=("-std=c++17",),
                          name_expressions=names)


class Kernels:
    """The memoized kernels of one device, and a count of their launches."""

    def __init__(self):
        self._cache = {}
        self.launches = 0
        self.rows = RowKernels(self)

    def elementwise(self, function, dtype, n_inputs, n_params=0):
        """A callable ``k(*arrays, *params)`` that applies ``gpuad::<function>`` elementwise
        (with broadcasting) and returns a new array of ``dtype``."""
        key = (function, np.dtype(dtype), n_inputs, n_params)
        kernel = self._cache.get(key)
        if kernel is None:
            kernel = self._cache[key] = self._build(function, np.dtype(dtype), n_inputs,
                                                    n_params)
        return kernel

    def _build(self, function, dtype, n_inputs, n_params):
        name = elementwise_spec(function, dtype, n_inputs, n_params)[3]
        raw = elementwise_kernel(function, dtype, n_inputs, n_params)

        def launch(*values):
            self.launches += 1
            try:
                return raw(*values)
            except cupy.cuda.compiler.CompileException as exc:
                raise KernelCompileError(
                    f"gpuad: the CUDA kernel {name} (kernels/elementwise.cuh, "
                    f"gpuad::{function}) failed to compile:\n{exc}") from None
            except _cuda_errors() as exc:
                _unless_out_of_memory(exc)
                raise RuntimeError(f"gpuad: CUDA error in kernel {name}: {exc}") from exc

        launch.__name__ = name
        return launch


    def all_finite(self, a):
        """Whether no value of the float or complex array ``a`` is nan or ±inf: the test and
        the all-reduction in one kernel (float16 tested as float, as the others), whose one
        bool is read back."""
        kind = "c" if a.dtype.kind == "c" else "f"
        kernel = self._cache.get(("all_finite", kind))
        if kernel is None:
            kernel = self._cache[("all_finite", kind)] = all_finite_kernel(kind)
        self.launches += 1
        try:
            return bool(kernel(a))
        except cupy.cuda.compiler.CompileException as exc:
            raise KernelCompileError(f"gpuad: the CUDA kernel gpuad_all_finite_{kind} failed "
                                     f"to compile:\n{exc}") from None


_TEMPLATE = {np.dtype(np.float16): "__half, float", np.dtype(np.float32): "float, float",
             np.dtype(np.float64): "double, double"}


class RowKernels:
    """The kernels of ``kernels/rowwise.cu`` and ``kernels/optim.cu``: one module per file for
    every kernel and dtype, compiled on first use; launches are counted with the elementwise
    ones. The launcher of each kernel and dtype is made once per device (``get`` is on every
    launch's path; the module's ``get_function`` is not): the CUDA backend holds one
    ``Kernels`` per device and calls ``get`` with that device current."""

    def __init__(self, counter):
        self._counter = counter
        self._modules = {}
        self._launchers = {}

    def _module(self, kernel):
        source = next(f for f, kernels in MODULES.items() if kernel in kernels)
        module = self._modules.get(source)
        if module is None:
            module = self._modules[source] = row_module(source)
        return module

    def get(self, kernel, dtype):
        """The launcher ``launch(grid, block, args)`` of ``kernel`` for ``dtype``."""
        key = (kernel, np.dtype(dtype))
        launch = self._launchers.get(key)
        if launch is None:
            launch = self._launchers[key] = self._launcher(kernel, dtype)
        return launch

    def _launcher(self, kernel, dtype):
        name = f"gpuad::{kernel}<{_TEMPLATE[np.dtype(dtype)]}>"
        try:
            fn = self._module(kernel).get_function(name)
        except cupy.cuda.compiler.CompileException as exc:
            raise KernelCompileError(f"gpuad: the CUDA kernel {name} (kernels/) failed to "
                                     f"compile:\n{exc}") from None
        except _cuda_errors() as exc:
            _unless_out_of_memory(exc)
            raise RuntimeError(f"gpuad: CUDA error loading kernel {name}: {exc}") from exc

        def launch(grid, block, args):
            self._counter.launches += 1
            try:
                fn(grid, block, args)
            except _cuda_errors() as exc:
                _unless_out_of_memory(exc)
                raise RuntimeError(f"gpuad: CUDA error in kernel {name}: {exc}") from exc

        return launch


def _cuda_errors():
    """The errors a launch can raise: the driver's (kernel launches) and the runtime's."""
    return (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError)


def _unless_out_of_memory(exc):
    """Raise ``exc`` itself where it says out of memory (the backend turns it into
    :class:`~gpuad.errors.OutOfMemoryError`, with the numbers); else return."""
    if is_out_of_memory(exc, cupy.cuda.memory.OutOfMemoryError):
        raise exc


def rows_launch(rows, cols, kernel):
    """Grid and block for ``kernel``: a warp per row for rows up to 1024 long (4 rows per
    block), else a block of 256 threads per row."""
    if cols <= 1024:
        return f"{kernel}_warp", ((rows + 3) // 4,), (32, 4)
    return f"{kernel}_block", (rows,), (256,)
