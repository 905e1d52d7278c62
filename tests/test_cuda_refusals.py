"""A GPU that the driver shows but CUDA cannot use: a driver older than the CUDA the installed
CuPy is built for, found by the probe (without CuPy) or refused by the CUDA runtime when the
backend is made. Either way: DeviceUnavailableError with the versions and the fix,
``ad.cuda.is_available()`` False, so the CPU fallback and the tests' skip work."""
import ctypes
import importlib.metadata
import re
import sys

import pytest
from fake_cupy import installed

import gpuad as ad
from gpuad.backends import probe
from gpuad.devices import _Policy

CUPY13 = ("cupy-cuda13x", "14.2.0", 13)


@pytest.fixture
def fake_cuda(monkeypatch):
    """The stand-in with one GPU, a fresh device policy and no refusal recorded yet."""
    monkeypatch.setattr(probe, "_refused", {})
    monkeypatch.delenv("GPUAD_CPU_FALLBACK", raising=False)
    saved = (_Policy.fallback, _Policy.warned)
    _Policy.fallback, _Policy.warned = None, False
    with installed(monkeypatch):
        yield
    _Policy.fallback, _Policy.warned = saved


def _driver(monkeypatch, version, build=CUPY13):
    monkeypatch.setattr(probe, "driver_cuda_version", lambda: version)
    monkeypatch.setattr(probe, "cupy_build", lambda: build)


def test_driver_too_old_names_both_versions_and_the_fix(monkeypatch):
    _driver(monkeypatch, 12040)
    why = probe.driver_too_old()
    assert "supports CUDA 12.4" in why and "CUDA 13" in why and "cupy-cuda13x 14.2.0" in why
    assert "update the NVIDIA driver" in why and "pip install '.[cuda12]'" in why


def test_a_driver_older_than_any_extra_is_told_to_update(monkeypatch):
    _driver(monkeypatch, 11080)
    why = probe.driver_too_old()
    assert "supports CUDA 11.8" in why and "update the NVIDIA driver to one for CUDA 13" in why
    assert "cuda11" not in why


@pytest.mark.parametrize("version,build", [(13000, CUPY13), (13010, CUPY13),
                                           (12080, ("cupy-cuda12x", "14.2.0", 12)),
                                           (None, CUPY13),  # no libcuda: the probe says so
                                           (12040, None)])  # a source build: unknown
def test_driver_new_enough_or_unknown_is_not_refused(monkeypatch, version, build):
    _driver(monkeypatch, version, build)
    assert probe.driver_too_old() is None


def test_cupy_build_is_read_from_the_installed_wheel():
    """Checked against the package metadata itself (the name says the CUDA major)."""
    if probe.cupy_build.__wrapped__() is None:
        pytest.skip("no cupy-cudaNNx wheel installed here")
    dist, version, major = probe.cupy_build.__wrapped__()
    assert importlib.metadata.version(dist) == version
    assert dist == f"cupy-cuda{major}x"


def test_probe_refuses_an_old_driver(fake_cuda, monkeypatch):
    _driver(monkeypatch, 12040)
    assert ad.cuda.is_available() is False
    with pytest.raises(ad.DeviceUnavailableError,
                       match=r"cuda:0: the NVIDIA driver supports CUDA 12\.4.*cupy-cuda13x"):
        ad.ones(2, device="cuda")
    ad.set_cpu_fallback(True)
    with pytest.warns(RuntimeWarning, match="CUDA 12.4"):
        x = ad.ones(2, device="cuda")
    assert x.device == "cpu"


def _runtime_refuses(monkeypatch, status, text):
    """Make the CUDA runtime fail as it does with a driver older than CuPy's runtime: CuPy
    imports, the probe passes, and the first device call raises CUDARuntimeError."""
    import cupy

    runtime = cupy.cuda.runtime

    class Refused(runtime.CUDARuntimeError):
        def __init__(self):
            Exception.__init__(self, text)
            self.status = status

    def refuse(*a, **k):
        raise Refused()

    monkeypatch.setattr(cupy.cuda.Device, "__enter__", refuse)
    return Refused


def test_runtime_refusal_at_backend_creation_is_device_unavailable(fake_cuda, monkeypatch):
    _runtime_refuses(monkeypatch, 35, "cudaErrorInsufficientDriver: CUDA driver version is "
                                      "insufficient for CUDA runtime version")
    assert ad.cuda.is_available() is True  # (the probe cannot tell)
    with pytest.raises(ad.DeviceUnavailableError) as caught:
        ad.ones(2, device="cuda:0")
    message = str(caught.value)
    assert "cudaErrorInsufficientDriver" in message and "update the NVIDIA driver" in message
    assert re.search(r"CUDA runtime \d+\.\d+ and the driver supports CUDA \d+\.\d+", message)
    assert ad.cuda.is_available() is False  # recorded: the tests' skip sees it
    assert "cudaErrorInsufficientDriver" in probe.cuda_unavailable_reason(0)


