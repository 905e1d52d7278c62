"""python -m gpuad info, ad.cuda.memory_info / empty_cache / gpu_info and out-of-memory
errors, on the CuPy stand-in (with a stand-in for NVML, or without one)."""
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


def _nvml(monkeypatch):
    nvml = types.ModuleType("pynvml")
    nvml.NVML_TEMPERATURE_GPU = 0
    nvml.nvmlInit = nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetHandleByPciBusId = lambda bus: bus
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 << 30,
                                                                  used=20 << 30, free=60 << 30)
    nvml.nvmlDeviceGetName = lambda h: b"Fake GPU"
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)
    nvml.nvmlDeviceGetTemperature = lambda h, kind: 51
    monkeypatch.setitem(sys.modules, "pynvml", nvml)


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
        raise cupy.cuda.memory.OutOfMemoryError("Out of memory allocating 8,589,934,592 bytes")

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
    assert cupy.get_default_memory_pool().freed == 1


def test_info_command_on_this_machine():
    out = subprocess.run([sys.executable, "-m", "gpuad", "info"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "default    " in out and "kernels    " in out
    if not ad.cuda.is_available():
        assert "default    cpu (auto: no usable GPU, see cuda above)" in out or \
            "GPUAD_DEVICE" in out
    assert out.count("\n") >= 8
