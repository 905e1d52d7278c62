"""Every kernel gpuad builds compiles with NVRTC, in the very source and options CuPy 14.2
generates for it, for sm_80 (A100) and sm_90 (H100), with no error and no warning. No GPU is
needed (tests/nvrtc_harness.py says how CuPy's machinery is driven without one).

- the ElementwiseKernels of ``kernel_table.backend_elementwise`` (what ``CupyBackend.warmup``
  builds), made by ``cupy_kernels.elementwise_kernel``: for both architectures in the form
  nearly every launch gets (contiguous arrays, 32-bit indexing), and for sm_90 also with
  strided inputs and 64-bit indexing, and as 0-d arrays (CuPy's ``CArray<T, 0>``). The forms
  change only the template arguments of CuPy's CArray and CIndexer, the same front-end work
  for any architecture, so each is compiled once per kernel (every form of every kernel is
  an NVRTC program of its own: the count of programs is this module's time);
- ``cupy_kernels.all_finite_kernel`` for every float and complex dtype CuPy has, through
  CuPy's own reduction kernel (a small contiguous array; a strided one with 64-bit indexing),
  and through CUB's two passes (what a contiguous array of 128 elements or more gets; CuPy
  renames the expression's variables there) for float16 and complex64: the other dtypes of
  a kind differ from these only in the input's type, compiled by the generic kernel;
- the RawModules of ``kernels/rowwise.cu`` and ``kernels/optim.cu`` with every name
  expression, made by ``cupy_kernels.row_module``.

Skipped, saying why, where CuPy 14.2 is not installed; a failure instead where
``GPUAD_REQUIRE_NVRTC`` is set (.ci/run sets it, so CI cannot skip this).

Every function of kernels/elementwise.cuh is one a backend kernel launches (tests/
test_kernels_host.py fails otherwise), so these compiles cover the whole header on the device;
the former nvcc check of the header (tests/test_kernels_compile.py) added nothing more and was
removed.
"""
import numpy as np
import pytest
from nvrtc_harness import REQUIRE, compiler_for, gpuad_kernels_on, real_cupy, unexplained

from gpuad.backends.kernel_table import MODULES, backend_elementwise

ARCHS = ["80", "90"]
#: (ndim after CuPy's dimension reduction, inputs contiguous, 32-bit indexing)
ELEMENTWISE_FORMS = {"contiguous": (1, True, True), "strided-64bit": (2, False, False),
                     "0d": (0, True, True)}
FORMS_BY_ARCH = {"80": ("contiguous",), "90": tuple(ELEMENTWISE_FORMS)}
#: the float and complex dtypes (what all_finite reduces); long double has no CUDA type
INEXACT = [np.dtype(c) for c in np.typecodes["AllFloat"] if c not in "gG"]
CUB_DTYPES = [np.dtype(np.float16), np.dtype(np.complex64)]
ELEMENTWISE = list(backend_elementwise())


@pytest.fixture(scope="module")
def cupy():
    return real_cupy()


@pytest.fixture(scope="module")
def kernels(cupy):
    with gpuad_kernels_on(cupy) as module:
        yield module


@pytest.fixture(scope="module", params=ARCHS, ids=lambda a: f"sm_{a}")
def nvrtc(request, cupy):
    with compiler_for(cupy, request.param) as compiler:
        yield compiler


def _clean(compilation, what, symbols):
    """Fail, naming ``what``, where NVRTC warned or the cubin lacks one of ``symbols``."""
    problems = compilation.problems()
    assert not problems, f"NVRTC warned on {what}:\n{problems}"
    missing = [s for s in symbols if s.encode() not in compilation.cubin]
    assert not missing, f"the cubin of {what} has no {missing}"


def _compile(what, build, *args):
    """``build(*args)`` (a method of the harness's Compiler); an NVRTC error fails the test,
    naming ``what``, with NVRTC's log."""
    from cupy.cuda.compiler import CompileException

    try:
        return build(*args)
    except CompileException as exc:
        pytest.fail(f"NVRTC failed on {what} (sm_{build.__self__.arch}):\n{exc}",
                    pytrace=False)


@pytest.mark.parametrize("function, dtype, n_inputs, n_params", ELEMENTWISE,
                         ids=[f"{f}-{d.name}" for f, d, _, _ in ELEMENTWISE])
def test_elementwise_kernel_compiles(nvrtc, kernels, function, dtype, n_inputs, n_params):
    kernel = kernels.elementwise_kernel(function, dtype, n_inputs, n_params)
    dtypes = (dtype,) * n_inputs + (None,) * n_params
    for form in FORMS_BY_ARCH[nvrtc.arch]:
        ndim, contiguous, small = ELEMENTWISE_FORMS[form]
        what = f"{kernel.name} ({form})"
        compilation = _compile(what, nvrtc.elementwise, kernel, dtypes, ndim, contiguous,
                               small)
        _clean(compilation, what, [kernel.name])


def test_elementwise_forms_are_the_ones_asked_for(nvrtc, kernels):
    """The argument descriptions reach CuPy's generator as meant (the harness builds them
    with CuPy's enum values, which Python cannot read): its kernel signature says so."""
    kernel = kernels.elementwise_kernel("softplus_bwd", np.float16, 2, 2)
    for ndim, contiguous, small in ELEMENTWISE_FORMS.values():
        source = nvrtc.elementwise(kernel, (np.float16,) * 2 + (None,) * 2, ndim, contiguous,
                                   small).source
        c, i = int(contiguous), int(small)
        assert (f"void {kernel.name}(const CArray<float16, {ndim}, {c}, {i}> _raw_a0, "
                f"const CArray<float16, {ndim}, {c}, {i}> _raw_a1, const double p0, "
                f"const double p1, CArray<float16, {ndim}, 1, {i}> _raw_out, "
                f"CIndexer<{ndim}, {i}> _ind)") in source


