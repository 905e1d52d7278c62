"""A NumPy stand-in for CuPy, so the CUDA code path (dispatch, device bookkeeping, transfers,
errors) runs on machines without a GPU.

It only proves that gpuad routes CUDA tensors through the CuPy backend correctly; numerical
behaviour of real CuPy/CUDA is checked by the same tests on a GPU machine, where the real
CuPy is used instead.
"""
import contextlib
import types

import numpy as np


class _Device:
    def __init__(self, index=0):
        self.id = index

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass


def modules():
    """``{module name: module}`` to place in ``sys.modules``."""
    cupy = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(cupy, name, getattr(np, name))
    cupy.__version__ = "fake"
    cupy.asnumpy = lambda a: np.array(a, copy=True)

    def flip(a, axis=None):  # like CuPy: no flipping of 0-d arrays
        if np.ndim(a) == 0:
            raise np.exceptions.AxisError("Input must be >= 1-d")
        return np.flip(a, axis)

    def clip(a, lo=None, hi=None, **kwargs):  # like CuPy: one bound at least
        if lo is None and hi is None:
            raise ValueError("array_clip: must set either max or min")
        return np.clip(a, lo, hi, **kwargs)

    cupy.flip, cupy.clip = flip, clip
    cupy.cuda = types.SimpleNamespace(
        Device=_Device,
        runtime=types.SimpleNamespace(memGetInfo=lambda: (1 << 30, 2 << 30)),
    )
    cupy.random = types.SimpleNamespace(default_rng=np.random.default_rng)
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = np.add.at
    special = types.ModuleType("cupyx.scipy.special")
    try:
        from scipy.special import erf
    except ImportError:  # pragma: no cover
        import math

        erf = np.vectorize(math.erf, otypes=[np.float64])
    def special_erf(x):  # like cupyx: float32 and float64 loops only
        out = np.asarray(erf(x))
        return out.astype(np.float32 if x.dtype == np.float16 else out.dtype)

    special.erf = special_erf
    scipy = types.ModuleType("cupyx.scipy")
    scipy.special = special
    cupyx.scipy = scipy
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy, "cupyx.scipy.special": special}


@contextlib.contextmanager
def installed(monkeypatch):
    """Make gpuad believe CuPy and one GPU are present, with NumPy doing the work."""
    import gpuad.backends as backends
    from gpuad import devices as device_mod
    from gpuad.backends import probe

    for name, mod in modules().items():
        monkeypatch.setitem(__import__("sys").modules, name, mod)
    monkeypatch.setattr(probe, "cupy_installed", lambda: True)
    monkeypatch.setattr(probe, "driver_devices", lambda: (1, ""))
    cuda0 = device_mod.device("cuda:0")
    saved_default = device_mod._Policy.default
    try:
        yield
    finally:
        backends._backends.pop("cuda:0", None)
        cuda0._backend = None
        device_mod._Policy.default = saved_default
        __import__("sys").modules.pop("gpuad.backends.cupy_backend", None)
