"""SPEC sections 1-2: devices, CUDA availability, CPU fallback, device mixing.

On a machine without a usable GPU the CUDA-only tests are skipped (not failed); the tests of
the unavailable path are skipped where a GPU *is* usable.
"""
import importlib.util
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gpuad as ad
from gpuad.devices import _Policy, cpu_fallback_enabled

HAS_CUDA = ad.cuda.is_available()
#: a whole run under tests/fake_cuda_run.py: the stand-in is CuPy from the start, but not in a
#: fresh interpreter (_run), whose CUDA this process then cannot tell
WHOLE_RUN_STAND_IN = "+standin" in getattr(sys.modules.get("cupy"), "__version__", "")
needs_the_runs_cuda_in_a_subprocess = pytest.mark.skipif(
    WHOLE_RUN_STAND_IN, reason="a fresh interpreter does not have the whole run's stand-in")


def needs_cuda(test):
    """A real-GPU test: marked ``cuda`` (benchmarks/gpu_checks.sh selects those), skipped
    without a usable CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not HAS_CUDA, reason="no usable CUDA device")(test))


needs_no_cuda = pytest.mark.skipif(HAS_CUDA, reason="a usable CUDA device is present")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def fresh_policy(monkeypatch):
    """Each test starts with the device policy unread from the environment, and restores it."""
    policy = _Policy
    saved = (policy.default, policy.fallback, policy.warned)
    monkeypatch.delenv("GPUAD_CPU_FALLBACK", raising=False)
    policy.fallback = None
    policy.warned = False
    yield
    policy.default, policy.fallback, policy.warned = saved


def _run(code, **env):
    """Run ``code`` in a fresh interpreter from the repository root; returns CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("GPUAD_DEVICE", "GPUAD_CPU_FALLBACK")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


# ---- error classes --------------------------------------------------------------------------

def test_error_hierarchy():
    assert issubclass(ad.DeviceMismatchError, RuntimeError)
    assert issubclass(ad.DeviceUnavailableError, RuntimeError)
    assert issubclass(ad.GradcheckError, RuntimeError)


# ---- availability queries -------------------------------------------------------------------

def test_cuda_queries_types():
    assert isinstance(ad.cuda.is_available(), bool)
    n = ad.cuda.device_count()
    assert isinstance(n, int) and n >= 0
    if ad.cuda.is_available():
        assert n >= 1


def test_is_available_false_without_cupy():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    assert ad.cuda.is_available() is False


@needs_no_cuda
def test_memory_info_unavailable():
    with pytest.raises(ad.DeviceUnavailableError):
        ad.cuda.memory_info()


# ---- explicit cuda without a GPU --------------------------------------------------------------

def _assert_helpful(msg):
    low = msg.lower()
    assert any(w in low for w in ("cupy", "driver", "gpu", "no cuda device", "no device")), msg
    assert any(w in low for w in ("install", "pip", "gpuad_cpu_fallback", "device='cpu'")), msg


@needs_no_cuda
@pytest.mark.parametrize("make", [
    lambda: ad.tensor([1.0], device="cuda"),
    lambda: ad.tensor([1.0], device="cuda:0"),
    lambda: ad.zeros(3, device="cuda"),
    lambda: ad.ones(3, device="cuda"),
    lambda: ad.full((2,), 1.0, device="cuda"),
    lambda: ad.arange(3, device="cuda"),
    lambda: ad.randn(3, device="cuda"),
    lambda: ad.eye(2, device=ad.device("cuda")),
    lambda: ad.tensor([1.0]).cuda(),
    lambda: ad.tensor([1.0]).to("cuda"),
    lambda: ad.zeros_like(ad.tensor([1.0]), device="cuda"),
])
def test_explicit_cuda_unavailable(make):
    with pytest.raises(ad.DeviceUnavailableError) as info:
        make()
    assert isinstance(info.value, RuntimeError)
    _assert_helpful(str(info.value))


@needs_no_cuda
def test_unavailable_message_says_cupy_missing():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    with pytest.raises(ad.DeviceUnavailableError, match="(?i)cupy") as info:
        ad.tensor([1.0], device="cuda")
    assert "install" in str(info.value).lower()


@needs_no_cuda
def test_set_default_device_cuda_unavailable():
    with pytest.raises(ad.DeviceUnavailableError):
        ad.set_default_device("cuda")
    assert ad.get_default_device() == "cpu"


