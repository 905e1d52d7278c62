"""``ad.cuda``: what the machine offers for CUDA, without importing CuPy until needed."""
from .backends import probe
from .devices import resolve
from .errors import DeviceUnavailableError


def is_available():
    """True when CuPy is installed and the driver reports at least one GPU."""
    return probe.cuda_unavailable_reason(0) is None


def device_count():
    """The number of CUDA devices the driver reports (0 without a driver)."""
    return probe.driver_devices()[0]


def synchronize(device=None):
    """Wait for all work queued on ``device`` (default cuda:0) to finish."""
    dev = resolve(device or "cuda:0")
    if dev.type == "cuda":
        dev.backend.cuda_device.synchronize()


def warmup(device=None):
    """Compile every custom kernel for ``device`` (default cuda:0) ahead of time, instead of
    at its first use; CuPy keeps the compiled code in its cache (``CUPY_CACHE_DIR``) across
    runs. Returns the number of kernels built."""
    dev = resolve(device or "cuda:0")
    if dev.type != "cuda":
        raise ValueError(f"gpuad.cuda.warmup: {dev} is not a CUDA device")
    return dev.backend.warmup()


def empty_cache():
    """Return the cached, unused blocks of CuPy's memory pools to the driver (a no-op before
    any CUDA tensor was made)."""
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None:
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def gpu_info():
    """Per GPU (in CUDA's order), from NVML: ``{"name", "memory_total", "memory_used",
    "memory_free", "utilization", "temperature"}``; None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    import cupy

    pynvml.nvmlInit()
    try:
        out = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(cupy.cuda.Device(i).pci_bus_id)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            out.append({
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_total": int(mem.total), "memory_used": int(mem.used),
                "memory_free": int(mem.free),
                "utilization": int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                "temperature": int(pynvml.nvmlDeviceGetTemperature(
                    handle, pynvml.NVML_TEMPERATURE_GPU)),
            })
        return out
    finally:
        pynvml.nvmlShutdown()


def memory_info(device=None):
    """``(free, total)`` bytes of GPU memory on ``device``, read through NVML when it is
    installed (``nvidia-ml-py``), else from the CUDA runtime."""
    if device is None:
        index = 0
    elif isinstance(device, int):
        index = device
    else:
        dev = resolve(device)
        if dev.type != "cuda":
            raise ValueError(f"gpuad.cuda.memory_info: {dev} is not a CUDA device")
        index = dev.index
    reason = probe.cuda_unavailable_reason(index)
    if reason is not None:
        raise DeviceUnavailableError(f"gpuad: cannot read memory of cuda:{index}: {reason}")
    try:
        import pynvml
    except ImportError:
        import cupy

        with cupy.cuda.Device(index):
            return tuple(cupy.cuda.runtime.memGetInfo())
    import cupy

    bus_id = cupy.cuda.Device(index).pci_bus_id  # NVML numbers GPUs its own way
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.free), int(info.total)
    finally:
        pynvml.nvmlShutdown()
