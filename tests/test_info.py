"""python -m gpuad info, ad.cuda.memory_info / empty_cache / gpu_info and out-of-memory
errors, on the CuPy stand-in (with a stand-in for NVML, or without one); info never crashes:
a bad setting or an NVML query that fails is reported in its field."""
import os
import pathlib
import subprocess
import sys
import types

import pytest
from fake_cupy import installed

import gpuad as ad
from gpuad.__main__ import info


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


class NVMLError(Exception):
    """pynvml's error class (its str is NVML's message, e.g. "Not Supported")."""


def _nvml(monkeypatch, failing=(), message="Not Supported"):
    """A stand-in for pynvml; the functions named in ``failing`` raise its NVMLError."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = NVMLError
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetHandleByPciBusId = lambda bus: bus
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 << 30,
                                                                  used=20 << 30, free=60 << 30)
    nvml.nvmlDeviceGetName = lambda h: b"Fake GPU"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)
    nvml.nvmlDeviceGetTemperature = lambda h, kind: 51
    nvml.NVML_DEVICE_MIG_ENABLE = 1
    nvml.nvmlDeviceGetMigMode = lambda h: [0, 0]  # (current, pending): MIG off
    for name in failing:
        monkeypatch.setattr(nvml, name, _raising(NVMLError(message)))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def _raising(exc):
    def fail(*args):
        raise exc

    return fail


def test_info_with_a_gpu_and_nvml(fake_cuda, monkeypatch, capsys):
    _nvml(monkeypatch)
    ad.set_default_device("auto")
    assert info() == 0
    out = capsys.readouterr().out
    assert "cuda       usable" in out
    assert "default    cuda:0 (auto: a usable GPU was found)" in out
    assert "CUDA runtime 13.0, driver 13.1" in out
    assert ("cuda:0     Fake GPU, compute capability 9.0, memory 20.0 used / 60.0 free / 80.0 "
            "GiB, utilization 37%, 51 C") in out
    assert "kernels    " in out
    assert ad.cuda.memory_info("cuda:0") == (60 << 30, 80 << 30)
    assert ad.cuda.gpu_info()[0]["temperature"] == 51


def test_info_without_nvml_falls_back(fake_cuda, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    info()
    out = capsys.readouterr().out
    assert "nvml       not installed (pip install nvidia-ml-py)" in out
    assert "memory 1.0 used / 1.0 free / 2.0 GiB" in out  # CuPy's memGetInfo
    assert ad.cuda.memory_info() == (1 << 30, 2 << 30) and ad.cuda.gpu_info() is None


def test_out_of_memory_names_the_numbers(fake_cuda, monkeypatch):
    import cupy

    x = ad.ones(4, device="cuda")
    backend = x.device.backend

    def fail(*a, **k):
        raise cupy.cuda.memory.OutOfMemoryError(8_589_934_592, 0)  # (size, total)

    from gpuad.backends.cupy_backend import _on

    monkeypatch.setattr(backend, "exp", _on(backend, fail))
    with pytest.raises(ad.OutOfMemoryError, match=r"(?s)allocating 8,589,934,592 bytes.*1\.00 "
                                                  r"GiB free of 2\.00 GiB.*pool uses 0\.00 GiB"):
        ad.exp(x)
    assert issubclass(ad.OutOfMemoryError, MemoryError)


def _library_error(name, status, text):
    """An error shaped like CuPy's wrappers of the CUDA libraries' (its class name and
    ``status``), made here: loading cupy_backends' cublas needs libcublas installed."""

    def init(self, code):
        Exception.__init__(self, text)
        self.status = code

    return type(name, (RuntimeError,), {"__init__": init})(status)


#: (class name, status, message): each a failed allocation in a library's own workspace
WORKSPACE_OOM = [("CUBLASError", 3, "CUBLAS_STATUS_ALLOC_FAILED"),
                 ("CURANDError", 102, "CURAND_STATUS_ALLOCATION_FAILED"),
                 ("CUDARuntimeError", 2, "cudaErrorMemoryAllocation: out of memory"),
                 ("CUDADriverError", 2, "CUDA_ERROR_OUT_OF_MEMORY: out of memory")]


