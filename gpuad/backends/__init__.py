"""The dispatch layer: ``get_backend(device)`` is the one place that picks NumPy or CuPy."""
import threading

from .probe import cuda_unavailable_reason, cupy_installed, driver_devices

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
                _backends[key] = CupyBackend(device.index)
            if _seed[0] is not None:
                _backends[key].seed(_seed[0])
        return _backends[key]
