"""The CuPy stand-in (tests/fake_cupy) refuses what real CuPy 14.2 refuses: names CuPy lacks,
implicit host conversions, numpy.ndarray arguments, cross-device work, mistyped kernel
arguments and launches; it counts host copies, device switches and launches; and installing or
removing it never leaves a module bound to the other CuPy."""
import importlib.util
import json
import pathlib
import subprocess
import sys
import textwrap
import types

import fake_cupy
import numpy as np
import pytest
from fake_cupy import installed, stats

import gpuad as ad
from gpuad.backends.kernel_table import elementwise_spec

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent


def _real_cupy_imports():
    if importlib.util.find_spec("cupy") is None:
        return False
    probe = subprocess.run([sys.executable, "-c", "import cupy, cupyx.scipy.special"],
                           capture_output=True)
    return probe.returncode == 0


needs_real_cupy = pytest.mark.skipif(not _real_cupy_imports(),
                                     reason="real CuPy is not installed (or does not import)")


@pytest.fixture
def cupy():
    with installed():
        import cupy

        yield cupy


@pytest.fixture
def two_gpus():
    with installed(devices=2):
        import cupy

        yield cupy


# ---- the allow-list -------------------------------------------------------------------------
def _allowed():
    return json.loads((TESTS / "cupy_names.json").read_text())["names"]


def _public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def test_every_name_the_stand_in_offers_is_a_real_cupy_name(cupy):
    import cupyx

    allowed = _allowed()
    roots = {"cupy": cupy, "cupyx": cupyx}
    seen = set()

    def walk(path, obj):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        assert path in allowed, f"the stand-in offers {path}, which the allow-list lacks"
        extra = _public(obj) - set(allowed[path])
        assert not extra, f"{path} offers names real CuPy lacks: {sorted(extra)}"
        for name in _public(obj):
            value = getattr(obj, name)
            own = (isinstance(value, types.ModuleType) and value.__name__.startswith(("cupy",)))
            own = own or (isinstance(value, type)
                          and value.__module__.startswith(("fake_cupy", "cupy"))
                          and not issubclass(value, BaseException))  # errors: see below
            if own:
                walk(f"{path}.{name}", value)

    for name, root in roots.items():
        walk(name, root)
    assert {"cupy.cuda.Event", "cupy.cuda.Stream", "cupy.ElementwiseKernel",
            "cupy.cuda.runtime", "cupyx.scipy.special"} <= {p for p in allowed if p}
    # instances carry only their class's real names too
    ins, outs, op, name = elementwise_spec("sigmoid_fwd", np.float32, 1)
    module = cupy.RawModule(code="__global__ void f() {}", name_expressions=["f"])
    instances = {"cupy.ndarray": cupy.zeros(3), "cupy.ufunc": cupy.exp,
                 "cupy.ElementwiseKernel": cupy.ElementwiseKernel(ins, outs, op, name=name),
                 "cupy.ReductionKernel": cupy.ReductionKernel("T x", "bool y", "isfinite(x)",
                                                              "a && b", "y = a", "true"),
                 "cupy.RawModule": module, "cupy.cuda.Device": cupy.cuda.Device(0),
                 "cupy.cuda.Event": cupy.cuda.Event(), "cupy.cuda.Stream": cupy.cuda.Stream(),
                 "cupy.random.Generator": cupy.random.default_rng(0),
                 "cupy.cuda.memory.MemoryPool": cupy.get_default_memory_pool()}
    for path, obj in instances.items():
        extra = _public(obj) - set(allowed[path])
        assert not extra, f"a {path} offers names real CuPy lacks: {sorted(extra)}"


@needs_real_cupy
def test_the_allow_list_is_what_the_installed_cupy_has():
    out = subprocess.run([sys.executable, str(TESTS / "cupy_names.py"), "--print"],
                         capture_output=True, text=True, check=True).stdout
    committed = (TESTS / "cupy_names.json").read_text()
    assert out == committed, ("tests/cupy_names.json differs from the installed CuPy's names: "
                              "rerun `python tests/cupy_names.py` and commit the file")


# ---- arrays -----------------------------------------------------------------------------------
def test_implicit_host_conversions_raise_as_in_cupy(cupy):
    a = cupy.arange(3.0)
    host = np.ones(3)
    for attempt in (lambda: np.asarray(a), lambda: a + host, lambda: host + a,
                    lambda: cupy.exp(host), lambda: cupy.maximum(a, host),
                    lambda: cupy.concatenate([a, host]), lambda: np.exp(a) + host):
        with pytest.raises(TypeError):
            attempt()
    assert isinstance(np.exp(a), cupy.ndarray)  # NumPy's functions dispatch to CuPy
    assert (a * np.float32(2) + 1).get().tolist() == [1.0, 3.0, 5.0]  # scalars are fine
    assert isinstance(cupy.sum(a), cupy.ndarray) and cupy.sum(a).ndim == 0


