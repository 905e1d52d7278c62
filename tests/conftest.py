"""Shared test configuration: the devices every op test runs on.

"cpu" always; "cuda" only where CuPy and a GPU are usable, otherwise its cases are skipped
with the reason, never failed.
"""
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


def skip_without_cuda():
    return pytest.mark.skipif(not ad.cuda.is_available(), reason="no usable CUDA device")
