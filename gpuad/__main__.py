"""Command line: ``python -m gpuad info`` and ``python -m gpuad demo``."""
import platform
import sys


def default_device_reason():
    """The default device and why it was chosen."""
    import os

    import gpuad as ad
    from gpuad.backends.probe import cuda_unavailable_reason

    dev = ad.get_default_device()
    env = os.environ.get("GPUAD_DEVICE")
    if env and env.strip().lower() != "auto":
        return f"{dev} (GPUAD_DEVICE={env})"
    reason = cuda_unavailable_reason(0)
    if dev.type == "cuda":
        return f"{dev} (auto: a usable GPU was found)"
    return f"{dev} (auto: " + ("set with ad.set_default_device)" if reason is None
                               else "no usable GPU, see cuda above)")


def kernel_cache_dir():
    """Where CuPy keeps compiled kernels (CUPY_CACHE_DIR, else ~/.cupy/kernel_cache)."""
    import os

    return os.environ.get("CUPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cupy",
                                                            "kernel_cache")


def info():
    """Print versions, the default device and why, the GPUs (through NVML when it is
    installed), the kernel cache, and which piece is missing when CUDA is unusable."""
    import numpy

    import gpuad as ad
    from gpuad.backends.probe import cuda_unavailable_reason, cupy_installed, driver_devices

    print(f"gpuad      {ad.__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"numpy      {numpy.__version__}")
    print(f"cupy       {'installed' if cupy_installed() else 'not installed'}")
    count, why = driver_devices()
    print(f"gpus       {count}" + (f" ({why})" if why else ""))
    reason = cuda_unavailable_reason(0)
    print(f"cuda       {'usable' if reason is None else 'unavailable: ' + reason}")
    print(f"default    {default_device_reason()}")
    print(f"kernels    {kernel_cache_dir()} (CuPy's cache of compiled kernels)")
    if reason is None:
        import cupy

        runtime = cupy.cuda.runtime.runtimeGetVersion()
        driver = cupy.cuda.runtime.driverGetVersion()
        print(f"cupy       {cupy.__version__}, CUDA runtime {_version(runtime)}, driver "
              f"{_version(driver)}")
        gpus = ad.cuda.gpu_info()
        if gpus is None:
            print("nvml       not installed (pip install nvidia-ml-py): no utilization or "
                  "temperature")
        for i in range(count):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode()
            cc = f"{props['major']}.{props['minor']}"
            free, total = ad.cuda.memory_info(f"cuda:{i}")
            line = (f"cuda:{i}     {name}, compute capability {cc}, memory "
                    f"{(total - free) / 2**30:.1f} used / {free / 2**30:.1f} free / "
                    f"{total / 2**30:.1f} GiB")
            if gpus is not None:
                g = gpus[i]
                line += f", utilization {g['utilization']}%, {g['temperature']} C"
            print(line)
    return 0


def _version(v):
    """CUDA's integer version (13000) as text (13.0)."""
    return f"{v // 1000}.{v % 1000 // 10}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m gpuad {info,demo} [options]")
        return 0 if argv else 2
    if argv[0] == "info":
        return info()
    if argv[0] == "demo":
        from .demo import main as demo
        from .errors import DeviceUnavailableError

        try:
            return demo(argv[1:])
        except DeviceUnavailableError as exc:
            print(f"{exc}", file=sys.stderr)
            return 2
    print(f"unknown command {argv[0]!r}; use info or demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
