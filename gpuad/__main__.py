"""Command line: ``python -m gpuad info`` and ``python -m gpuad demo``."""
import platform
import sys


def info():
    """Print versions, backends and GPUs, and which piece is missing when CUDA is unusable."""
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
    print(f"default    {ad.get_default_device()}")
    if reason is None:
        import cupy

        runtime = cupy.cuda.runtime.runtimeGetVersion()
        print(f"cupy       {cupy.__version__}, CUDA runtime {runtime}")
        for i in range(count):
            free, total = ad.cuda.memory_info(f"cuda:{i}")
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"].decode()
            print(f"cuda:{i}     {name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m gpuad {info,demo} [options]")
        return 0 if argv else 2
    if argv[0] == "info":
        return info()
    if argv[0] == "demo":
        from .demo import main as demo

        return demo(argv[1:])
    print(f"unknown command {argv[0]!r}; use info or demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