def test_ufuncs_take_only_what_cupys_take(cupy):
    a = cupy.arange(4.0)
    with pytest.raises(TypeError, match="Wrong arguments"):
        cupy.add(a, a, where=a > 1)  # NumPy's where= is CuPy's private _where
    for refused in (lambda: cupy.maximum.reduce(a), lambda: cupy.subtract.accumulate(a),
                    lambda: cupy.exp.at(a, [0])):
        with pytest.raises(NotImplementedError, match="is not supported yet"):
            refused()
    assert float(cupy.add.reduce(a)) == 6.0 and cupy.multiply.accumulate(a + 1)[-1] == 24.0
    out = cupy.empty(4)
    assert cupy.add(a, 1, out=out) is out and out.get().tolist() == [1.0, 2.0, 3.0, 4.0]
    cupy.maximum.at(out, cupy.asarray([0, 0]), 9.0)
    assert out[0] == 9.0


def test_explicit_copies_to_the_host_are_counted(cupy):
    a = cupy.asarray([1.5, 2.5])
    stats.reset()
    copies = [cupy.asnumpy(a), a.get(), a[0].item(), float(a[0]), int(a[1]), bool(a[0]),
              a.tolist()]
    assert stats.device_to_host == len(copies)
    assert copies[0].tolist() == [1.5, 2.5] and copies[3:6] == [1.5, 2, True]
    cupy.asnumpy(np.ones(2))  # already on the host: no copy from the device
    a + a
    assert stats.device_to_host == len(copies)


def test_views_are_views_and_know_their_owner(cupy):
    a = cupy.zeros((2, 3))
    v = a[1]
    v[2] = 5.0
    a[0, 1] += 7.0  # a 0-d view, as in CuPy
    assert a.get().tolist() == [[0, 7, 0], [0, 0, 5]]
    assert v.base is a and a.T.base is a and a.base is None
    assert a.astype(a.dtype, copy=False) is a


# ---- devices ----------------------------------------------------------------------------------
def test_integer_array_indices_wrap_around_as_in_cupy(cupy):
    """CuPy takes an integer index array modulo its axis (NumPy raises); a scalar still
    raises, and masks are not indices."""
    a = cupy.arange(6.0).reshape(2, 3)
    assert a[..., [3, -4]].get().tolist() == [[0.0, 2.0], [3.0, 5.0]]
    assert a[[2], [4]].get().tolist() == [1.0]
    assert a[None, [3]].get().tolist() == [[[3.0, 4.0, 5.0]]]
    assert a[a > 2].get().tolist() == [3.0, 4.0, 5.0]
    assert cupy.arange(300.0)[cupy.asarray([255], dtype=np.uint8)].get().tolist() == [255.0]
    a[[2], [4]] = 9.0
    assert a.get().tolist() == [[0.0, 9.0, 2.0], [3.0, 4.0, 5.0]]
    b = cupy.zeros(3)
    cupy_x = __import__("cupyx")
    cupy_x.scatter_add(b, cupy.asarray([3, 4, -1]), 1.0)
    assert b.get().tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(IndexError):
        a[5]


def test_device_switches_and_array_devices(two_gpus):
    cupy = two_gpus
    rt = cupy.cuda.runtime
    stats.reset()
    assert rt.getDevice() == 0 and rt.getDeviceCount() == 2
    with cupy.cuda.Device(1):
        assert rt.getDevice() == 1
        b = cupy.ones(3)
        with cupy.cuda.Device(1):  # already current: only the exit sets it (as CuPy)
            pass
    assert rt.getDevice() == 0 and b.device.id == 1 and cupy.zeros(1).device.id == 0
    assert stats.set_device == 3
    with cupy.cuda.Device(0):  # the current device: one setDevice, on exit
        pass
    assert stats.set_device == 4
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="invalid device ordinal"):
        rt.setDevice(2)


