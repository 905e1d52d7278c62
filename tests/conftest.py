"""Shared test configuration: the devices every op test runs on.

"cpu" always; "cuda" only where CuPy and a GPU are usable, otherwise its cases are skipped
with the reason, never failed.
"""
import sys

import pytest

import gpuad as ad

DEVICES = ["cpu", "cuda"]


def _skip_reason(device):
    if device.startswith("cuda") and not ad.cuda.is_available():
        from gpuad.backends.probe import cuda_unavailable_reason

        return f"no usable CUDA device: {cuda_unavailable_reason(0)}"
    return None


@pytest.fixture(params=DEVICES)
def device(request):
    reason = _skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def cpu_default():
    """Pin the default device to the CPU for a test (it is cuda:0 on a GPU machine)."""
    from gpuad.devices import _Policy

    saved = _Policy.default
    ad.set_default_device("cpu")
    yield
    _Policy.default = saved


@pytest.fixture(autouse=True)
def _remove_the_cupy_stand_in():
    """A test that installed the CuPy stand-in (tests/fake_cupy) leaves without it."""
    yield
    stand_in = sys.modules.get("fake_cupy")
    if stand_in is not None:
        stand_in.remove()


def _of_stand_in(value):
    """Whether ``value`` is the CuPy stand-in (tests/fake_cupy), one of its modules or a name
    defined there."""
    return any(isinstance(name, str) and name.split(".")[0] == "fake_cupy"
               for name in (getattr(value, "__name__", None), getattr(value, "__module__", None)))


def _uses_stand_in(item):
    """Whether a test's module imports the stand-in, or a fixture it uses names it."""
    module = getattr(item, "module", None)
    if module is not None and any(map(_of_stand_in, vars(module).values())):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        func = defs[-1].func
        names = getattr(getattr(func, "__code__", None), "co_names", ())
        if any(_of_stand_in(func.__globals__.get(n)) for n in names):
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Marks that select the real-GPU cases (benchmarks/gpu_checks.sh runs
    ``-m "cuda and not standin and not network"``): ``cuda`` on every case whose ``device``
    parameter is a CUDA device, ``standin`` on every test of a module that imports the CuPy
    stand-in, or that uses a fixture naming it (it would replace the real CuPy in the
    process)."""
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and str(params.params.get("device", "")).startswith("cuda"):
            item.add_marker("cuda")
        if _uses_stand_in(item):
            item.add_marker("standin")