@pytest.mark.parametrize("status, name", [
    (35, "cudaErrorInsufficientDriver"), (803, "cudaErrorSystemDriverMismatch"),
    (804, "cudaErrorCompatNotSupportedOnDevice")])
def test_runtime_refusal_falls_back_to_the_cpu_when_asked(fake_cuda, monkeypatch, status, name):
    _runtime_refuses(monkeypatch, status, name)
    ad.set_cpu_fallback(True)
    with pytest.warns(RuntimeWarning, match=name):
        x = ad.ones(2, device="cuda")
    assert x.device == "cpu"


def test_a_cupy_that_fails_to_import_falls_back_to_the_cpu_when_asked(fake_cuda, monkeypatch):
    """CuPy installed but broken (a missing CUDA library): the backend's import fails, which
    the probe cannot see; the fallback still takes the CPU, saying why."""
    monkeypatch.setitem(sys.modules, "gpuad.backends.cupy_backend", None)  # (import fails)
    ad.set_cpu_fallback(True)
    with pytest.warns(RuntimeWarning, match="CuPy is installed but failed to import"):
        x = ad.ones(2, device="cuda")
    assert x.device == "cpu"


def test_auto_device_is_the_cpu_when_the_runtime_refuses(fake_cuda, monkeypatch):
    from gpuad.devices import _auto

    _runtime_refuses(monkeypatch, 35, "cudaErrorInsufficientDriver")
    assert _auto() == "cpu"


def test_other_runtime_errors_at_creation_are_not_hidden(fake_cuda, monkeypatch):
    """Only the errors that mean "this device cannot be used" become DeviceUnavailableError;
    another (an illegal address left by earlier work, say) propagates as it is."""
    refused = _runtime_refuses(monkeypatch, 700, "cudaErrorIllegalAddress")
    with pytest.raises(refused):
        ad.ones(2, device="cuda")
    assert ad.cuda.is_available() is True


REAL_RUNTIME_REFUSAL = """
import warnings
import gpuad as ad
from gpuad.backends import probe
probe.driver_devices = lambda: (1, "")  # as if libcuda had shown a GPU
probe.cupy_installed = lambda: True
try:
    ad.ones(2, device="cuda")
except ad.DeviceUnavailableError as exc:
    print("refused:", exc)
print("available:", ad.cuda.is_available())
ad.set_cpu_fallback(True)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    print("fallback:", ad.ones(2, device="cuda").device)
"""


def test_real_cupy_without_a_driver_is_refused_as_device_unavailable():
    """Real CuPy on a machine without a driver: its runtime answers the first device call
    with cudaErrorInsufficientDriver, exactly as with a driver too old for its CUDA. Run in
    a subprocess (real CuPy is imported there, not in this process)."""
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("cupy") is None:
        pytest.skip("real CuPy is not installed")
    try:  # (the probe's answer may be the stand-in's, in a whole run under it)
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        pass
    else:
        pytest.skip("a driver is installed: its runtime would not refuse")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", REAL_RUNTIME_REFUSAL], capture_output=True,
                         text=True, timeout=120, cwd=root)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("refused: gpuad: cannot use cuda:0: the CUDA runtime refused it "
                               "(cudaErrorInsufficientDriver"), lines
    assert "update the NVIDIA driver" in lines[0]
    assert lines[1:] == ["available: False", "fallback: cpu"]


def test_install_hints_quote_the_extras_that_pyproject_declares():
    """A hint installs what gpuad's own extra would (CuPy with its CUDA toolkit wheels, the
    bounds included), read from gpuad's metadata: one source, pyproject.toml."""
    import pathlib

    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    probe.extra_requirements.cache_clear()
    if not probe.extra_requirements("test"):
        pytest.skip("gpuad's metadata is not installed (run from a checkout without pip)")
    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for extra, wanted in extras.items():
        got = probe.extra_requirements(extra)
        assert {str(Requirement(r)) for r in got} == {str(Requirement(r)) for r in wanted}
        hint = probe.install_hint(extra)
        assert all(f"'{r}'" in hint or f" {r} " in hint for r in got), hint
        assert hint.endswith(f"(or, in gpuad's folder, pip install '.[{extra}]')")
    assert "'cupy-cuda13x[ctk]>=14' nvidia-ml-py" in probe.cuda_install_hint()
