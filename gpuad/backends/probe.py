"""Find out, without importing CuPy, whether CuPy is installed and whether a usable GPU exists.

The two are separate facts: CuPy can be installed on a machine with no driver, and a GPU can be
present where CuPy is not. The driver is asked directly through ``libcuda`` (``cuInit`` and
``cuDeviceGetCount``), so ``import gpuad`` and the default-device decision never load CuPy.
"""
import ctypes
import functools
import importlib.util
import os

INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install 'gpuad[cuda13]' (CUDA 13) "
    "or 'gpuad[cuda12]' (CUDA 12)"
)


@functools.cache
def cupy_installed():
    return importlib.util.find_spec("cupy") is not None


@functools.cache
def driver_devices():
    """(number of CUDA devices the driver sees, reason when that number is 0)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, (
            "the NVIDIA driver library libcuda.so.1 was not found (no driver installed, or a "
            "container started without --gpus all)"
        )
    if lib.cuInit(0) != 0:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        extra = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return 0, f"the NVIDIA driver is installed but cuInit failed: no usable GPU{extra}"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return 0, "the NVIDIA driver reports no CUDA device"
    return count.value, ""


def cuda_unavailable_reason(index=0):
    """Why ``cuda:index`` cannot be used, with the fix; ``None`` when it can."""
    count, why = driver_devices()
    if not cupy_installed():
        if count:
            return f"{count} GPU(s) are visible, but CuPy is not installed; {INSTALL_HINT}"
        return (
            f"CuPy is not installed and {why}; a CUDA device needs an NVIDIA GPU with its "
            f"driver, then {INSTALL_HINT}"
        )
    if count == 0:
        return (
            f"CuPy is installed but {why}; run on a machine with an NVIDIA GPU and driver, "
            "or use device='cpu' (set GPUAD_CPU_FALLBACK=1 to fall back automatically)"
        )
    if index >= count:
        return (
            f"cuda:{index} was asked for but only {count} CUDA device(s) exist "
            f"(cuda:0..cuda:{count - 1}); pick an index below {count}"
        )
    return None
