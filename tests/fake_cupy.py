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
    special.erf = lambda x: np.asarray(erf(x)).astype(x.dtype)
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