def test_compiled_with_cupys_options(nvrtc, kernels):
    """The options are CuPy's, for the architecture asked for: flush-to-zero (which the GPU
    tolerances must allow for), the real cubin target, C++17, CuPy's and CUDA's headers."""
    kernel = kernels.elementwise_kernel("sigmoid_fwd", np.float32, 1)
    options, log, source = nvrtc.elementwise(kernel, (np.float32,), 1, True, True) \
        .kernel_program
    assert {"-ftz=true", f"-arch=sm_{nvrtc.arch}", "--std=c++17",
            "--device-as-default-execution-space"} <= set(options)
    assert any(o.startswith("-I") and o.endswith("cupy/_core/include") for o in options)
    assert source.startswith("#include <cupy/complex.cuh>")
    assert "gpuad::sigmoid_fwd<float>((float)a0)" in source


@pytest.mark.parametrize("dtype", INEXACT, ids=str)
def test_all_finite_kernel_compiles(nvrtc, kernels, dtype):
    kernel = kernels.all_finite_kernel(dtype.kind)
    for size, ndim, contiguous in [(100, 1, True), (2**31 + 1, 2, False)]:
        what = f"{kernel.name} for {dtype} ({size} elements, ndim {ndim})"
        compilation = _compile(what, nvrtc.reduction, kernel, dtype, size, ndim, contiguous)
        _clean(compilation, what, [kernel.name])


@pytest.mark.parametrize("dtype", CUB_DTYPES, ids=str)
def test_all_finite_kernel_compiles_through_cub(nvrtc, kernels, dtype):
    kernel = kernels.all_finite_kernel(dtype.kind)
    what = f"{kernel.name} for {dtype} through CUB"
    passes = _compile(what, nvrtc.cub_reduction, kernel, dtype, 1 << 20)
    for compilation, name in zip(passes, ("_pass1", "_pass2")):
        _clean(compilation, f"{what} ({name[1:]})", [kernel.name + name])
    assert "isfinite((double)in0" in passes[0].kernel_program[2]  # CuPy's renaming of x


def test_inexact_dtypes_are_all_there():
    assert [d.name for d in INEXACT] == ["float16", "float32", "float64", "complex64",
                                         "complex128"]
    assert {d.kind for d in CUB_DTYPES} == {d.kind for d in INEXACT}


def test_every_cu_source_is_a_module():
    from gpuad.backends.kernel_sources import kernels_dir

    assert sorted(p.name for p in kernels_dir().glob("*.cu")) == sorted(MODULES)


@pytest.mark.parametrize("source", sorted(MODULES))
def test_row_module_compiles(nvrtc, kernels, source):
    module = kernels.row_module(source)
    compilation = _compile(f"kernels/{source}", nvrtc.raw_module, module)
    assert sorted(compilation.mapping) == sorted(module.name_expressions)
    assert len(module.name_expressions) == 3 * len(MODULES[source])
    _clean(compilation, f"kernels/{source}", compilation.mapping.values())


# ---- the check itself: it fails where NVRTC complains -------------------------------------
def _own_kernel(cupy, operation):
    return cupy.ElementwiseKernel("float32 a0", "float32 out", operation, name="gpuad_probe")


def test_a_warning_fails_the_check(cupy, nvrtc):
    compilation = nvrtc.elementwise(_own_kernel(cupy, "int unused = 1; out = a0;"),
                                    (np.float32,), 1, True, True)
    assert "unused" in compilation.problems()
    with pytest.raises(AssertionError, match="NVRTC warned on probe"):
        _clean(compilation, "probe", ["gpuad_probe"])


def test_an_error_fails_the_check(cupy, nvrtc):
    kernel = _own_kernel(cupy, "out = no_such_name(a0);")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)NVRTC failed on probe.*no_such_name"):
        _compile("probe", nvrtc.elementwise, kernel, (np.float32,), 1, True, True)


def test_a_clean_kernel_passes_the_check(cupy, nvrtc):
    compilation = nvrtc.elementwise(_own_kernel(cupy, "out = a0;"), (np.float32,), 1, True,
                                    True)
    _clean(compilation, "probe", ["gpuad_probe"])
    assert compilation.cubin.startswith(b"\x7fELF")


def test_only_cupys_own_template_warning_is_let_through():
    own = ('default_program(112): warning #177-D: variable "_J" was declared but never '
           'referenced\n            IndexT _J = (segment_idx + i + e_idx);\n'
           '                   ^\n\nRemark: The warnings can be suppressed with '
           '"-diag-suppress <warning-number>"\n\n')
    other = ('default_program(40): warning #177-D: variable "_J" was declared but never '
             'referenced\n      int _J = 0;\n          ^\n\n')
    assert not unexplained("") and not unexplained(own)
    assert unexplained(other) and unexplained(own + other) and unexplained(other + own)


def test_missing_cupy_skips_or_fails_as_ci_asks(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    monkeypatch.delenv(REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="CuPy cannot be imported"):
        real_cupy()
    monkeypatch.setenv(REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE} is set and CuPy cannot"):
        real_cupy()