def test_work_on_another_devices_array_raises_as_cupy_without_peer_access(two_gpus):
    cupy = two_gpus
    with cupy.cuda.Device(1):
        b = cupy.ones(3, dtype=cupy.float32)
    a = cupy.ones(3, dtype=cupy.float32)
    ins, outs, op, name = elementwise_spec("sigmoid_fwd", np.float32, 1)
    kernel = cupy.ElementwiseKernel(ins, outs, op, name=name, preamble="namespace gpuad {}")
    for attempt in (lambda: b + 1, lambda: a + b, lambda: cupy.exp(b), lambda: b.sum(),
                    lambda: kernel(b)):
        with pytest.raises(ValueError, match=r"resides \(1\).*current device \(0\).*Peer "
                                             "access is unavailable"):
            attempt()
    assert b.copy().device.id == 0  # CuPy copies across devices
    assert cupy.asarray(b).device.id == 0 and cupy.asarray(a) is a
    assert b.reshape(3, 1).device.id == 1  # a view stays where its memory is
    with cupy.cuda.Device(1):
        assert (b + 1).device.id == 1 and kernel(b).device.id == 1


# ---- kernels ----------------------------------------------------------------------------------
def test_elementwise_kernels_check_arguments_as_cupy(cupy):
    ins, outs, op, name = elementwise_spec("sigmoid_fwd", np.float32, 1)
    kernel = cupy.ElementwiseKernel(ins, outs, op, name=name, preamble="namespace gpuad {}")
    x = cupy.asarray([-2.0, 0.0, 3.0], dtype=cupy.float32)
    with pytest.raises(TypeError, match="Type is mismatched. a0"):
        kernel(x.astype(cupy.float64))
    with pytest.raises(TypeError, match="Unsupported type"):
        kernel(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="Wrong arguments"):
        kernel(x, grid=(1,))
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        kernel(x, x, x)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        cupy.ElementwiseKernel(ins, outs, op, name=name, bogus=1)(x)
    # the function comes from the operation, not from the kernel's name
    renamed = cupy.ElementwiseKernel(ins, outs, op, name="gpuad_renamed_float64",
                                     preamble="namespace gpuad {}")
    want = 1 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0])))
    np.testing.assert_allclose(renamed(x).get(), want, rtol=1e-6)
    assert renamed(x).dtype == np.float32
    launches = stats.launches  # a zero-size shape: CuPy returns the empty output unlaunched
    empty = kernel(cupy.empty((0, 3), dtype=cupy.float32))
    assert empty.shape == (0, 3) and empty.dtype == np.float32 and stats.launches == launches


def test_only_0_d_arrays_convert_to_numbers_as_in_cupy(cupy):
    """CuPy's float(a) is float(a.get()): NumPy 2.4 refuses an array of any other dimension,
    one element or not; the truth of a one-element array is taken at any dimension."""
    one = cupy.asarray([[2.5]])
    for convert in (float, int, complex):
        with pytest.raises(TypeError, match="only 0-dimensional arrays"):
            convert(one)
        assert convert(one[0, 0]) == convert(2.5)
    assert bool(one) is True and bool(cupy.zeros((1, 1, 1))) is False
    with pytest.raises(ValueError, match="truth value"):
        bool(cupy.ones(2))


def test_a_template_type_takes_the_first_arrays_dtype(cupy):
    op = "out = gpuad::exp_bwd<double>((double)a0, (double)a1);"  # a0 * a1
    kernel = cupy.ElementwiseKernel("T a0, T a1", "T out", op, name="k",
                                    preamble="namespace gpuad {}")
    x = cupy.ones(2, dtype=cupy.float64)
    assert kernel(x, x).get().tolist() == [1.0, 1.0]
    assert kernel(x, 1.5).get().tolist() == [1.5, 1.5]  # a scalar takes T
    with pytest.raises(TypeError, match="Type is mismatched. a1 .*float32.* T"):
        kernel(x, x.astype(cupy.float32))


def test_raw_modules_check_names_and_launches_as_cupy(cupy):
    from gpuad.backends.kernel_sources import inlined

    names = ["gpuad::sgd_update<float, float>"]
    stats.reset()
    module = cupy.RawModule(code=inlined("optim.cu"), options=("-std=c++17",),
                            name_expressions=names)
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match="CUDA_ERROR_NOT_FOUND"):
        module.get_function("gpuad::sgd_update<double, double>")
    fn = module.get_function(names[0])
    assert stats.get_function == 2
    p, g, buf = (cupy.asarray([1.0, 2.0], dtype=cupy.float32) for _ in range(3))
    hyper = cupy.zeros(8, dtype=cupy.float64)
    args = (p, g, buf, hyper, np.int64(2))
    with pytest.raises(TypeError, match="expected tuple"):
        fn([1], (32,), args)
    with pytest.raises(TypeError, match="integer is required"):
        fn((1.0,), (32,), args)
    for block in ((2048,), (32, 64), (1, 1, 65)):
        with pytest.raises(cupy.cuda.driver.CUDADriverError, match="CUDA_ERROR_INVALID_VALUE"):
            fn((1,), block, args)
    with pytest.raises(ValueError, match="not C-contiguous"):
        fn((1,), (32,), (cupy.zeros(4, dtype=cupy.float32)[::2], g, buf, hyper, np.int64(2)))
    with pytest.raises(TypeError, match="the kernel reads float32"):
        fn((1,), (32,), (p.astype(cupy.float64), g, buf, hyper, np.int64(2)))
    before = stats.launches
    fn((0,), (32,), args)  # CuPy makes each grid axis at least 1: an empty grid runs
    assert stats.launches == before + 1
    with pytest.raises(TypeError, match="Exactly one of"):
        cupy.RawModule(options=())