def test_set_default_device_cpu_and_auto():
    ad.set_default_device("cpu")
    assert ad.get_default_device() == "cpu"
    assert ad.tensor([1.0]).device == "cpu"
    ad.set_default_device("auto")
    assert ad.get_default_device() == ("cuda:0" if HAS_CUDA else "cpu")


def test_naming_a_device_checks_nothing():
    # ad.device only names a device; it must not raise for a GPU that is absent.
    d = ad.device("cuda:7")
    assert d == "cuda:7"


def test_invalid_default_device():
    with pytest.raises(ValueError):
        ad.set_default_device("tpu")


# ---- CPU fallback -------------------------------------------------------------------------

@needs_no_cuda
def test_set_cpu_fallback_warns_once_and_uses_cpu():
    ad.set_cpu_fallback(True)
    with pytest.warns(RuntimeWarning) as record:
        t = ad.tensor([1.0, 2.0], device="cuda")
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert t.device == "cpu"
    assert t.tolist() == [1.0, 2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t2 = ad.zeros(3, device="cuda")
        t3 = ad.tensor([1.0]).cuda()
    assert t2.device == "cpu" and t3.device == "cpu"


@needs_no_cuda
def test_fallback_warning_mentions_reason():
    ad.set_cpu_fallback(True)
    with pytest.warns(RuntimeWarning) as record:
        ad.ones(2, device="cuda:0")
    msg = str(record[0].message).lower()
    assert "cpu" in msg


@needs_no_cuda
def test_env_cpu_fallback(monkeypatch):
    monkeypatch.setenv("GPUAD_CPU_FALLBACK", "1")
    with pytest.warns(RuntimeWarning):
        t = ad.ones(2, device="cuda")
    assert t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0])


@needs_no_cuda
def test_set_cpu_fallback_false_overrides_env(monkeypatch):
    monkeypatch.setenv("GPUAD_CPU_FALLBACK", "1")
    ad.set_cpu_fallback(False)
    with pytest.raises(ad.DeviceUnavailableError):
        ad.ones(2, device="cuda")


@needs_no_cuda
def test_fallback_off_by_default():
    with pytest.raises(ad.DeviceUnavailableError):
        ad.ones(2, device="cuda")


@pytest.mark.parametrize("text, on", [("1", True), ("true", True), (" Yes ", True),
                                      ("ON", True), ("0", False), ("false", False),
                                      ("no", False), ("Off", False), ("", False)])
def test_env_cpu_fallback_values(monkeypatch, text, on):
    monkeypatch.setenv("GPUAD_CPU_FALLBACK", text)
    assert cpu_fallback_enabled() is on


@pytest.mark.parametrize("text", ["banana", "2", "enable", "y"])
def test_env_cpu_fallback_unknown_value_names_the_accepted_ones(monkeypatch, text):
    monkeypatch.setenv("GPUAD_CPU_FALLBACK", text)
    expected = (f"GPUAD_CPU_FALLBACK='{text}' is not a valid setting: use one of 1, true, yes, "
                "on to fall back to the CPU when CUDA is unusable, or one of 0, false, no, off "
                "(or leave it unset) to raise")
    for _ in range(2):  # (raised on every read until it is fixed, not remembered as off)
        with pytest.raises(ValueError) as info:
            cpu_fallback_enabled()
        assert expected in str(info.value)
    ad.set_cpu_fallback(False)  # (a call overrides the environment)
    assert cpu_fallback_enabled() is False


# ---- environment, in fresh interpreters -------------------------------------------------------

def test_gpuad_device_env_cpu():
    r = _run("import gpuad as ad; print(ad.get_default_device(), ad.tensor([1.0]).device)",
             GPUAD_DEVICE="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cpu", "cpu"]


@needs_the_runs_cuda_in_a_subprocess
def test_gpuad_device_env_auto():
    r = _run("import gpuad as ad; print(ad.tensor([1.0]).device)", GPUAD_DEVICE="auto")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("cuda:0" if HAS_CUDA else "cpu")


