"""The dispatch layer: ``get_backend(device)`` is the one place that picks NumPy or CuPy."""
import threading

from .probe import (
    cuda_unavailable_reason,
    cupy_installed,
    driver_devices,
    install_hint,
    refuse,
    version_text,
)

__all__ = ["get_backend", "manual_seed", "cuda_unavailable_reason", "cupy_installed",
           "driver_devices"]

_backends = {}
_lock = threading.Lock()
_seed = [None]  # the last manual_seed, applied to backends created after it


def manual_seed(seed):
    """Seed every backend's generator, now and as it is created."""
    _seed[0] = seed
    for backend in list(_backends.values()):
        backend.seed(seed)


def cuda_in_use():
    """Whether gpuad has made a CUDA backend (a CUDA tensor existed) in this process."""
    return any(key.startswith("cuda") for key in list(_backends))


def get_backend(device):
    """The Backend for a :class:`gpuad.device.Device`: NumPy for cpu, CuPy for cuda:N.

    CuPy is imported here, and only here, the first time a CUDA device is used.
    """
    key = str(device)
    backend = _backends.get(key)
    if backend is not None:
        return backend
    with _lock:
        if key not in _backends:
            if device.type == "cpu":
                from .numpy_backend import NumpyBackend

                _backends[key] = NumpyBackend()
            else:
                from ..errors import DeviceUnavailableError

                reason = cuda_unavailable_reason(device.index)
                if reason is not None:
                    raise DeviceUnavailableError(f"gpuad: cannot use {device}: {reason}")
                try:
                    from .cupy_backend import CupyBackend
                except ImportError as exc:
                    raise DeviceUnavailableError(
                        f"gpuad: cannot use {device}: CuPy is installed but failed to import "
                        f"({exc}); reinstall the CuPy build that matches your CUDA driver"
                    ) from exc
                _backends[key] = _cuda_backend(CupyBackend, device)
            if _seed[0] is not None:
                _backends[key].seed(_seed[0])
        return _backends[key]


#: the CUDA runtime's errors that mean the device cannot be used at all (cudaError_t values):
#: the driver is older than CuPy's CUDA runtime, a stub libcuda, no device, an invalid one, a
#: device in exclusive use elsewhere, a failed initialisation, or a container's CUDA
#: forward-compatibility libraries that do not match the driver or the device
_REFUSALS = frozenset({
    35,  # cudaErrorInsufficientDriver
    34,  # cudaErrorStubLibrary
    100,  # cudaErrorNoDevice
    101,  # cudaErrorInvalidDevice
    46,  # cudaErrorDevicesUnavailable
    3,  # cudaErrorInitializationError
    803,  # cudaErrorSystemDriverMismatch
    804,  # cudaErrorCompatNotSupportedOnDevice
})


def _cuda_backend(make, device):
    """``make(index)``, the CUDA backend; a refusal by the CUDA runtime (the probe passed, but
    the driver is too old for CuPy's runtime, say) becomes DeviceUnavailableError with the
    versions and the fix, and is recorded, so the device counts as unavailable from then on."""
    import cupy

    runtime = cupy.cuda.runtime
    try:
        return make(device.index)
    except runtime.CUDARuntimeError as exc:
        if getattr(exc, "status", None) not in _REFUSALS:
            raise
        from ..errors import DeviceUnavailableError

        driver = _version(runtime.driverGetVersion)
        driver = ("the driver did not say which CUDA it supports" if driver is None
                  else f"the driver supports CUDA {driver}")
        reason = (f"the CUDA runtime refused it ({exc}); CuPy {cupy.__version__} runs CUDA "
                  f"runtime {_version(runtime.runtimeGetVersion) or 'unknown'} and {driver}: "
                  "update the NVIDIA driver, or "
                  "install the CuPy for the driver's CUDA (for CUDA 12: "
                  + install_hint("cuda12") + "); or use device='cpu' "
                  "(GPUAD_CPU_FALLBACK=1 falls back automatically)")
        refuse(device.index, reason)
        raise DeviceUnavailableError(f"gpuad: cannot use {device}: {reason}") from exc


def _version(read):
    """A CUDA version read by ``read()`` as text (13.0); None where it fails or is 0 (the
    runtime's answer without a driver)."""
    try:
        v = read()
    except Exception:  # noqa: BLE001  (only for a message: any failure means unknown)
        return None
    return version_text(v) if v else None