# ---- streams, events, errors -------------------------------------------------------------------
def test_events_and_streams(cupy):
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="invalid resource handle"):
        cupy.cuda.get_elapsed_time(start, stop)
    start.record()
    stop.record()
    stop.synchronize()
    assert cupy.cuda.get_elapsed_time(start, stop) >= 0.0
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null
    s = cupy.cuda.Stream()
    with s:
        assert cupy.cuda.get_current_stream() is s
        assert s.record().done
    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null


def test_out_of_memory_has_cupys_signature(cupy):
    err = cupy.cuda.memory.OutOfMemoryError(1000, 2000)
    assert isinstance(err, MemoryError)
    assert str(err) == "Out of memory allocating 1,000 bytes (allocated so far: 2,000 bytes)."
    assert str(cupy.cuda.memory.OutOfMemoryError(1000, 2000, 3000)).endswith(
        "limit set to: 3,000 bytes).")


@needs_real_cupy
def test_errors_read_as_real_cupys():
    code = ("import cupy; m = cupy.cuda.memory; print(str(m.OutOfMemoryError(1000, 2000)));"
            "print(str(m.OutOfMemoryError(5, 6, 7)));"
            "print(str(cupy.cuda.runtime.CUDARuntimeError(101)))")
    real = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout
    with installed():
        import cupy

        m = cupy.cuda.memory
        mine = "\n".join([str(m.OutOfMemoryError(1000, 2000)), str(m.OutOfMemoryError(5, 6, 7)),
                          str(cupy.cuda.runtime.CUDARuntimeError(101))]) + "\n"
    assert mine == real


# ---- installing and removing --------------------------------------------------------------------
def test_install_returns_its_removal_and_restores_everything():
    if "+standin" in getattr(sys.modules.get("cupy"), "__version__", ""):
        pytest.skip("a stand-in is installed for the whole run (tests/fake_cuda_run.py)")
    before = sys.modules.get("cupy")
    uninstall = fake_cupy.install(devices=2)
    try:
        import cupy

        assert cupy.__version__.endswith("+standin") and cupy.cuda.runtime.getDeviceCount() == 2
        with pytest.raises(RuntimeError, match="already installed"):
            fake_cupy.install()
    finally:
        uninstall()
    assert sys.modules.get("cupy") is before
    uninstall()  # a second call changes nothing


_CONTAMINATION = """
import sys
sys.path.insert(0, {tests!r})
import gpuad as ad
from fake_cupy import install

def kernels_cupy():
    from gpuad.backends import cupy_backend, cupy_kernels
    assert cupy_backend.cupy is cupy_kernels.cupy
    return cupy_kernels.cupy

def on_stand_in():
    import cupy
    assert cupy.__version__.endswith("+standin") and kernels_cupy() is cupy
    y = ad.sigmoid(ad.tensor([0.0, 2.0], device="cuda"))  # a fused kernel of the stand-in
    assert y.tolist()[0] == 0.5 and isinstance(y.array, sys.modules["cupy"].ndarray)

def on_real(real):
    import cupy
    assert cupy is real and kernels_cupy() is real
    assert not any(k.startswith("cuda") for k in ad.backends._backends)
    try:  # no driver here: the real CuPy path refuses, nothing of the stand-in is left
        ad.tensor([0.0], device="cuda")
    except ad.DeviceUnavailableError:
        pass
    else:
        assert ad.tensor([0.0], device="cuda").array.__class__ is real.ndarray

if {real_first}:
    import cupy as real
    from gpuad.backends import probe
    probe.driver_devices = lambda: (1, "")  # as if libcuda showed a GPU: without a driver,
    probe.cupy_installed = lambda: True     # real CuPy's runtime refuses it, and it is recorded
    on_real(real)
    probe.driver_cuda_version = lambda: 12040  # and a driver older than real CuPy's CUDA 13
    refused = dict(probe._refused)
    uninstall = install()
    on_stand_in()  # neither refuses the stand-in
    uninstall()
    assert probe._refused == refused and probe.driver_cuda_version() == 12040
    on_real(real)
else:
    uninstall = install()
    on_stand_in()
    uninstall()
    import cupy as real
    assert not real.__version__.endswith("+standin")
    on_real(real)
    uninstall = install()
    on_stand_in()
print("clean")
"""


