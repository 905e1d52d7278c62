"""A NumPy stand-in for CuPy, so the CUDA code path (dispatch, device bookkeeping, transfers,
errors) runs on machines without a GPU.

It only proves that gpuad routes CUDA tensors through the CuPy backend correctly; numerical
behaviour of real CuPy/CUDA is checked by the same tests on a GPU machine, where the real
CuPy is used instead.
"""
import ctypes
import types

import numpy as np


class _Device:
    def __init__(self, index=0):
        self.id = index

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    @property
    def pci_bus_id(self):
        return f"0000:0{self.id}:00.0"


class _CUDARuntimeError(RuntimeError):
    pass


class _CompileException(Exception):
    pass


class _CUDADriverError(RuntimeError):
    pass


class _OutOfMemoryError(MemoryError):
    pass


class _Pool:
    def __init__(self):
        self.freed = 0

    def used_bytes(self):
        return 3 << 20

    def total_bytes(self):
        return 5 << 20

    def free_all_blocks(self):
        self.freed += 1


_harness = []


def _host_kernels():
    """The host build of kernels/elementwise.cuh (tests/kernel_harness.py), made once."""
    if not _harness:
        import tempfile

        import pytest
        from kernel_harness import Harness, build_host_library, host_compiler

        if host_compiler() is None:
            pytest.skip("no C++ compiler: the stand-in for CuPy runs gpuad's CUDA kernels "
                        "through their host build")
        _harness.append(Harness(build_host_library(tempfile.mkdtemp(prefix="gpuad-fake-"))))
    return _harness[0]


class ElementwiseKernel:
    """Stands in for ``cupy.ElementwiseKernel`` for gpuad's kernels (named
    ``gpuad_<function>_<dtype>``): runs the same function of kernels/elementwise.cuh, built for
    the host, over the broadcast inputs (float16 computed in float32, as on the GPU)."""

    def __init__(self, in_params, out_params, operation, name="kernel", preamble="", **kw):
        params = [p.split()[1] for p in in_params.split(",")]
        self.n_arrays = sum(1 for p in params if p.startswith("a"))
        self.function, _, dtype = name[len("gpuad_"):].rpartition("_")
        self.dtype = np.dtype(dtype)

    def __call__(self, *values):
        arrays = np.broadcast_arrays(*[np.asarray(v) for v in values[:self.n_arrays]])
        work = np.float64 if self.dtype == np.float64 else np.float32
        out = _host_kernels()(self.function, work, *[a.ravel() for a in arrays],
                              params=values[self.n_arrays:])
        return out.reshape(arrays[0].shape).astype(self.dtype)


class ReductionKernel:
    """Stands in for ``cupy.ReductionKernel`` for gpuad's one reduction, ``gpuad_all_finite_*``
    (the anomaly mode's check): a 0-d bool array, True when no value is nan or ±inf. Each call
    is counted in ``calls``."""

    calls = 0

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity,
                 name="reduce", **kw):
        assert name.startswith("gpuad_all_finite_") and reduce_expr == "a && b", name
        assert identity == "true" and "isfinite" in map_expr, map_expr

    def __call__(self, x):
        assert isinstance(x, np.ndarray) and x.dtype.kind in "fc", type(x)
        ReductionKernel.calls += 1
        return np.asarray(np.isfinite(x).all())


_row_harness = []

#: the arguments each row-wise kernel writes, by position
_ROW_OUTPUTS = {"softmax": (2,), "softmax_backward": (4,), "cross_entropy": (4, 5),
                "bias_act_forward": (3, 4), "bias_act_backward": (4, 5),
                "sgd_update": (0, 2), "adam_update": (0, 2, 3)}
_ROW_RAW = {"sgd_update": 3, "adam_update": 4}  # the double* hyper-parameters
_TEMPLATE_DTYPES = {"__half": np.float16, "float": np.float32, "double": np.float64}