@pytest.mark.parametrize("name,status,text", WORKSPACE_OOM)
def test_out_of_memory_in_a_library_workspace_is_out_of_memory(fake_cuda, monkeypatch, name,
                                                                 status, text):
    """cuBLAS (matmul), cuRAND (CuPy's legacy random functions) and CUB/the runtime (a
    reduction's temporary) allocate outside CuPy's pool and say so in their own error; each is
    ad.OutOfMemoryError."""
    x = ad.ones((4, 4), device="cuda")
    backend = x.device.backend
    from gpuad.backends.cupy_backend import _on

    def fail(*a, **k):
        raise _library_error(name, status, text)

    monkeypatch.setattr(backend, "matmul", _on(backend, fail))
    with pytest.raises(ad.OutOfMemoryError, match=rf"(?s)cuda:0: {text}.*GiB free of 2\.00"):
        x @ x


@pytest.mark.parametrize("name,status", [("CUBLASError", 13), ("CURANDError", 201),
                                         ("CUDARuntimeError", 700), ("CUDADriverError", 700)])
def test_other_library_errors_are_not_called_out_of_memory(fake_cuda, monkeypatch, name,
                                                           status):
    x = ad.ones((4, 4), device="cuda")
    backend = x.device.backend
    from gpuad.backends.cupy_backend import _on

    monkeypatch.setattr(backend, "matmul",
                        _on(backend, _raising(_library_error(name, status, "execution failed"))))
    with pytest.raises(RuntimeError, match="execution failed") as caught:
        x @ x
    assert not isinstance(caught.value, ad.OutOfMemoryError)


REAL_CUPY_ERRORS = """
import cupy
from gpuad.backends.cuda_errors import is_out_of_memory
pool = cupy.cuda.memory.OutOfMemoryError
runtime = cupy.cuda.runtime.CUDARuntimeError
print(is_out_of_memory(pool(1 << 33, 0), pool), is_out_of_memory(runtime(2), pool),
      is_out_of_memory(runtime(700), pool), is_out_of_memory(runtime(35), pool),
      runtime(2).__class__.__name__, runtime(2).status)
"""


def test_real_cupy_errors_are_told_apart_by_class_name_and_status():
    """The classification reads real CuPy 14.2's errors as the stand-in's fakes above: its
    pool's OutOfMemoryError, and CUDARuntimeError with cudaErrorMemoryAllocation (2), but not
    an illegal address (700) or an old driver (35). (cuBLAS's and cuRAND's error classes
    need their libraries to load, so those are only checked by name above.) In a subprocess:
    real CuPy is not imported here."""
    import importlib.util

    if importlib.util.find_spec("cupy") is None:
        pytest.skip("real CuPy is not installed")
    run = subprocess.run([sys.executable, "-c", REAL_CUPY_ERRORS], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "True", "False", "False", "CUDARuntimeError", "2"]


def test_out_of_memory_in_a_row_kernel_launch_is_out_of_memory(fake_cuda, monkeypatch):
    """A launch that fails for memory (the driver's CUDA_ERROR_OUT_OF_MEMORY) is not wrapped
    as a generic kernel error: it reaches the caller as ad.OutOfMemoryError."""
    from gpuad.backends import cupy_kernels

    cupy = cupy_kernels.cupy  # (the CuPy that the kernels' module bound)
    x = ad.ones((8, 5), device="cuda")
    backend = x.device.backend
    error = _library_error("CUDADriverError", 2, "CUDA_ERROR_OUT_OF_MEMORY")
    monkeypatch.setattr(cupy.cuda.driver, "CUDADriverError", type(error))

    class Module:
        def __init__(self, **kw):
            pass

        def get_function(self, name):
            def launch(grid, block, args):
                raise error
            return launch

    monkeypatch.setattr(cupy, "RawModule", Module)
    with pytest.raises(ad.OutOfMemoryError, match="CUDA_ERROR_OUT_OF_MEMORY"):
        backend.softmax(x._a, 1)