@needs_the_runs_cuda_in_a_subprocess
def test_gpuad_device_env_unset():
    r = _run("import gpuad as ad; print(ad.get_default_device())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("cuda:0" if HAS_CUDA else "cpu")


@needs_no_cuda
def test_gpuad_device_env_cuda_without_gpu():
    code = (
        "import gpuad as ad\n"
        "try:\n"
        "    ad.tensor([1.0])\n"
        "except ad.DeviceUnavailableError as e:\n"
        "    print('UNAVAILABLE', e)\n"
        "else:\n"
        "    print('NO ERROR')\n"
    )
    r = _run(code, GPUAD_DEVICE="cuda")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("UNAVAILABLE"), r.stdout


@needs_no_cuda
def test_gpuad_device_env_cuda_with_fallback():
    code = (
        "import warnings\n"
        "import gpuad as ad\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    a = ad.tensor([1.0]); b = ad.zeros(2)\n"
        "print(a.device, b.device, sum(issubclass(x.category, RuntimeWarning) for x in w))\n"
    )
    r = _run(code, GPUAD_DEVICE="cuda", GPUAD_CPU_FALLBACK="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cpu", "cpu", "1"]


def test_gpuad_device_env_invalid():
    code = (
        "import gpuad as ad\n"
        "try:\n"
        "    ad.tensor([1.0])\n"
        "except ValueError:\n"
        "    print('VALUEERROR')\n"
    )
    r = _run(code, GPUAD_DEVICE="tpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "VALUEERROR"


def test_gpuad_device_env_invalid_names_the_setting():
    r = _run("import gpuad as ad; ad.tensor([1.0])", GPUAD_DEVICE="tpu")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == (
        "ValueError: gpuad: GPUAD_DEVICE='tpu' is not a device: use 'auto' (the default), "
        "'cpu', 'cuda' or 'cuda:N'")


def test_bad_cpu_fallback_env_fails_at_first_use_not_import():
    code = (
        "import gpuad as ad\n"
        "print('imported')\n"
        "try:\n"
        "    ad.tensor([1.0])\n"
        "except ValueError as e:\n"
        "    print('VALUEERROR', e)\n"
        "print(ad.tensor([1.0], device='cpu').device)\n"
    )
    r = _run(code, GPUAD_CPU_FALLBACK="banana")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "imported" and lines[2] == "cpu"
    assert lines[1].startswith("VALUEERROR gpuad: GPUAD_CPU_FALLBACK='banana'")


def test_import_does_not_import_cupy():
    code = (
        "import sys\n"
        "import gpuad as ad\n"
        "x = ad.tensor([1.0, 2.0], requires_grad=True)\n"
        "(x * x).sum().backward()\n"
        "ad.cuda.is_available(); ad.cuda.device_count(); ad.get_default_device()\n"
        "print('cupy' in sys.modules, any(m.startswith('cupy') for m in sys.modules))\n"
    )
    r = _run(code, GPUAD_DEVICE="cpu")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_plain_import_does_not_import_cupy():
    r = _run("import sys, gpuad; print(any(m.startswith('cupy') for m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_import_is_fast():
    code = (
        "import time\n"
        "import numpy\n"
        "t0 = time.perf_counter()\n"
        "import gpuad\n"
        "print(time.perf_counter() - t0)\n"
    )
    times = []
    for _ in range(2):
        r = _run(code)
        assert r.returncode == 0, r.stderr
        times.append(float(r.stdout.strip()))
    assert min(times) < 0.5, times


# ---- CPU-side guarantees ------------------------------------------------------------------

def test_cpu_tensor_has_no_cuda_array_interface():
    t = ad.tensor([1.0], device="cpu")
    assert not hasattr(t, "__cuda_array_interface__")


def test_dlpack_device_cpu():
    t = ad.tensor([1.0], device="cpu")
    assert t.__dlpack_device__()[0] == 1  # kDLCPU


# ---- on a GPU machine ------------------------------------------------------------------------

@needs_cuda
def test_cuda_tensor_basics():
    t = ad.tensor([1.0, 2.0], device="cuda")
    assert t.device == "cuda:0" and t.device == ad.device("cuda")
    assert t.dtype == np.float32
    n = t.numpy()
    assert isinstance(n, np.ndarray)
    np.testing.assert_array_equal(n, [1.0, 2.0])
    assert "device='cuda:0'" in repr(t)
    assert t.cpu().device == "cpu"
    assert ad.tensor([3.0], device="cpu").cuda().device == "cuda:0"
    assert t.tolist() == [1.0, 2.0]
    assert type(t.array).__module__.startswith("cupy")


@needs_cuda
def test_cuda_zero_dim_results_are_arrays():
    t = ad.tensor([1.0, 2.0], device="cuda")
    s = t.sum()
    assert s.shape == () and type(s.array).__module__.startswith("cupy")
    assert s.item() == 3.0


@needs_cuda
def test_cuda_promotion_same_as_cpu():
    f32 = ad.tensor([1.0, 2.0], device="cuda")
    assert (f32 * 0.5).dtype == np.float32
    assert (f32 + ad.tensor(np.array([1.0, 2.0]), device="cuda")).dtype == np.float64
    assert (ad.tensor([1, 2], device="cuda") * 1.5).dtype == np.float64


@needs_cuda
@pytest.mark.parametrize("op", [
    lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / b,
    lambda a, b: a @ b, lambda a, b: ad.maximum(a, b), lambda a, b: ad.stack([a, b]),
])
def test_mixed_devices_raise(op):
    cpu = ad.ones(2, 2, device="cpu")
    gpu = ad.ones(2, 2, device="cuda")
    for a, b in ((cpu, gpu), (gpu, cpu)):
        with pytest.raises(ad.DeviceMismatchError) as info:
            op(a, b)
        msg = str(info.value)
        assert "cpu" in msg and "cuda:0" in msg


@needs_cuda
def test_numpy_array_with_cuda_tensor_raises():
    gpu = ad.ones(2, device="cuda")
    with pytest.raises(ad.DeviceMismatchError):
        gpu + np.ones(2)


@needs_cuda
def test_mixed_devices_inplace_raise():
    gpu = ad.ones(2, device="cuda")
    with pytest.raises(ad.DeviceMismatchError):
        gpu.add_(ad.ones(2, device="cpu"))


@needs_cuda
def test_cuda_array_protocol_raises_type_error():
    t = ad.tensor([1.0], device="cuda")
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.asarray(t)


@needs_cuda
def test_cuda_array_interface():
    t = ad.tensor([1.0, 2.0, 3.0], device="cuda")
    cai = t.__cuda_array_interface__
    assert cai["shape"] == (3,)
    assert cai["data"][0] == t.array.data.ptr


@needs_cuda
def test_cuda_dlpack_roundtrip():
    if WHOLE_RUN_STAND_IN:
        pytest.skip("the CuPy stand-in has no DLPack (it would take CUDA memory only)")
    import cupy

    t = ad.tensor([1.0, 2.0], device="cuda")
    c = cupy.from_dlpack(t)
    c[0] = 5.0
    assert t.tolist() == [5.0, 2.0]
    back = ad.from_dlpack(cupy.arange(3, dtype=cupy.float32))
    assert back.device == "cuda:0" and back.tolist() == [0.0, 1.0, 2.0]


@needs_cuda
def test_cuda_grads_match_cpu():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3))
    w = rng.standard_normal((3, 2))
    grads = {}
    for dev in ("cpu", "cuda"):
        x = ad.tensor(a, device=dev, requires_grad=True)
        W = ad.tensor(w, device=dev, requires_grad=True)
        y = (ad.tanh(x @ W) ** 2).sum() + (x.exp() * 0.5).mean()
        y.backward()
        assert x.grad.device == x.device
        grads[dev] = (x.grad.numpy(), W.grad.numpy())
    for g_cpu, g_gpu in zip(grads["cpu"], grads["cuda"]):
        np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-10, atol=1e-12)


@needs_cuda
@needs_the_runs_cuda_in_a_subprocess
def test_cuda_to_cpu_first_cpu_use_in_a_process():
    code = (
        "import gpuad as ad\n"
        "x = ad.tensor([1.0, 2.0], device='cuda')\n"
        "print(x.cpu().tolist())\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr[-400:]
    assert r.stdout.strip() == "[1.0, 2.0]"


@needs_cuda
def test_cuda_to_cpu_is_differentiable():
    x = ad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    y = (x.cpu() * 3.0).sum()
    y.backward()
    assert x.grad.device == "cuda:0"
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


@needs_cuda
def test_cuda_manual_seed_reproducible():
    ad.manual_seed(7)
    a = ad.randn(10, device="cuda").numpy()
    ad.manual_seed(7)
    b = ad.randn(10, device="cuda").numpy()
    np.testing.assert_array_equal(a, b)


@needs_cuda
def test_cuda_bad_index():
    n = ad.cuda.device_count()
    with pytest.raises(ad.DeviceUnavailableError):
        ad.zeros(1, device=f"cuda:{n}")


@needs_cuda
def test_memory_info():
    free, total = ad.cuda.memory_info()
    assert 0 < free <= total
    ad.cuda.synchronize()
