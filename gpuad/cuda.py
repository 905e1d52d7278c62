"""``ad.cuda``: what the machine offers for CUDA, without importing CuPy until needed."""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from .backends import cuda_in_use, probe
from .cuda_graph import CUDAGraph, CUDAGraphError, GraphPool, capturing, graph
from .devices import DeviceLike, resolve  # (DeviceLike: for users' annotations too)
from .errors import DeviceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["is_available", "device_count", "synchronize", "warmup", "empty_cache", "gpu_info",
           "memory_info", "graph", "CUDAGraph", "GraphPool", "CUDAGraphError"]


def is_available() -> bool:
    """True when CuPy is installed and the driver reports at least one GPU.

    >>> isinstance(ad.cuda.is_available(), bool)
    True
    >>> dev = "cuda" if ad.cuda.is_available() else "cpu"
    >>> ad.ones(2, device=dev).tolist()
    [1.0, 1.0]
    """
    return probe.cuda_unavailable_reason(0) is None


def device_count() -> int:
    """The number of CUDA devices the driver reports (0 without a driver).

    >>> n = ad.cuda.device_count()
    >>> isinstance(n, int) and n >= int(ad.cuda.is_available())
    True
    """
    return probe.driver_devices()[0]


def synchronize(device: DeviceLike | None = None) -> None:
    """Wait for all work queued on ``device`` (default cuda:0) to finish; a check of its data
    that failed since its last host read raises here (gpuad/backends/deferred.py).

    >>> if ad.cuda.is_available():
    ...     y = ad.ones(3, device="cuda") * 2  # queued on the GPU
    ...     ad.cuda.synchronize()  # now it has run
    """
    if capturing():
        raise CUDAGraphError("gpuad: ad.cuda.synchronize() inside an ad.cuda.graph block that "
                             "captures: a capture runs nothing, so there is nothing to wait for, "
                             "and CUDA would invalidate the capture; synchronize after the block "
                             "or after g.replay()")
    dev = resolve(device or "cuda:0")
    if dev.type == "cuda":
        dev.backend.synchronize()


def warmup(device: DeviceLike | None = None) -> int:
    """Compile every elementwise and row-wise kernel the ops launch for ``device`` (default
    cuda:0) ahead of time, instead of at its first use (anomaly mode's finite check is built at
    its first use); CuPy keeps the compiled code in its cache (``CUPY_CACHE_DIR``) across
    runs. Returns the number of kernels built. (The first line needs a GPU, so it is not run
    as a doctest.)

    >>> n = ad.cuda.warmup()  # doctest: +SKIP
    >>> ad.cuda.warmup("cpu")
    Traceback (most recent call last):
    ...
    ValueError: gpuad.cuda.warmup: cpu is not a CUDA device
    """
    dev = resolve(device or "cuda:0")
    if dev.type != "cuda":
        raise ValueError(f"gpuad.cuda.warmup: {dev} is not a CUDA device")
    return dev.backend.warmup()


def empty_cache() -> None:
    """Return the cached, unused blocks of CuPy's memory pools to the driver (a no-op before
    gpuad made any CUDA tensor, even where another library imported CuPy).

    >>> if ad.cuda.is_available():
    ...     x = ad.ones(1000, device="cuda")
    ...     del x  # its memory goes back to CuPy's pool, not yet to the driver
    ...     ad.cuda.empty_cache()  # and now to the driver
    """
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is not None and cuda_in_use():
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def gpu_info() -> list[dict[str, Any]] | None:
    """Per GPU (in CUDA's order), from NVML: ``{"name", "memory_total", "memory_used",
    "memory_free", "utilization", "temperature", "mig", "errors"}``. A query NVML refuses (a
    MIG device's utilization, an unsupported sensor) leaves its fields None, with NVML's
    message and what it means in ``errors``. On a MIG instance (``mig`` True) the memory is
    the instance's, from the CUDA runtime (NVML's is the whole GPU's). None when NVML is
    unusable (nvidia-ml-py not installed, or libnvidia-ml missing).

    >>> info = ad.cuda.gpu_info()
    >>> info is None or all("name" in gpu and "memory_free" in gpu for gpu in info)
    True
    """
    nvml, _ = _start_nvml()
    if nvml is None:
        return None
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
        return [_gpu_fields(nvml, cupy, i) for i in range(count)]
    finally:
        _stop_nvml(nvml)


def _start_nvml() -> tuple[ModuleType, None] | tuple[None, str]:
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


def _nvml_message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _stop_nvml(nvml: ModuleType) -> None:
    """Shut NVML down; its refusal to (it is reporting, not working) is ignored."""
    try:
        nvml.nvmlShutdown()
    except nvml.NVMLError:
        pass


_R = TypeVar("_R")

_FIELDS = ("name", "memory_total", "memory_used", "memory_free", "utilization", "temperature",
           "mig")


