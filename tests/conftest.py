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
