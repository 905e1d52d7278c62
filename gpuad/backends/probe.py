"""Find out, without importing CuPy, whether CuPy is installed and whether a usable GPU exists.

The two are separate facts: CuPy can be installed on a machine with no driver, and a GPU can be
present where CuPy is not. The driver is asked directly through ``libcuda`` (``cuInit``,
``cuDeviceGetCount`` and ``cuDriverGetVersion``), and the CUDA major version CuPy was built for
is read from its package's name (``cupy-cuda13x``), so ``import gpuad`` and the default-device
decision never load CuPy. A driver older than that CUDA is caught here; whatever else the CUDA
runtime refuses when the backend is made is recorded with :func:`refuse`, so the device counts
as unavailable from then on.
"""
import ctypes
import functools
import importlib.metadata
import importlib.util
import os
import re
import shlex

#: the oldest CUDA major with a CuPy extra of gpuad's (cuda_install_hint's)
OLDEST_CUDA = 12


@functools.cache
def extra_requirements(extra):
    """The requirements gpuad's ``extra`` brings, as gpuad's installed metadata lists them
    (pyproject.toml's optional dependencies); empty where gpuad's metadata is not installed."""
    try:
        requires = importlib.metadata.requires("gpuad") or []
    except importlib.metadata.PackageNotFoundError:
        return ()
    marker = re.compile(rf"""extra\s*==\s*['"]{re.escape(extra)}['"]""")
    return tuple(r.split(";")[0].strip() for r in requires if marker.search(r))


def install_hint(extra, packages=None):
    """How to get what gpuad's ``extra`` brings: the ``packages`` (by default the extra's own
    requirements) from the package index, or the extra itself from gpuad's folder (gpuad
    installs from its repository, not from an index)."""
    from_folder = f"in gpuad's folder, pip install '.[{extra}]'"
    packages = packages or " ".join(shlex.quote(r) for r in extra_requirements(extra))
    return f"pip install {packages} (or, {from_folder})" if packages else from_folder


def cuda_install_hint():
    """How to install CuPy for either CUDA version gpuad has an extra for."""
    return (f"install CuPy for your CUDA version: for CUDA 13, {install_hint('cuda13')}; for "
            f"CUDA 12, {install_hint('cuda12')}")


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


@functools.cache
def driver_cuda_version():
    """The CUDA version the driver supports, as CUDA writes it (12040 for 12.4); None where
    libcuda cannot be loaded or does not answer."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return version.value


@functools.cache
def cupy_build():
    """``(distribution, version, CUDA major)`` of the installed CuPy wheel
    (``("cupy-cuda13x", "14.2.0", 13)``); None for a build whose name does not say its CUDA
    (a source build named ``cupy``) or where CuPy is not installed."""
    for dist in importlib.metadata.distributions():  # (by name: a scan of files is slow)
        name = dist.metadata["Name"] or ""
        match = re.fullmatch(r"cupy[-_]cuda(\d+)x", name.lower())
        if match:
            return name, dist.version, int(match.group(1))
    return None


def version_text(v):
    """CUDA's integer version (12040) as text (12.4)."""
    return f"{v // 1000}.{v % 1000 // 10}"


def driver_too_old():
    """Why the driver cannot run the installed CuPy (its CUDA major is newer than the one the
    driver supports), with both versions and the fix; None when it can, or either is unknown."""
    driver = driver_cuda_version()
    build = None if driver is None else cupy_build()
    if build is None or driver // 1000 >= build[2]:
        return None
    dist, version, major = build
    major_driver = driver // 1000
    other = (f", or install the CuPy for CUDA {major_driver}: "
             + install_hint(f"cuda{major_driver}")
             if major_driver >= OLDEST_CUDA else "")
    return (f"the NVIDIA driver supports CUDA {version_text(driver)}, older than the CUDA "
            f"{major} that the installed CuPy ({dist} {version}) is built for; update the NVIDIA "
            f"driver to one for CUDA {major}{other}")


#: cuda:N -> why the CUDA runtime refused it when its backend was made (see :func:`refuse`)
_refused = {}


def refuse(index, reason):
    """Record that the CUDA runtime refused ``cuda:index`` (``reason`` says why, with the fix):
    from now on it is unavailable, so ``ad.cuda.is_available()``, the CPU fallback and the
    tests' skip see it."""
    _refused[index] = reason


def cuda_unavailable_reason(index=0):
    """Why ``cuda:index`` cannot be used, with the fix; ``None`` when it can."""
    if index in _refused:
        return _refused[index]
    count, why = driver_devices()
    if not cupy_installed():
        if count:
            return (f"{count} GPU(s) are visible, but CuPy is not installed; "
                    f"{cuda_install_hint()}")
        return (
            f"CuPy is not installed and {why}; a CUDA device needs an NVIDIA GPU with its "
            f"driver, then {cuda_install_hint()}"
        )
    if count == 0:
        return (
            f"CuPy is installed but {why}; run on a machine with an NVIDIA GPU and driver, "
            "or use device='cpu' (set GPUAD_CPU_FALLBACK=1 to fall back automatically)"
        )
    too_old = driver_too_old()
    if too_old is not None:
        return f"{too_old} (or use device='cpu'; GPUAD_CPU_FALLBACK=1 falls back automatically)"
    if index >= count:
        return (
            f"cuda:{index} was asked for but only {count} CUDA device(s) exist "
            f"(cuda:0..cuda:{count - 1}); pick an index below {count}"
        )
    return None