@needs_real_cupy
@pytest.mark.parametrize("real_first", [True, False], ids=["real-then-stand-in",
                                                           "stand-in-then-real"])
def test_real_cupy_and_the_stand_in_cannot_contaminate_each_other(real_first):
    code = textwrap.dedent(_CONTAMINATION).format(tests=str(TESTS), real_first=real_first)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "clean", done.stderr


def test_fake_cuda_run_runs_a_module_on_the_stand_in():
    done = subprocess.run([sys.executable, str(TESTS / "fake_cuda_run.py"), "--devices", "2",
                           "-m", "gpuad", "info"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "+standin" in done.stdout and "cuda:1" in done.stdout
    usage = subprocess.run([sys.executable, str(TESTS / "fake_cuda_run.py"), "gpuad"],
                           capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 2 and "usage:" in usage.stderr


#: modules whose tests rely on the default device or on a fresh stand-in: a whole run under
#: tests/fake_cuda_run.py (cuda:0 the default, as on a GPU machine) runs them after one another
_WHOLE_RUN_MODULES = ("test_losses.py", "test_nn.py", "test_deferred_checks.py",
                      "test_cuda_refusals.py", "test_info.py", "test_devices.py")


def test_tests_pass_in_a_whole_run_under_the_stand_in():
    """As ``python tests/fake_cuda_run.py -m pytest`` on a GPU machine's default device: a test
    that means the CPU pins it, and a test's own stand-in block starts fresh although the
    run's stand-in (and its CUDA backend) was made by the tests before it."""
    if "+standin" in getattr(sys.modules.get("cupy"), "__version__", ""):
        pytest.skip("already in a whole run under the stand-in")
    done = subprocess.run([sys.executable, str(TESTS / "fake_cuda_run.py"), "-m", "pytest",
                           "-q", "-p", "no:cacheprovider", "-m", "not network",
                           *(str(TESTS / m) for m in _WHOLE_RUN_MODULES)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-500:]


def test_cuda_or_stand_in_uses_real_cuda_where_it_is_usable(monkeypatch):
    if "+standin" in getattr(sys.modules.get("cupy"), "__version__", ""):
        pytest.skip("a stand-in is installed for the whole run (tests/fake_cuda_run.py)")
    before = sys.modules.get("cupy")
    monkeypatch.setattr(ad.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ad.cuda, "device_count", lambda: 1)
    with fake_cupy.cuda_or_stand_in() as counts:  # (as where real CUDA works)
        assert counts is None and sys.modules.get("cupy") is before
    with fake_cupy.cuda_or_stand_in(devices=2) as counts:  # more GPUs than there are
        assert counts is fake_cupy.stats and sys.modules["cupy"].__version__.endswith("+standin")
    monkeypatch.setattr(ad.cuda, "is_available", lambda: False)
    with fake_cupy.cuda_or_stand_in() as counts:
        assert counts is fake_cupy.stats and sys.modules["cupy"].__version__.endswith("+standin")
    assert sys.modules.get("cupy") is before


def _selected(marks, *modules):
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-m", marks,
                           *(str(TESTS / m) for m in modules)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 5), done.stdout[-1000:]  # (5: none selected)
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_the_real_gpu_selection_runs_the_numerics_cuda_cases():
    """benchmarks/gpu_checks.sh's selection takes the cuda cases of tests that prefer real
    CUDA (tests/fake_cupy's cuda_or_stand_in), and leaves the tests that install the stand-in."""
    numerics_files = ("test_numerics_overflow.py", "test_numerics_degenerate.py",
                      "test_numerics_spread.py")
    modules = numerics_files + ("test_fake_cuda.py",)
    real = _selected("cuda and not standin and not network", *modules)
    cuda = _selected("cuda", *modules)
    numerics = {t for t in cuda if "test_numerics" in t}
    assert len(numerics) > 150 and real == numerics, sorted(real ^ numerics)[:5]
    assert not _selected("standin", *numerics_files)