def _gpu_fields(nvml: ModuleType, cupy: ModuleType, index: int) -> dict[str, Any]:
    """GPU ``index``'s NVML fields; a query that raises NVMLError leaves its fields None and
    puts its message in ``errors`` under the query's name (handle, name, memory, utilization,
    temperature)."""
    out: dict[str, Any] = dict.fromkeys(_FIELDS)
    errors: dict[str, str] = {}

    def ask(query: str, read: Callable[[], _R]) -> _R | None:
        try:
            return read()
        except nvml.NVMLError as exc:
            errors[query] = _nvml_message(exc)
            return None

    handle = ask("handle", lambda: _handle(nvml, cupy, index))
    if handle is not None:
        name = ask("name", lambda: nvml.nvmlDeviceGetName(handle))
        out["name"] = name.decode() if isinstance(name, bytes) else name
        out["mig"] = _mig_enabled(nvml, handle)
        if out["mig"]:  # NVML's numbers are the whole GPU's: the runtime sees the instance
            try:
                free, total = _runtime_memory(cupy, index)
                out.update(memory_total=total, memory_used=total - free, memory_free=free)
            except Exception as exc:  # noqa: BLE001  (reported in errors, as NVML's are)
                errors["memory"] = f"CUDA runtime: {_nvml_message(exc)}"
        else:
            mem = ask("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
            if mem is not None:
                out.update(memory_total=int(mem.total), memory_used=int(mem.used),
                           memory_free=int(mem.free))
        out["utilization"] = ask(
            "utilization", lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        out["temperature"] = ask("temperature", lambda: _temperature(nvml, handle))
        if out["mig"] and "utilization" in errors:
            errors["utilization"] += " (NVML has no utilization per MIG instance)"
    out["errors"] = errors
    return out


def _handle(nvml: ModuleType, cupy: ModuleType, index: int) -> Any:
    """NVML's handle of the GPU that CUDA numbers ``index`` (NVML numbers GPUs its own way;
    the PCI bus id is common to both; for a MIG instance it is its GPU's)."""
    return nvml.nvmlDeviceGetHandleByPciBusId(cupy.cuda.Device(index).pci_bus_id)


def _mig_enabled(nvml: ModuleType, handle: Any) -> bool:
    """Whether the GPU is in MIG mode, so that what CUDA calls a device is one of its
    instances; False where NVML has no MIG (an older GPU or nvidia-ml-py)."""
    try:
        current, _ = nvml.nvmlDeviceGetMigMode(handle)
    except (AttributeError, nvml.NVMLError):
        return False
    return current == getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1)


def _temperature(nvml: ModuleType, handle: Any) -> int:
    """The GPU's temperature in C through ``nvmlDeviceGetTemperatureV``, falling back to the
    deprecated ``nvmlDeviceGetTemperature`` (removed in CUDA 14's NVML) where nvidia-ml-py or
    the driver lacks the new one."""
    sensor = nvml.NVML_TEMPERATURE_GPU
    read = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    if read is not None:
        try:
            return int(read(handle, sensor))
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13):
                raise
    return int(nvml.nvmlDeviceGetTemperature(handle, sensor))


def _runtime_memory(cupy: ModuleType, index: int) -> tuple[int, int]:
    """``(free, total)`` bytes of CUDA device ``index`` as the CUDA runtime sees it (a MIG
    instance's own)."""
    with cupy.cuda.Device(index):
        free, total = cupy.cuda.runtime.memGetInfo()
    return int(free), int(total)


def memory_info(device: DeviceLike | int | None = None) -> tuple[int, int]:
    """``(free, total)`` bytes of GPU memory on ``device``, read through NVML when it is
    installed (``nvidia-ml-py``) and answers, else from the CUDA runtime.

    >>> if ad.cuda.is_available():
    ...     free, total = ad.cuda.memory_info("cuda:0")
    ...     assert 0 <= free <= total
    """
    if device is None:
        index = 0
    elif isinstance(device, int):
        index = device
    else:
        dev = resolve(device)
        if dev.index is None:  # (the CPU: only CUDA devices have an index)
            raise ValueError(f"gpuad.cuda.memory_info: {dev} is not a CUDA device")
        index = dev.index
    reason = probe.cuda_unavailable_reason(index)
    if reason is not None:
        raise DeviceUnavailableError(f"gpuad: cannot read memory of cuda:{index}: {reason}")
    import cupy

    nvml, _ = _start_nvml()
    if nvml is not None:
        try:
            handle = _handle(nvml, cupy, index)
            if not _mig_enabled(nvml, handle):  # (on MIG NVML reports the whole GPU)
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
                return int(info.free), int(info.total)
        except nvml.NVMLError:
            pass  # the CUDA runtime still knows
        finally:
            _stop_nvml(nvml)
    return _runtime_memory(cupy, index)