class RawModule:
    """Stands in for ``cupy.RawModule`` for kernels/rowwise.cu and optim.cu: each kernel runs
    the same functions built for the host (rows with a group of one thread, optimizer updates
    one element at a time; tests/kernel_harness.py); grid and block are ignored. float16 data
    is computed in float32."""

    def __init__(self, code="", options=(), name_expressions=()):
        self.names = set(name_expressions)

    def get_function(self, name):
        assert name in self.names, name
        base, _, types = name[len("gpuad::"):].partition("<")
        for suffix in ("_warp", "_block"):
            base = base.removesuffix(suffix)
        wide = np.float64 if types.startswith("double") else np.float32
        data = _TEMPLATE_DTYPES[types.split(",")[0]]

        def launch(grid, block, args):
            if not _row_harness:
                import tempfile

                from kernel_harness import build_rowwise_library

                _row_harness.append(build_rowwise_library(tempfile.mkdtemp(prefix="gpuad-")))
            lib = _row_harness[0]
            fn = getattr(lib, f"k_{base}_{'f64' if wide == np.float64 else 'f32'}")
            work, values = [], []
            for pos, a in enumerate(args):
                if isinstance(a, np.ndarray) and pos == _ROW_RAW.get(base):
                    assert a.dtype == np.float64 and a.flags.c_contiguous
                    work.append((a, a))
                    values.append(ctypes.c_void_p(a.ctypes.data))
                elif isinstance(a, np.ndarray):
                    # as the GPU would: data of the template's type, laid out C-contiguous
                    assert a.dtype.kind != "f" or a.dtype == data, (name, a.dtype)
                    assert a.flags.c_contiguous, name
                    w = a if a.dtype.kind != "f" else np.ascontiguousarray(a, dtype=wide)
                    work.append((a, w))
                    values.append(ctypes.c_void_p(w.ctypes.data))
                elif isinstance(a, np.int32):
                    values.append(ctypes.c_int(int(a)))
                elif isinstance(a, np.integer):
                    values.append(ctypes.c_longlong(int(a)))
                else:
                    values.append(ctypes.c_double(float(a)))
            fn.restype = None
            fn(*values)
            arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]
            for i in _ROW_OUTPUTS[base]:
                original, w = work[arrays.index(i)]
                if w is not original:
                    original[...] = w

        return launch


def modules(devices=1):
    """``{module name: module}`` to place in ``sys.modules``."""
    cupy = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(cupy, name, getattr(np, name))
    cupy.__version__ = "fake"
    cupy.asnumpy = lambda a: np.array(a, copy=True)

    def flip(a, axis=None):  # like CuPy: no flipping of 0-d arrays
        if np.ndim(a) == 0:
            raise np.exceptions.AxisError("Input must be >= 1-d")
        return np.flip(a, axis)

    def clip(a, lo=None, hi=None, **kwargs):  # like CuPy: one bound at least
        if lo is None and hi is None:
            raise ValueError("array_clip: must set either max or min")
        return np.clip(a, lo, hi, **kwargs)

    cupy.flip, cupy.clip = flip, clip
    cupy.cuda = types.SimpleNamespace(
        Device=_Device,
        runtime=types.SimpleNamespace(
            memGetInfo=lambda: (1 << 30, 2 << 30), CUDARuntimeError=_CUDARuntimeError,
            runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13010,
            getDeviceCount=lambda: devices,
            getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": 9, "minor": 0}),
        memory=types.SimpleNamespace(OutOfMemoryError=_OutOfMemoryError),
        compiler=types.SimpleNamespace(CompileException=_CompileException),
        driver=types.SimpleNamespace(CUDADriverError=_CUDADriverError),
    )
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.ReductionKernel = ReductionKernel
    pool, pinned = _Pool(), _Pool()
    cupy.get_default_memory_pool = lambda: pool
    cupy.get_default_pinned_memory_pool = lambda: pinned
    cupy.RawModule = RawModule
    cupy.random = types.SimpleNamespace(default_rng=np.random.default_rng)
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = np.add.at
    special = types.ModuleType("cupyx.scipy.special")
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover
        import math

        erf = np.vectorize(math.erf, otypes=[np.float64])
    def special_erf(x):  # like cupyx: float32 and float64 loops only
        out = np.asarray(erf(x))
        return out.astype(np.float32 if x.dtype == np.float16 else out.dtype)

    special.erf = special_erf
    scipy = types.ModuleType("cupyx.scipy")
    scipy.special = special
    cupyx.scipy = scipy
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy, "cupyx.scipy.special": special}
