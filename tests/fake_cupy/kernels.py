"""The stand-in's ``ElementwiseKernel``, ``ReductionKernel`` and ``RawModule``.

They check their arguments as CuPy 14.2 does (cupy/_core/_kernel.pyx, _reduction.pyx, raw.pyx,
cuda/function.pyx): parameter types (a typed parameter takes exactly its dtype; a one-letter
type ``T`` takes the first array's dtype and then only that), stand-in arrays on the current
device (for RawModule launches stricter than CuPy, whose cuda/function.pyx passes any array's
pointer unchecked: on a GPU another device's array is an illegal address or a slow peer read),
no numpy.ndarray, no unknown keyword, the launch's grid and block. The function to run is
read from the ``operation`` (or the name expression), and runs as the real source's host build
(tests/kernel_harness.py); float16 data are computed in float32, as on the GPU. The raw kernels
also require C-contiguous arrays: gpuad's kernels index by hand, so any other layout would be
read wrongly on a GPU.
"""
import ctypes
import re
import tempfile

import numpy as np

from . import capture, cuda
from .array import _wrap, alias, check_device, ndarray
from .stats import stats

_libraries = {}


def _library(kind):
    """The host build of kernels/elementwise.cuh (``"elementwise"``) or of rowwise.cuh and
    optim.cuh (``"rows"``), made once per process."""
    if kind not in _libraries:
        import kernel_harness as harness
        import pytest

        if harness.host_compiler() is None:
            pytest.skip("no C++ compiler: the stand-in for CuPy runs gpuad's CUDA kernels "
                        "through their host build")
        tmp = tempfile.mkdtemp(prefix="gpuad-fake-")
        _libraries[kind] = (harness.Harness(harness.build_host_library(tmp))
                            if kind == "elementwise" else harness.build_rowwise_library(tmp))
    return _libraries[kind]


def _harness_arrays():
    """How many array arguments each host-built function takes (tests/kernel_harness.py)."""
    import kernel_harness

    return {name: len(arrays)
            for name, arrays, _ in kernel_harness._functions()}


class _Param:
    """One parameter of a kernel's ``in_params``/``out_params``, parsed as CuPy does."""

    def __init__(self, text):
        words = text.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {text}")
        self.type, self.name = words[-2:]
        for word in words[:-2]:
            if word not in ("raw", "_non_const"):
                raise Exception(f'Unknown keyword "{word}"')
        self.raw = "raw" in words[:-2]
        self.dtype = None if len(self.type) == 1 else np.dtype(self.type)


def _params(text):
    return [_Param(p) for p in text.split(",") if p.strip()]


def _check_arg(arg):
    """CuPy's ``_preprocess_arg``: arrays on the current device, scalars accepted, anything
    else (a numpy.ndarray, a list) a TypeError."""
    if isinstance(arg, ndarray):
        check_device([arg], cuda.getDevice(), "kernel")
    elif not isinstance(arg, (bool, int, float, complex, np.generic)):
        raise TypeError(f"Unsupported type {type(arg)}")


def _decide_types(params, args):
    """CuPy's ``_decide_params_type_core`` for input parameters: the dtype of each."""
    bound = {}
    for p, a in zip(params, args):
        if not isinstance(a, ndarray):
            continue
        if p.dtype is not None:
            if a.dtype != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype.type} {p.dtype.type}")
        elif p.type in bound:
            if bound[p.type] != a.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a.dtype.type} "
                                f"{bound[p.type].type} {p.type}")
        else:
            bound[p.type] = a.dtype
    return [p.dtype if p.dtype is not None else bound.get(p.type) for p in params], bound


