"""Shared test configuration: the devices every op test runs on.

"cpu" always; "cuda" only where CuPy and a GPU are usable, otherwise its cases are skipped
with the reason, never failed.
"""
import sys

import pytest
from fake_cupy import cuda_or_stand_in

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


@pytest.fixture
def gpu_capture(monkeypatch):
    """Real CUDA with the capture extra (nvmath-python: matrix products inside CUDA graphs),
    else the CuPy stand-in; yields the stand-in's counters, None on real CUDA."""
    with cuda_or_stand_in(monkeypatch) as counts:
        if counts is None:
            pytest.importorskip("nvmath.bindings.cublas", reason="the capture extra")
        yield counts


@pytest.fixture(autouse=True)
def _remove_the_cupy_stand_in():
    """A test that installed the CuPy stand-in (tests/fake_cupy) leaves without it."""
    yield
    stand_in = sys.modules.get("fake_cupy")
    if stand_in is not None:
        stand_in.remove()


def _of_stand_in(value):
    """Whether ``value`` is the CuPy stand-in (tests/fake_cupy), one of its modules or a name
    defined there; not a helper of it that uses real CUDA where it is usable
    (``prefers_real_cuda``)."""
    if getattr(value, "prefers_real_cuda", False):
        return False
    return any(isinstance(name, str) and name.split(".")[0] == "fake_cupy"
               for name in (getattr(value, "__name__", None), getattr(value, "__module__", None)))


def _names_stand_in(func, seen=None):
    """Whether ``func``'s code, or a function of its module that it calls, imports or names the
    stand-in (``from fake_cupy import installed`` inside a test counts)."""
    code = getattr(func, "__code__", None)
    seen = set() if seen is None else seen
    if code is None or code in seen:
        return False
    seen.add(code)
    codes = [code]
    names = set()
    while codes:  # the function's own code and the code of what it defines inside
        c = codes.pop()
        names.update(c.co_names)
        codes.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    if "fake_cupy" in names:
        return True
    scope = getattr(func, "__globals__", {})
    return any(_of_stand_in(scope.get(n)) or (callable(scope.get(n))
               and getattr(scope.get(n), "__module__", None) == func.__module__
               and _names_stand_in(scope.get(n), seen)) for n in names)


def _uses_stand_in(item):
    """Whether a test, a function of its module it calls, or a fixture it uses installs or
    names the stand-in. (A module that imports the stand-in for some tests keeps its other
    tests, its real-CUDA cases among them.)"""
    info = getattr(item, "_fixtureinfo", None)
    fixtures = [defs[-1].func for defs in (info.name2fixturedefs.values() if info else ())]
    return any(_names_stand_in(f) for f in [getattr(item, "function", None), *fixtures])


def pytest_collection_modifyitems(config, items):
    """Marks that select the real-GPU cases (benchmarks/gpu_checks.sh runs
    ``-m "cuda and not standin and not network"``): ``cuda`` on every case whose ``device``
    parameter is a CUDA device, ``standin`` on every test that installs or names the CuPy
    stand-in, or uses a fixture that does (see :func:`_uses_stand_in`); ``cuda`` tests run on
    the real CuPy, so those never need the stand-in. A test that installs the stand-in only
    where real CUDA is not usable (``fake_cupy.cuda_or_stand_in``) is no stand-in test."""
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and str(params.params.get("device", "")).startswith("cuda"):
            item.add_marker("cuda")
        if _uses_stand_in(item):
            item.add_marker("standin")


#: what a skip reason says when the test compares with PyTorch and PyTorch is missing
_NEEDS_TORCH = ("could not import 'torch'", "PyTorch is not installed", "torch is not installed")
_TORCH_HINT = ("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu "
               "(the CPU build, about 200 MB)")


def pytest_terminal_summary(terminalreporter):
    """Skips grouped by reason, one line per reason with its count (``-ra`` would print a
    line per test); the PyTorch comparison tests, when torch is missing, as one line saying
    how to install it."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    groups = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
            report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if any(key in reason for key in _NEEDS_TORCH):
            reason = f"need PyTorch for the comparison: {_TORCH_HINT}"
        groups[reason] = groups.get(reason, 0) + 1
    terminalreporter.section(f"{len(skipped)} skipped, by reason", sep="-")
    for reason, count in sorted(groups.items(), key=lambda kv: -kv[1]):
        terminalreporter.line(f"{count:6d}  {reason}")