def test_empty_cache(fake_cuda):
    import cupy

    ad.ones(2, device="cuda")
    ad.cuda.empty_cache()
    assert cupy.get_default_memory_pool()._freed == 1


def test_empty_cache_leaves_a_cupy_that_gpuad_never_used_alone(monkeypatch):
    """CuPy imported by someone else on a machine without a usable GPU: its pools would raise
    CUDARuntimeError; before any CUDA tensor of gpuad's, there is nothing of gpuad's to free."""
    import types

    from gpuad import backends

    def refuse():
        raise AssertionError("a CuPy memory pool was touched")

    cupy = types.SimpleNamespace(get_default_memory_pool=refuse,
                                 get_default_pinned_memory_pool=refuse)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(backends, "_backends", {"cpu": object()})
    ad.cuda.empty_cache()


def test_info_command_on_this_machine():
    out = subprocess.run([sys.executable, "-m", "gpuad", "info"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "default    " in out and "kernels    " in out
    if not ad.cuda.is_available():
        assert "default    cpu (auto: no usable GPU, see cuda above)" in out or \
            "GPUAD_DEVICE" in out
    assert out.count("\n") >= 8


# ---- NVML errors are reported per field, never a crash ------------------------------------

GPU_LINE = "cuda:0     Fake GPU, compute capability 9.0, "


@pytest.mark.parametrize("failing, expected", [
    (("nvmlDeviceGetUtilizationRates",),  # a MIG device
     "memory 20.0 used / 60.0 free / 80.0 GiB, utilization n/a (NVML: Not Supported), 51 C"),
    (("nvmlDeviceGetTemperature",),
     "memory 20.0 used / 60.0 free / 80.0 GiB, utilization 37%, n/a (NVML: Not Supported)"),
    (("nvmlDeviceGetMemoryInfo",),  # the CUDA runtime's numbers instead
     "memory 1.0 used / 1.0 free / 2.0 GiB, utilization 37%, 51 C"),
    (("nvmlDeviceGetHandleByPciBusId",),
     "memory 1.0 used / 1.0 free / 2.0 GiB, utilization n/a (NVML: Not Supported), "
     "n/a (NVML: Not Supported)"),
])
def test_info_reports_a_failing_nvml_query_in_its_field(fake_cuda, monkeypatch, capsys,
                                                       failing, expected):
    _nvml(monkeypatch, failing)
    assert info() == 0
    out = capsys.readouterr().out
    assert GPU_LINE + expected in out, out
    assert "kernels    " in out and "Traceback" not in out


def test_gpu_info_leaves_refused_fields_none_with_nvml_message(fake_cuda, monkeypatch):
    _nvml(monkeypatch, ("nvmlDeviceGetUtilizationRates", "nvmlDeviceGetName"))
    (gpu,) = ad.cuda.gpu_info()
    assert gpu["utilization"] is None and gpu["name"] is None
    assert gpu["temperature"] == 51 and gpu["memory_free"] == 60 << 30
    assert gpu["errors"] == {"utilization": "Not Supported", "name": "Not Supported"}
    _nvml(monkeypatch, ("nvmlDeviceGetMemoryInfo",))
    assert ad.cuda.memory_info("cuda:0") == (1 << 30, 2 << 30)  # the CUDA runtime answers


def test_info_when_nvml_does_not_start(fake_cuda, monkeypatch, capsys):
    """A container without libnvidia-ml: pynvml imports, nvmlInit fails."""
    _nvml(monkeypatch, ("nvmlInit",), message="NVML Shared Library Not Found")
    assert info() == 0
    out = capsys.readouterr().out
    assert ("nvml       installed, but NVML did not start: NVML Shared Library Not Found: no "
            "utilization or temperature") in out
    assert GPU_LINE + "memory 1.0 used / 1.0 free / 2.0 GiB" in out
    assert ad.cuda.gpu_info() is None and ad.cuda.memory_info() == (1 << 30, 2 << 30)


# ---- MIG, the temperature API, NVML failing outside a field ----------------------------------

def _nvml_error(value, message):
    """An NVMLError with NVML's return code in ``value``, as pynvml's carry it."""
    exc = NVMLError(message)
    exc.value = value
    return exc


def _mig(monkeypatch):
    """A GPU in MIG mode as NVML shows it from a MIG instance: its handle (found by the PCI
    bus id) is the whole GPU's (80 GiB), utilization is refused."""
    nvml = _nvml(monkeypatch, ("nvmlDeviceGetUtilizationRates",))
    nvml.nvmlDeviceGetMigMode = lambda h: [1, 1]
    return nvml


def test_gpu_info_on_a_mig_instance_reports_the_instance_memory(fake_cuda, monkeypatch):
    _mig(monkeypatch)
    (gpu,) = ad.cuda.gpu_info()
    assert gpu["mig"] is True
    # the CUDA runtime's view (the stand-in's instance: 1 GiB free of 2), not NVML's 80 GiB
    assert (gpu["memory_total"], gpu["memory_free"], gpu["memory_used"]) == (
        2 << 30, 1 << 30, 1 << 30)
    assert gpu["utilization"] is None
    assert gpu["errors"] == {
        "utilization": "Not Supported (NVML has no utilization per MIG instance)"}
    assert ad.cuda.memory_info("cuda:0") == (1 << 30, 2 << 30)


def test_info_on_a_mig_instance(fake_cuda, monkeypatch, capsys):
    _mig(monkeypatch)
    assert info() == 0
    out = capsys.readouterr().out
    assert (GPU_LINE + "memory 1.0 used / 1.0 free / 2.0 GiB (a MIG instance), utilization n/a "
            "(NVML: Not Supported (NVML has no utilization per MIG instance)), 51 C") in out, out


@pytest.mark.parametrize("how", ["off", "refused", "absent"])
def test_a_gpu_without_mig_keeps_nvml_memory(fake_cuda, monkeypatch, how):
    """MIG off, a GPU without MIG (NVML refuses the query: Not Supported) or an nvidia-ml-py
    without the query: NVML's memory is the device's."""
    nvml = _nvml(monkeypatch, ("nvmlDeviceGetMigMode",) if how == "refused" else ())
    if how == "absent":
        del nvml.nvmlDeviceGetMigMode
    (gpu,) = ad.cuda.gpu_info()
    assert gpu["mig"] is False and gpu["memory_total"] == 80 << 30 and gpu["errors"] == {}
    assert ad.cuda.memory_info("cuda:0") == (60 << 30, 80 << 30)


def _temperatures(monkeypatch, v_result):
    """NVML with both temperature calls; ``v_result`` is what the current one returns (or
    raises); the calls made are listed in the returned list."""
    nvml = _nvml(monkeypatch)
    calls = []

    def current(handle, sensor):
        calls.append(("V", sensor))
        if isinstance(v_result, Exception):
            raise v_result
        return v_result

    def deprecated(handle, sensor):
        calls.append(("deprecated", sensor))
        return 51

    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.NVML_ERROR_FUNCTION_NOT_FOUND = 13
    nvml.nvmlDeviceGetTemperatureV = current
    nvml.nvmlDeviceGetTemperature = deprecated
    return calls


def test_temperature_uses_the_current_api(fake_cuda, monkeypatch):
    calls = _temperatures(monkeypatch, 47)
    assert ad.cuda.gpu_info()[0]["temperature"] == 47
    assert calls == [("V", 0)]


def test_temperature_falls_back_where_the_driver_lacks_the_current_call(fake_cuda,
                                                                          monkeypatch):
    calls = _temperatures(monkeypatch, _nvml_error(13, "Function Not Found"))
    assert ad.cuda.gpu_info()[0]["temperature"] == 51
    assert calls == [("V", 0), ("deprecated", 0)]


def test_temperature_refused_by_the_current_call_is_reported(fake_cuda, monkeypatch):
    calls = _temperatures(monkeypatch, _nvml_error(3, "Not Supported"))
    (gpu,) = ad.cuda.gpu_info()
    assert gpu["temperature"] is None and gpu["errors"] == {"temperature": "Not Supported"}
    assert calls == [("V", 0)]


def test_temperature_with_an_older_nvidia_ml_py(fake_cuda, monkeypatch):
    """nvidia-ml-py without nvmlDeviceGetTemperatureV: the deprecated call."""
    _nvml(monkeypatch)
    assert ad.cuda.gpu_info()[0]["temperature"] == 51


def test_info_survives_nvml_failing_outside_a_field(fake_cuda, monkeypatch, capsys):
    """nvmlShutdown refusing, and an error of CUDA itself while NVML is asked: info reports
    it in the nvml field and goes on."""
    import cupy

    _nvml(monkeypatch, ("nvmlShutdown",), message="Uninitialized")
    assert ad.cuda.gpu_info()[0]["temperature"] == 51
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", _raising(RuntimeError("lost")))
    assert info() == 0
    out = capsys.readouterr().out
    assert "nvml       error: RuntimeError: lost: no utilization or temperature" in out, out
    assert GPU_LINE + "memory 20.0 used / 60.0 free / 80.0 GiB" in out


# ---- python -m gpuad info with bad settings, in a pipe, with bad options ---------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _info(*args, stdout=subprocess.PIPE, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("GPUAD_DEVICE", "GPUAD_CPU_FALLBACK")}
    return subprocess.run([sys.executable, "-m", "gpuad", "info", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT,
                          env={**full_env, **env})


def _no_gpu():
    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")


@pytest.mark.parametrize("env, expected", [
    ({"GPUAD_DEVICE": "bogus"},
     "default    error: GPUAD_DEVICE='bogus' is not a device: use 'auto' (the default), 'cpu', "
     "'cuda' or 'cuda:N'"),
    ({"GPUAD_DEVICE": "cuda"}, "default    error: cannot use cuda:0: "),
    ({"GPUAD_CPU_FALLBACK": "banana"},
     "fallback   error: GPUAD_CPU_FALLBACK='banana' is not a valid setting: use one of 1, true, "
     "yes, on"),
    ({"GPUAD_CPU_FALLBACK": "yes"}, "fallback   on (GPUAD_CPU_FALLBACK='yes')"),
])
def test_info_reports_a_bad_setting_and_prints_the_rest(env, expected):
    if env.get("GPUAD_DEVICE") == "cuda":
        _no_gpu()
    r = _info(**env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert expected in r.stdout, r.stdout
    for label in ("gpuad", "python", "numpy", "cupy", "gpus", "cuda", "default", "fallback",
                  "kernels"):
        assert f"\n{label:<10} " in "\n" + r.stdout, label
    if env.get("GPUAD_DEVICE") == "cuda":
        assert "(GPUAD_DEVICE='cuda' asks for it: unset it or set GPUAD_DEVICE=cpu)" in r.stdout


def test_info_into_a_closed_pipe_is_quiet():
    """python -m gpuad info | head -1, with the reader gone before info writes a byte."""
    read, write = os.pipe()
    os.close(read)
    try:
        r = _info(stdout=write)
    finally:
        os.close(write)
    assert r.returncode == 141 and r.stderr == "", r.stderr  # (the shell's SIGPIPE status)


def test_info_piped_into_head():
    """Quiet, and not a failure status (1): 141, the shell's status for a command ended by
    SIGPIPE (as ``yes | head -1``), or 0 where info wrote everything before head left."""
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m gpuad info | head -1; "
                        "echo \"status ${PIPESTATUS[0]}\""], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("gpuad      ") and len(lines) == 2, r.stdout
    assert lines[1] in ("status 141", "status 0"), r.stdout
    assert r.stderr == "", r.stderr


def test_info_refuses_an_unknown_option():
    r = _info("--bogus")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("usage: ") and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].endswith("error: unrecognized arguments: --bogus")
