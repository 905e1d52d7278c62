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

    monkeypatch.setattr(backend, "exp", _on(backend.cuda_device, fail))
    with pytest.raises(ad.OutOfMemoryError, match=r"(?s)allocating 8,589,934,592 bytes.*1\.00 "
                                                  r"GiB free of 2\.00 GiB.*pool uses 0\.00 GiB"):
        ad.exp(x)
    assert issubclass(ad.OutOfMemoryError, MemoryError)


def test_empty_cache(fake_cuda):
    import cupy

    ad.ones(2, device="cuda")
    ad.cuda.empty_cache()
    assert cupy.get_default_memory_pool()._freed == 1


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
