"""Compiles CuPy kernels with CuPy's own code generation and NVRTC, without a GPU.

CuPy generates a kernel's CUDA source and compiles it at the first launch, which needs a
device. This harness calls the same CuPy 14.2 functions the launch path calls, one step
before the launch, and stops where a device is first needed:

- the source: ``cupy._core._kernel._get_elementwise_kernel`` (ElementwiseKernel),
  ``cupy._core._reduction._ReductionKernel_get_cached_function`` and
  ``cupy._core._cub_reduction._SimpleCubReductionKernel_get_cached_function`` (ReductionKernel,
  CuPy's own and CUB's), ``cupy._core.raw._get_raw_module`` (RawModule). Each is memoized per
  device (the memo asks the runtime for the current device, which needs a driver), so the
  undecorated function (``__wrapped__``) is called;
- the options: ``cupy._core.core.compile_with_cache`` and
  ``cupy.cuda.compiler._compile_with_cache_cuda`` add CuPy's (headers, ``--std``,
  ``-ftz=true``, ``-arch``, ``--device-as-default-execution-space``), as on a GPU;
- what is replaced: the device's compute capability (``compiler._get_arch``, the arch asked
  for instead), the per-device memo of the ``-arch`` option (its undecorated function), the
  kernel cache (``CUPY_CACHE_IN_MEMORY=1``, so every kernel is really compiled), NVRTC's log
  (always collected: CuPy reads it only on an error) and the loading of the cubin
  (``function.Module.load`` needs the driver: it stops the compilation there with the cubin).

Where CuPy prepares a kernel's arguments in compiled (``cdef``) code that Python cannot
call, the same description of the arguments is built here (``_ArgInfo`` per argument, the
type map, the CUB renaming), with the CuPy source line it mirrors; the code generator and
the compiler are CuPy's. The module refuses another CuPy version than the one it was read
against (``CUPY_VERSION``).
"""
import contextlib
import importlib
import io
import os
import re
import sys

import numpy as np
import pytest

#: the CuPy release whose internals this module calls (cupy/_core/_kernel.pyx, _reduction.pyx,
#: _cub_reduction.pyx, raw.pyx, core.pyx, cupy/cuda/compiler.py at tag v14.2.0)
CUPY_VERSION = "14.2.0"
#: set (to 1) by .ci/run: then a missing or different CuPy fails instead of skipping
REQUIRE = "GPUAD_REQUIRE_NVRTC"

#: cupy/_core/_kernel.pxd's _ArgKind (a cdef enum, not visible from Python)
NDARRAY, INDEXER, SCALAR, POINTER = 1, 2, 3, 4


def real_cupy():
    """The real CuPy module; skips the test (fails it where ``GPUAD_REQUIRE_NVRTC`` is set)
    where CuPy cannot be imported or is not the version this module was written against."""
    try:
        cupy = importlib.import_module("cupy")
        version = getattr(cupy, "__version__", None)
    except Exception as exc:  # ImportError, or a CuPy whose import fails
        reason = f"CuPy cannot be imported ({type(exc).__name__}: {exc})"
    else:
        if version == CUPY_VERSION:
            return cupy
        reason = (f"CuPy {version} is installed; this check calls the internals of CuPy "
                  f"{CUPY_VERSION}")
    message = (f"{reason}: gpuad's kernels were not compiled with NVRTC. Install "
               f"cupy-cuda13x=={CUPY_VERSION} with nvidia-cuda-nvrtc and nvidia-cuda-runtime "
               "(see .ci/run); no GPU or driver is needed")
    if os.environ.get(REQUIRE):
        pytest.fail(f"{REQUIRE} is set and {message}", pytrace=False)
    pytest.skip(message)