def _valid_name(name):
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f'Invalid kernel name: "{name}"')


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` for gpuad's kernels: ``operation`` must call one function of
    kernels/elementwise.cuh, ``out = gpuad::<function><float|double>(...)``."""

    _OPERATION = re.compile(r"^(\w+) = gpuad::(\w+)<(float|double)>\(([^;]*)\);$")

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        _valid_name(name)
        # CuPy takes any keyword here and fails at the first call, where it passes them on
        self._unknown = sorted(set(kwargs) - {"loop_prep", "after_loop", "options"})
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation, self.name, self.preamble = operation, name, preamble
        self.reduce_dims, self.no_return, self.return_tuple = reduce_dims, no_return, return_tuple
        self.kwargs = kwargs
        if any(p.name == "i" for p in self.in_params + self.out_params):
            raise ValueError("Can not use 'i' as a parameter name")

    def __call__(self, *args, **kwargs):
        size, block_size = kwargs.pop("size", -1), kwargs.pop("block_size", 128)
        kwargs.pop("stream", None)
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        if self._unknown:
            raise TypeError(f"_get_elementwise_kernel() got an unexpected keyword argument "
                            f"{self._unknown[0]!r}")
        for a in args:
            _check_arg(a)
        if len(args) != self.nin or self.nout != 1 or size != -1:
            raise NotImplementedError("the CuPy stand-in runs gpuad's elementwise kernels: "
                                      "inputs only, one output, no size")
        types, bound = _decide_types(self.in_params, args)
        out_param = self.out_params[0]
        out_dtype = out_param.dtype or bound.get(out_param.type)
        if out_dtype is None:
            raise TypeError(f"Cannot determine the type of {out_param.name} ({out_param.type})")
        match = self._OPERATION.match(self.operation.strip())
        if match is None or match.group(1) != out_param.name:
            raise NotImplementedError(f"the CuPy stand-in runs only operations "
                                      f"'out = gpuad::<function><float|double>(...);', got "
                                      f"{self.operation!r}")
        if "elementwise.cuh" not in self.preamble and "namespace gpuad" not in self.preamble:
            raise NotImplementedError("the CuPy stand-in runs gpuad's kernels, whose preamble "
                                      "is kernels/elementwise.cuh")
        _, function, acc, call = match.groups()
        names = [p.name for p in self.in_params]
        order = [names.index(a.strip().rpartition(")")[2]) for a in call.split(",")]
        shape = np.broadcast_shapes(*(a.shape for a in args if isinstance(a, ndarray)))
        work = np.float64 if acc == "double" else np.float32
        if 0 in shape:  # CuPy returns the empty output before compiling or launching
            return _wrap(np.empty(shape, out_dtype), cuda.getDevice())
        n_arrays = _harness_arrays().get(function)
        if n_arrays is None or len(order) < n_arrays:
            raise NotImplementedError(f"the CuPy stand-in has no host build of gpuad::{function}")
        if any(isinstance(args[i], ndarray) for i in order[n_arrays:]):
            raise NotImplementedError(f"the host build of gpuad::{function} takes scalars "
                                      f"after its first {n_arrays} arguments")
        # the host build takes the function's arrays, then its double parameters
        data = [args[i]._a if isinstance(args[i], ndarray) else np.asarray(args[i], types[i])
                for i in order[:n_arrays]]
        params = [np.dtype(types[i]).type(args[i]) for i in order[n_arrays:]]
        library = _library("elementwise")

        def compute():  # (on the arrays' memory as it is when it runs)
            values = [np.broadcast_to(d, shape).ravel() for d in data]
            out = library(function, work, *values, params=params)
            return out.reshape(shape).astype(out_dtype)

        c = capture.launching()
        if c is not None:
            arrays = [a for a in args if isinstance(a, ndarray)]
            return capture.fresh(c, compute, np.empty(shape, out_dtype), cuda.getDevice(),
                                 arrays)
        stats.launches += 1
        return _wrap(compute(), cuda.getDevice())


class ReductionKernel:
    """``cupy.ReductionKernel`` for gpuad's one reduction, ``gpuad_all_finite_*`` (anomaly
    mode's check): True when no value is nan or ±inf. Each call is counted in
    ``stats.reductions``."""

    _MAPS = {"isfinite((double)x)": lambda a: np.isfinite(a),
             "isfinite((double)x.real()) && isfinite((double)x.imag())":
                 lambda a: np.isfinite(a.real) & np.isfinite(a.imag)}

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity,
                 name="reduce_kernel", reduce_type=None, reduce_dims=True, preamble="",
                 options=()):
        _valid_name(name)
        self.in_params, self.out_params = _params(in_params), _params(out_params)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.map_expr, self.reduce_expr, self.post_map_expr = map_expr, reduce_expr, post_map_expr
        self.identity = "" if identity is None else str(identity)
        self.name, self.reduce_type, self.reduce_dims = name, reduce_type, reduce_dims
        self.preamble, self.options = preamble, options

    def __call__(self, *args, out=None, axis=None, keepdims=False, stream=None):
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        for a in args:
            _check_arg(a)
        _decide_types(self.in_params, args)
        test = self._MAPS.get(self.map_expr)
        if (test is None or self.reduce_expr != "a && b" or self.identity != "true"
                or axis is not None or out is not None or self.out_params[0].dtype != np.bool_):
            raise NotImplementedError("the CuPy stand-in runs only gpuad's all-finite "
                                      "reduction")
        (x,) = args
        data = x._a

        def compute():
            return np.asarray(test(data).all())

        c = capture.launching()
        if c is not None:
            return capture.fresh(c, compute, np.empty((), bool), cuda.getDevice(), [x])
        stats.reductions += 1
        stats.launches += 1
        return _wrap(compute(), cuda.getDevice())


#: the arguments each row-wise kernel writes, by position
_ROW_OUTPUTS = {"softmax": (2,), "softmax_backward": (4,), "cross_entropy": (4, 5),
                "sgd_update": (0, 2), "adam_update": (0, 2, 3)}
_ROW_RAW = {"sgd_update": 3, "adam_update": 4}  # the double* hyper-parameters
_TEMPLATE_DTYPES = {"__half": np.float16, "float": np.float32, "double": np.float64}
_MAX_BLOCK = (1024, 1024, 64)  # threads per block: CUDA's limits by axis, 1024 in all
_MAX_GRID = (2**31 - 1, 65535, 65535)


class RawModule:
    """``cupy.RawModule`` for kernels/rowwise.cu and optim.cu: its kernels run the same
    functions built for the host (rows with a group of one thread, optimizer updates one
    element at a time; tests/kernel_harness.py)."""

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=None):
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if not isinstance(options, tuple):
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got "
                            f"{type(options).__name__})")
        self.code, self.file_path, self.options, self.backend = code, path, options, backend
        self.enable_cooperative_groups = enable_cooperative_groups
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)

    def get_function(self, name):
        stats.get_function += 1
        # CuPy maps a name expression to its lowered name; any other name is looked up as
        # is, and the driver does not find it
        base = name.partition("gpuad::")[2].partition("<")[0]
        if (not self.name_expressions or name not in self.name_expressions
                or not re.search(rf"\b{base}\s*\(", self.code or "")):
            raise cuda.CUDADriverError(500)
        return RawKernel(self, name)


class RawKernel:
    """A kernel of a :class:`RawModule`: ``kernel(grid, block, args)``."""

    def __init__(self, module, name):
        self.code, self.name, self.options = module.code, name, module.options
        self.backend, self.file_path = module.backend, module.file_path
        self.enable_cooperative_groups = module.enable_cooperative_groups
        base, _, types = name[len("gpuad::"):].partition("<")
        for suffix in ("_warp", "_block"):
            base = base.removesuffix(suffix)
        self._base = base
        self._wide = np.float64 if types.startswith("double") else np.float32
        self._data = _TEMPLATE_DTYPES[types.split(",")[0]]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        for what, value in (("grid", grid), ("block", block)):
            if not isinstance(value, tuple):
                raise TypeError(f"Argument '{what}' has incorrect type (expected tuple, got "
                                f"{type(value).__name__})")
            if not all(isinstance(v, (int, np.integer)) for v in value):
                raise TypeError(f"an integer is required (the {what} {value!r})")
        # CuPy's Function.__call__ (cuda/function.pyx): missing axes are 1 and each axis is
        # at least 1, so an empty grid launches one block
        grid = tuple(max(1, int(g)) for g in (grid + (1, 1))[:3])
        block = tuple(max(1, int(b)) for b in (block + (1, 1))[:3])
        if (np.prod(block) > 1024 or any(b > m for b, m in zip(block, _MAX_BLOCK))
                or any(g > m for g, m in zip(grid, _MAX_GRID))):
            raise cuda.CUDADriverError(1)  # cuLaunchKernel: CUDA_ERROR_INVALID_VALUE
        for a in args:
            if isinstance(a, np.ndarray) and a.size != 1:
                raise TypeError(f"You are trying to pass a numpy.ndarray of shape {a.shape} as "
                                "a kernel parameter. Only numpy.ndarrays of size one can be "
                                "passed by value. If you meant to pass a pointer to __global__ "
                                "memory, you need to pass a cupy.ndarray instead.")
            _check_arg(a)  # (its device check is stricter than CuPy's launch, see above)
        c = capture.launching()
        if c is None:
            stats.launches += 1
            self._run(args)
            return
        # recorded to run on the arrays' memory, without keeping their pool chunks in use
        held = tuple(alias(a) if isinstance(a, ndarray) else a for a in args)
        capture.record(c, lambda: self._run(held), [a for a in args if isinstance(a, ndarray)])

    def _run(self, args):
        fn = getattr(_library("rows"),
                     f"k_{self._base}_{'f64' if self._wide == np.float64 else 'f32'}")
        work, values = [], []
        for pos, a in enumerate(args):
            if isinstance(a, ndarray) and pos == _ROW_RAW.get(self._base):
                if a.dtype != np.float64 or not a.flags.c_contiguous:
                    raise TypeError(f"{self.name}: argument {pos} (the hyper-parameters) must "
                                    f"be a C-contiguous float64 array, got {a.dtype}")
                work.append((a._a, a._a))
                values.append(ctypes.c_void_p(a._a.ctypes.data))
            elif isinstance(a, ndarray):
                # the GPU reads data of the template's type, laid out C-contiguous
                if a.dtype.kind == "f" and a.dtype != self._data:
                    raise TypeError(f"{self.name}: argument {pos} is {a.dtype}, the kernel "
                                    f"reads {np.dtype(self._data)}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{self.name}: argument {pos} (shape {a.shape}, strides "
                                     f"{a.strides}) is not C-contiguous; the kernel indexes "
                                     "it as if it were")
                w = a._a if a.dtype.kind != "f" else a._a.astype(self._wide)
                work.append((a._a, w))
                values.append(ctypes.c_void_p(w.ctypes.data))
            elif isinstance(a, np.int32):
                values.append(ctypes.c_int(int(a)))
            elif isinstance(a, (int, np.int64)) and not isinstance(a, bool):
                values.append(ctypes.c_longlong(int(a)))  # CuPy passes a Python int as int64
            elif isinstance(a, (float, np.float64)):
                values.append(ctypes.c_double(float(a)))
            else:  # CuPy would pass its own size: not what the kernel's parameter reads
                raise TypeError(f"{self.name}: argument {pos} is {type(a).__name__}; gpuad's "
                                "kernels take int (numpy.int32), long long (int64) and double "
                                "scalars")
        fn.restype = None
        fn(*values)
        arrays = [i for i, a in enumerate(args) if isinstance(a, ndarray)]
        for i in _ROW_OUTPUTS[self._base]:
            original, w = work[arrays.index(i)]
            if w is not original:
                original[...] = w
