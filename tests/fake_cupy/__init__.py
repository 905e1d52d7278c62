"""A strict NumPy stand-in for CuPy, so gpuad's CUDA code path (dispatch, device bookkeeping,
transfers, kernels, errors) runs on machines without a GPU.

``install(devices=1)`` puts it in ``sys.modules`` as ``cupy``/``cupyx``, with the part of
``nvmath`` (NVIDIA's cuBLAS bindings) that gpuad calls while capturing (real CuPy and nvmath,
if imported, are set aside) and returns the callable that removes it again; ``installed(...)``
does the same for one ``with`` block. Both ways, every module that bound the previous
``cupy``/``cupyx`` is forgotten (re-imported on next use, so it binds the one now installed),
and gpuad's cached CUDA backends are dropped; while it is in place the probe answers for it
(its devices and driver, no refusal recorded by real CuPy before). ``stats`` counts what
tests assert on.

It proves that gpuad routes CUDA tensors through CuPy as real CuPy allows; the numerics of real
CUDA are checked by the same tests on a GPU machine. Streams capture CUDA graphs, recording
the kernels launched and refusing what CuPy and CUDA refuse meanwhile (``capture.py``), and
memory pools hand out real memory (``pool.py``).
"""
import contextlib
import site
import sys
import sysconfig
import types

from .stats import stats

__all__ = ["install", "installed", "cuda_or_stand_in", "remove", "stats"]

_ROOTS = ("cupy", "cupyx", "cupy_backends", "nvmath")
_active = []  # the uninstall callable of the stand-in in place, if any
_active_devices = [0]  # and its number of devices
_deferred = []  # the uninstall callable of a stand-in left in place to a test's end
_reused = []  # True while a test uses a whole run's stand-in (as fresh from its first block)


def _is_cupy(name):
    return name.partition(".")[0] in _ROOTS


def _installed_package_dirs():
    paths = set(site.getsitepackages()) | {sysconfig.get_paths()[k] for k in ("purelib",
                                                                               "platlib")}
    return tuple(p.rstrip("/") + "/" for p in paths)


def _binds_cupy(module):
    """Whether ``module``'s globals hold a cupy/cupyx module or an object defined there."""
    for value in list(vars(module).values()):
        if isinstance(value, types.ModuleType):
            if _is_cupy(value.__name__):
                return True
        elif _is_cupy(str(getattr(value, "__module__", None) or "")):
            return True
    return False


def _forget_cupy_binders():
    """Drop from ``sys.modules`` (and from their parent package) every module that bound
    ``cupy``/``cupyx``: gpuad's, and any other not installed as a package (tests, benchmarks),
    so their next import binds whichever CuPy is installed then."""
    installed_dirs = _installed_package_dirs()
    for name, module in list(sys.modules.items()):
        if module is None or _is_cupy(name) or name.partition(".")[0] == __name__:
            continue
        path = getattr(module, "__file__", None) or ""
        if path.startswith(installed_dirs) and name.partition(".")[0] != "gpuad":
            continue
        if _binds_cupy(module):
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is module:
                delattr(sys.modules[parent], child)


def _drop_cuda_backends():
    """Forget gpuad's CUDA backends (each bound the CuPy of its time) and a default device
    resolved while the stand-in was in place."""
    gpuad_devices = sys.modules.get("gpuad.devices")
    gpuad_backends = sys.modules.get("gpuad.backends")
    capture_blas = sys.modules.get("gpuad.backends.capture_blas")
    if capture_blas is not None:  # (cuBLAS handles bound to the streams of that CuPy)
        capture_blas._handles.clear()
    if gpuad_backends is not None:
        for key in [k for k in gpuad_backends._backends if k.startswith("cuda")]:
            del gpuad_backends._backends[key]
    if gpuad_devices is not None:
        for dev in list(gpuad_devices._interned.values()):
            if dev.type == "cuda":
                dev._backend = None


def _swap(owner, name, value):
    """Set ``owner.name`` to ``value``; returns the callable that puts the previous value back,
    unless something else replaced ``value`` meanwhile (a test's monkeypatch made before the
    install and undone before the removal restores its own)."""
    previous = getattr(owner, name)
    setattr(owner, name, value)

    def restore():
        if getattr(owner, name) is value:
            setattr(owner, name, previous)
    return restore