#: NVRTC warnings on code that CuPy's template writes itself, whatever gpuad's expressions:
#: (the warning, the source line it points at). The CUB first pass declares ``_J`` for map
#: expressions that use it (_cub_reduction.pyx, ``IndexT _J = ...`` under FIRST_PASS);
#: gpuad's all_finite test does not.
CUPY_OWN = (
    ('warning #177-D: variable "_J" was declared but never referenced',
     "IndexT _J = (segment_idx + i + e_idx);"),
)
_DIAGNOSTIC = re.compile(r"(?m)^(?=\S+\(\d+\): (?:warning|error))")
_REMARK = 'Remark: The warnings can be suppressed with "-diag-suppress <warning-number>"'


def unexplained(log):
    """Whether NVRTC's ``log`` holds anything but the diagnostics of :data:`CUPY_OWN`."""
    rest = []
    for block in _DIAGNOSTIC.split(log):
        lines = [line.strip() for line in block.replace(_REMARK, "").splitlines()]
        lines = [line for line in lines if line and line != "^"]
        if lines and not any(len(lines) == 2 and lines[0].endswith(warning)
                             and lines[1] == source for warning, source in CUPY_OWN):
            rest.append(block)
    return bool(rest)


class Compiled(Exception):
    """Raised where CuPy loads the compiled cubin (the first step that needs a driver)."""

    def __init__(self, cubin, mapping):
        super().__init__("compiled")
        self.cubin, self.mapping = cubin, mapping


class Compilation:
    """What NVRTC was given and said for one kernel: ``programs`` holds ``(options, log,
    source)`` of every NVRTC program CuPy ran for it, ``cubin`` and ``mapping`` (name
    expression -> lowered name) are its result; the ElementwiseKernel and generic reduction
    compilations also have ``source``, the code CuPy generated for the kernel."""

    def __init__(self, programs, done):
        self.programs = programs
        self.cubin, self.mapping = done.cubin, done.mapping

    @property
    def kernel_program(self):
        """The (options, log, source) of the program that made the cubin (CuPy also compiles
        an empty one first, to key its cache on NVRTC's version)."""
        return next(p for p in reversed(self.programs) if any(
            o.startswith("-arch=sm_") for o in p[0]))

    def problems(self):
        """NVRTC's diagnostics (warnings: an error raises before this) as text, with the
        options of their program; empty where NVRTC said nothing but :data:`CUPY_OWN`."""
        return "\n".join(f"options {' '.join(o)}:\n{log}" for o, log, _ in self.programs
                         if unexplained(log))


