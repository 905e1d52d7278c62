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
    """Wait for all work queued on ``device`` (default cuda:0) to finish; a check of its data
    that failed since its last host read raises here (gpuad/backends/deferred.py)."""
    dev = resolve(device or "cuda:0")
    if dev.type == "cuda":
        dev.backend.synchronize()


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
    "memory_free", "utilization", "temperature", "errors"}``. A query NVML refuses (a MIG
    device, an unsupported sensor) leaves its fields None, with NVML's message in ``errors``.
    None when NVML is unusable (nvidia-ml-py not installed, or libnvidia-ml missing)."""
    nvml, _ = _start_nvml()
    if nvml is None:
        return None
    import cupy

    try:
        return [_gpu_fields(nvml, cupy.cuda.Device(i).pci_bus_id)
                for i in range(cupy.cuda.runtime.getDeviceCount())]
    finally:
        nvml.nvmlShutdown()


def _start_nvml():
    """``(pynvml, None)`` with NVML initialised (the caller shuts it down), else ``(None,
    why)``: nvidia-ml-py not installed, or NVML would not start."""
    try:
        import pynvml
    except ImportError:
        return None, "not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"installed, but NVML did not start: {_nvml_message(exc)}"
    return pynvml, None


def _nvml_message(exc):
    return str(exc) or type(exc).__name__


_FIELDS = ("name", "memory_total", "memory_used", "memory_free", "utilization", "temperature")


def _gpu_fields(nvml, bus_id):
    """One GPU's NVML fields; a query that raises NVMLError leaves its fields None and puts
    its message in ``errors`` under the query's name (handle, name, memory, utilization,
    temperature)."""
    out, errors = dict.fromkeys(_FIELDS), {}

    def ask(query, read):
        try:
            return read()
        except nvml.NVMLError as exc:
            errors[query] = _nvml_message(exc)
            return None

    handle = ask("handle", lambda: nvml.nvmlDeviceGetHandleByPciBusId(bus_id))
    if handle is not None:
        name = ask("name", lambda: nvml.nvmlDeviceGetName(handle))
        out["name"] = name.decode() if isinstance(name, bytes) else name
        mem = ask("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if mem is not None:
            out.update(memory_total=int(mem.total), memory_used=int(mem.used),
                       memory_free=int(mem.free))
        out["utilization"] = ask(
            "utilization", lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        out["temperature"] = ask("temperature", lambda: int(nvml.nvmlDeviceGetTemperature(
            handle, nvml.NVML_TEMPERATURE_GPU)))
    out["errors"] = errors
    return out


def memory_info(device=None):
    """``(free, total)`` bytes of GPU memory on ``device``, read through NVML when it is
    installed (``nvidia-ml-py``) and answers, else from the CUDA runtime."""
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
    import cupy

    nvml, _ = _start_nvml()
    if nvml is not None:
        try:
            bus_id = cupy.cuda.Device(index).pci_bus_id  # NVML numbers GPUs its own way
            info = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByPciBusId(bus_id))
            return int(info.free), int(info.total)
        except nvml.NVMLError:
            pass  # (a MIG device, say: the CUDA runtime still knows)
        finally:
            nvml.nvmlShutdown()
    with cupy.cuda.Device(index):
        return tuple(cupy.cuda.runtime.memGetInfo())