def install(devices=1):
    """Put the stand-in in place of CuPy, with ``devices`` (1 or 2) stand-in GPUs; returns
    the callable that removes it and restores what was there (real CuPy, if it was
    imported). Works outside pytest (see tests/fake_cuda_run.py)."""
    if devices not in (1, 2):
        raise ValueError(f"fake_cupy.install: devices must be 1 or 2, got {devices!r}")
    if _active:
        raise RuntimeError("fake_cupy.install: the stand-in is already installed; call the "
                           "callable the first install returned before installing again")
    from gpuad import devices as device_mod
    from gpuad.backends import probe

    from .cuda import driverGetVersion
    from .namespace import modules

    saved = {n: m for n, m in sys.modules.items() if _is_cupy(n)}
    for name in saved:
        del sys.modules[name]
    _forget_cupy_binders()
    _drop_cuda_backends()
    sys.modules.update(modules(devices))
    # the probe's facts and refusals are the stand-in's own while it is in place: a refusal
    # real CuPy recorded, or a real driver older than real CuPy's CUDA, must not refuse it
    restore_probe = [_swap(probe, "cupy_installed", lambda: True),
                     _swap(probe, "driver_devices", lambda: (devices, "")),
                     _swap(probe, "driver_cuda_version", driverGetVersion),
                     _swap(probe, "_refused", {})]
    saved_default = device_mod._Policy.default
    stats.reset()

    def uninstall():
        if not _active or _active[0] is not uninstall:
            return
        _active.clear()
        _forget_cupy_binders()
        _drop_cuda_backends()
        for name in [n for n in sys.modules if _is_cupy(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
        for restore in reversed(restore_probe):
            restore()
        device_mod._Policy.default = saved_default

    _active.append(uninstall)
    _active_devices[0] = devices
    return uninstall


def remove():
    """Remove a stand-in that ``installed(monkeypatch)`` left for the rest of a test
    (tests/conftest.py calls this at each test's end); one put in place by ``install()``
    itself (as tests/fake_cuda_run.py does for a whole run) stays."""
    _reused.clear()
    while _deferred:
        _deferred.pop()()


@contextlib.contextmanager
def installed(monkeypatch=None, devices=1):
    """The stand-in in place of CuPy, with ``devices`` stand-in GPUs, from the ``with``
    statement on. Given pytest's ``monkeypatch`` (a test), it stays until the test ends
    (tests/conftest.py removes it), so CUDA tensors made in the block stay usable for the
    test's checks; otherwise it is removed at the block's end. Where a stand-in with as many
    devices is already in place (a later block of the test, or a whole run under
    tests/fake_cuda_run.py), that one is used; a whole run's with other devices is set aside
    meanwhile. A test's first block on a whole run's stand-in gets it as fresh: no CUDA backend
    made yet (with its pending checks), counts at zero."""
    if _active and _active_devices[0] == devices:
        if not _deferred and not _reused:
            _drop_cuda_backends()
            stats.reset()
            if monkeypatch is not None:
                _reused.append(True)
        yield stats
        return
    whole_run = _active_devices[0] if _active and not _deferred else None
    if whole_run:  # set aside for this block or test, then put back
        _active[0]()
    remove()
    uninstall = install(devices)

    def done():
        uninstall()
        if whole_run:
            install(whole_run)

    if monkeypatch is not None:
        _deferred.append(done)
        yield stats
        return
    try:
        yield stats
    finally:
        done()


@contextlib.contextmanager
def cuda_or_stand_in(monkeypatch=None, devices=1):
    """Real CUDA where it is usable (with ``devices`` GPUs) and no stand-in is in place; the
    stand-in (:func:`installed`) otherwise. For tests whose CUDA cases mean real CUDA's numerics
    (flush to zero, contracted multiply-adds) and run on the stand-in only where there is none:
    tests/conftest.py does not count them as stand-in tests (``prefers_real_cuda``), so a GPU
    machine's real-CUDA selection runs them."""
    import gpuad

    if not _active and gpuad.cuda.is_available() and gpuad.cuda.device_count() >= devices:
        yield None
        return
    with installed(monkeypatch, devices) as counts:
        yield counts


cuda_or_stand_in.prefers_real_cuda = True