class Compiler:
    """Compiles through CuPy for one architecture (``"80"`` for sm_80) while installed (see
    :func:`compiler_for`)."""

    def __init__(self, cupy, arch):
        from cupy._core import _carray, _cub_reduction, _kernel, _reduction, _scalar, raw
        from cupy.cuda import memory

        self.cupy, self.arch = cupy, arch
        self._kernel, self._reduction, self._cub = _kernel, _reduction, _cub_reduction
        self._raw, self._carray, self._scalar, self._memory = raw, _carray, _scalar, memory
        self._programs = None

    def _run(self, build):
        """``build()`` (a call into CuPy that compiles and then loads a module) up to the
        load: its NVRTC programs, their logs and the cubin."""
        self._programs = []
        try:
            build()
        except Compiled as done:
            return Compilation(self._programs, done)
        finally:
            programs, self._programs = self._programs, None
        raise AssertionError(f"CuPy did not compile (NVRTC programs: {programs})")

    # ---- arguments as CuPy describes them (cupy/_core/_kernel.pyx, _ArgInfo.from_*) ------
    def array(self, dtype, ndim, contiguous=True, index_32_bits=True):
        return self._kernel._ArgInfo(NDARRAY, self.cupy.ndarray, np.dtype(dtype), ndim,
                                     contiguous, index_32_bits)

    def indexer(self, ndim, index_32_bits=True):
        return self._kernel._ArgInfo(INDEXER, self._carray.Indexer, None, ndim, True,
                                     index_32_bits)

    def scalar(self, dtype):
        return self._kernel._ArgInfo(SCALAR, self._scalar.CScalar, np.dtype(dtype), 0, True,
                                     True)

    def pointer(self):
        return self._kernel._ArgInfo(POINTER, self._memory.MemoryPointer, None, 0, True,
                                     True)

    # ---- ElementwiseKernel -----------------------------------------------------------------
    def elementwise(self, kernel, dtypes, ndim, contiguous, index_32_bits):
        """Compile ElementwiseKernel ``kernel`` as ``__call__`` does for arrays of ``dtypes``
        (None for a scalar argument) reduced to ``ndim`` dimensions: inputs ``contiguous`` or
        not, the new output always contiguous (_kernel.pyx: ElementwiseKernel.__call__)."""
        in_types, out_types, type_map = kernel._decide_params_type(tuple(dtypes), ())
        args = [self.array(t, ndim, contiguous, index_32_bits) if d is not None
                else self.scalar(t) for d, t in zip(dtypes, in_types)]
        args += [self.array(t, ndim, True, index_32_bits) for t in out_types]
        args.append(self.indexer(ndim, index_32_bits))
        arginfos = tuple(args)
        compilation = self._run(lambda: self._kernel._get_elementwise_kernel.__wrapped__(
            arginfos, type_map, kernel.params, kernel.operation, kernel.name,
            kernel.preamble, **kernel.kwargs))
        compilation.source = self._kernel._get_elementwise_kernel_code(
            arginfos, type_map, kernel.params, kernel.operation, kernel.name,
            kernel.preamble, **kernel.kwargs)
        return compilation

    # ---- ReductionKernel, CuPy's generic kernel ------------------------------------------
    def reduction(self, kernel, dtype, size, ndim, contiguous):
        """Compile ReductionKernel ``kernel`` (one input, one output) for a full reduction of
        an array of ``dtype`` and ``size`` elements reduced to ``ndim`` dimensions, as
        ``_AbstractReductionKernel._call`` does where CUB does not apply (not contiguous, or
        under 128 elements)."""
        in_types, out_types, type_map = self._reduction._decide_params_type(
            kernel.in_params, kernel.out_params, (np.dtype(dtype).type,), ())
        # _reduction.pyx: the index type from the sizes, then the launch arguments
        index = "int64" if size > 0x7fffffff else "int32"
        type_map = self._kernel._TypeMap(type_map._pairs + (("IndexT", index),))
        block_size = self._reduction._get_block_specs(size, 1, 1, -1)[0]  # CuPy's default
        small = size <= 0x7fffffff
        arginfos = (self.array(in_types[0], ndim, contiguous, small),
                    self.array(out_types[0], 0), self.indexer(ndim, small), self.indexer(0),
                    self.scalar(np.int32))
        args = (kernel.nin, kernel.nout, kernel._params, arginfos, type_map, kernel.name,
                block_size, kernel.reduce_type, kernel.identity, kernel.map_expr,
                kernel.reduce_expr, kernel.post_map_expr, kernel.preamble, kernel.options)
        compilation = self._run(
            lambda: self._reduction._ReductionKernel_get_cached_function.__wrapped__(*args))
        compilation.source = self._reduction._ReductionKernel_get_cached_function_code(*args)
        return compilation

    # ---- ReductionKernel through CUB (what a contiguous array of 128+ elements gets) -------
    def cub_reduction(self, kernel, dtype, size):
        """Compile the two CUB passes CuPy runs for a full reduction of a contiguous array
        of ``dtype`` and ``size`` (>= 128) elements (_cub_reduction.pyx:
        _try_to_call_cub_reduction, _cub_two_pass_launch); returns both compilations."""
        _kernel = self._kernel
        in_types, out_types, type_map = self._reduction._decide_params_type(
            kernel.in_params, kernel.out_params, (np.dtype(dtype).type,), ())
        index = "int64" if size > 0x7fffffff else "int32"
        pairs = type_map._pairs + (("IndexT", index),)
        size_type = "uint64" if size > 0x7fffffff else "int32"
        pairs += (("sizeT", size_type),)
        params = (kernel._params[0:2]
                  + _kernel._get_param_info(size_type + " _segment_size", True)
                  + _kernel._get_param_info(size_type + " _array_size", True))
        map_expr, post_map_expr = kernel.map_expr, kernel.post_map_expr
        old_in, old_out = params[0].name, params[1].name
        if (old_in, old_out) != ("in0", "out0"):  # CuPy's renaming for a ReductionKernel
            params = (_kernel._get_param_info("T in0", True)
                      + _kernel._get_param_info("T out0", False) + params[2:])
            map_expr = map_expr.replace(old_in, "in0")
            post_map_expr = post_map_expr.replace(old_out, "out0")
            pairs += (("type_in0_raw", np.dtype(dtype).type),
                      ("type_out0_raw", np.dtype(out_types[0]).type))
        type_map = _kernel._TypeMap(pairs)
        # _get_cub_block_specs: 4 items per thread, a power of two of threads in [32, 512]
        items, block = 4, 1 << max(0, (-(-size // 4) - 1).bit_length())
        block = min(max(block, 32), 512)
        counts = self.scalar(np.int64 if size > 0x7fffffff else np.int32)
        passes = (
            (map_expr, post_map_expr, kernel.name + "_pass1", ("-DFIRST_PASS=1",),
             (self.array(dtype, 1), self.pointer(), counts, counts)),
            ("in0", post_map_expr, kernel.name + "_pass2", ("-DSECOND_PASS=1",),
             (self.pointer(), self.array(out_types[0], 0), counts, counts)),
        )
        get = self._cub._SimpleCubReductionKernel_get_cached_function.__wrapped__
        return [self._run(lambda p=p: get(
            p[0], kernel.reduce_expr, p[1], kernel.reduce_type, params, p[4], type_map,
            p[2], block, kernel.identity, kernel.preamble, p[3], items))
            for p in passes]

    # ---- RawModule -------------------------------------------------------------------------
    def raw_module(self, module):
        """Compile RawModule ``module`` as its first ``get_function`` does (raw.pyx:
        _get_raw_module; gpuad passes neither translate_cucomplex nor jitify: False)."""
        return self._run(lambda: self._raw._get_raw_module.__wrapped__(
            module.code, module.file_path, module.options, module.backend, False,
            module.enable_cooperative_groups, False, module.name_expressions, None))


@contextlib.contextmanager
def compiler_for(cupy, arch):
    """A :class:`Compiler` for ``arch`` with CuPy's device steps replaced (see the module's
    docstring); everything is restored on exit."""
    from cupy.cuda import compiler, function

    result = Compiler(cupy, arch)

    class LoggedProgram(compiler._NVRTCProgram):
        def compile(self, options=(), log_stream=None):
            log = io.StringIO()
            try:
                return super().compile(options, log)
            finally:
                if result._programs is not None:
                    result._programs.append((tuple(options), log.getvalue(), self.src))
                if log_stream is not None:
                    log_stream.write(log.getvalue())

    class UnloadedModule(function.Module):
        def load(self, cubin):
            raise Compiled(cubin, dict(getattr(self, "mapping", None) or {}))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUPY_CACHE_IN_MEMORY", "1")
        mp.setattr(compiler, "_NVRTCProgram", LoggedProgram)
        mp.setattr(compiler, "_get_arch", lambda: arch)
        mp.setattr(compiler, "_get_arch_for_options_for_nvrtc",
                   compiler._get_arch_for_options_for_nvrtc.__wrapped__)
        mp.setattr(function, "Module", UnloadedModule)
        yield result


@contextlib.contextmanager
def gpuad_kernels_on(cupy):
    """``gpuad.backends.cupy_kernels`` imported afresh against the real ``cupy`` (a module
    imported while the CuPy stand-in was installed keeps the stand-in); the previous module,
    if any, is put back on exit."""
    import gpuad.backends as backends

    name = "gpuad.backends.cupy_kernels"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "cupy", cupy)
        mp.setitem(sys.modules, name, None)
        del sys.modules[name]
        mp.setattr(backends, "cupy_kernels", None, raising=False)
        module = importlib.import_module(name)
        assert module.cupy is cupy
        yield module
