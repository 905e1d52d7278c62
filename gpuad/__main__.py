"""Command line: ``python -m gpuad info``, ``python -m gpuad demo`` and ``--version``.

A user's mistake never shows a traceback: argparse's usage error (exit status 2) for a bad
option, one ``gpuad: ...`` line on stderr for a bad setting or a missing GPU or package (2), or
for a failure while running (1). ``info`` prints every field it can read and, in place of one it
cannot, what went wrong."""
import argparse
import os
import platform
import sys
import warnings

from ._cli import CommandError, one_line


def default_device_reason():
    """The default device and why it was chosen."""
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


def cpu_fallback_setting():
    """Whether CPU fallback is on, and the setting it comes from."""
    from gpuad.devices import cpu_fallback_enabled

    env = os.environ.get("GPUAD_CPU_FALLBACK")
    state = "on" if cpu_fallback_enabled() else "off"
    return state + (f" (GPUAD_CPU_FALLBACK={env!r})" if env is not None else "")


def kernel_cache_dir():
    """Where CuPy keeps compiled kernels (CUPY_CACHE_DIR, else ~/.cupy/kernel_cache)."""
    return os.environ.get("CUPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cupy",
                                                            "kernel_cache")


def _field(label, read):
    """Print ``label  value``; when reading the value fails, what went wrong in its place (info
    is what a user runs when something is wrong, so it reports and goes on)."""
    try:
        value = read()
    except Exception as exc:  # noqa: BLE001  (any failure is reported in the field)
        value = f"error: {_why(exc)}"
    print(f"{label:<10} {value}")
    return value


def _why(exc):
    """gpuad's own message without its prefix; another error's with its type."""
    text = " ".join(str(exc).split())
    if text.startswith("gpuad: "):
        return text.removeprefix("gpuad: ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def info(args=None):
    """Print versions, the default device and why, the CPU-fallback setting, the GPUs (through
    NVML when it is installed), the kernel cache, and which piece is missing when CUDA is
    unusable. A bad GPUAD_DEVICE or GPUAD_CPU_FALLBACK is reported in its field."""
    import numpy

    import gpuad as ad
    from gpuad.backends.probe import cuda_unavailable_reason, cupy_installed, driver_devices

    _field("gpuad", lambda: ad.__version__)
    _field("python", lambda: f"{platform.python_version()} ({sys.executable})")
    _field("numpy", lambda: numpy.__version__)
    _field("cupy", lambda: "installed" if cupy_installed() else "not installed")
    count, why = driver_devices()
    _field("gpus", lambda: f"{count}" + (f" ({why})" if why else ""))
    reason = cuda_unavailable_reason(0)
    _field("cuda", lambda: "usable" if reason is None else "unavailable: " + reason)
    _field("default", default_device_reason)
    _field("fallback", cpu_fallback_setting)
    _field("kernels", lambda: f"{kernel_cache_dir()} (CuPy's cache of compiled kernels)")
    if reason is None:
        _gpu_fields(ad, count)
    return 0


def _gpu_fields(ad, count):
    """The CUDA versions and one line per GPU (NVML's utilization and temperature, each
    reported as n/a with NVML's reason where it refuses, on a MIG device say)."""
    import cupy

    from gpuad.backends.probe import version_text as _version

    rt = cupy.cuda.runtime
    _field("cupy", lambda: f"{cupy.__version__}, CUDA runtime {_version(rt.runtimeGetVersion())}"
                           f", driver {_version(rt.driverGetVersion())}")
    gpus, failure = None, None
    try:
        gpus = ad.cuda.gpu_info()
    except Exception as exc:  # noqa: BLE001  (reported in the nvml field, as any field's)
        failure = f"error: {_why(exc)}"
    if gpus is None:
        _field("nvml", lambda: (failure or _nvml_missing(ad)) + ": no utilization or "
                               "temperature")
    for i in range(count):
        _field(f"cuda:{i}", lambda i=i: _gpu_line(ad, cupy, i, None if gpus is None else gpus[i]))


def _nvml_missing(ad):
    nvml, why = ad.cuda._start_nvml()
    if nvml is not None:  # (it started this time)
        ad.cuda._stop_nvml(nvml)
        return "unavailable"
    return why


def _gpu_line(ad, cupy, i, gpu):
    props = cupy.cuda.runtime.getDeviceProperties(i)
    free, total = ad.cuda.memory_info(f"cuda:{i}")
    line = (f"{props['name'].decode()}, compute capability {props['major']}.{props['minor']}, "
            f"memory {(total - free) / 2**30:.1f} used / {free / 2**30:.1f} free / "
            f"{total / 2**30:.1f} GiB")
    if gpu is not None and gpu["mig"]:
        line += " (a MIG instance)"
    if gpu is not None:
        line += (f", utilization {_nvml_value(gpu, 'utilization', '%')}, "
                 f"{_nvml_value(gpu, 'temperature', ' C')}")
    return line


def _nvml_value(gpu, field, unit):
    if gpu[field] is not None:
        return f"{gpu[field]}{unit}"
    errors = gpu["errors"]
    return f"n/a (NVML: {errors.get(field) or errors.get('handle', 'no value')})"


def _parser():
    from . import __version__, demo

    p = argparse.ArgumentParser(
        prog=_prog(), description="gpuad: array automatic differentiation on NVIDIA GPUs "
        "(CuPy) with a NumPy CPU fallback.")
    p.add_argument("--version", action="version", version=f"gpuad {__version__}")
    commands = p.add_subparsers(title="commands", dest="command", metavar="COMMAND",
                                required=True)
    commands.add_parser(
        "info", help="print versions, devices, GPUs and settings, and what is missing for CUDA",
        description="Print gpuad's, Python's, NumPy's and CuPy's versions, the default device "
        "and why, the CPU-fallback setting, the GPUs (through NVML where installed) and the "
        "kernel cache; say which piece is missing when CUDA is unusable.").set_defaults(run=info)
    demo.add_arguments(commands.add_parser(
        "demo", help="train a small MLP on the bundled handwritten digits",
        description=demo.DESCRIPTION)).set_defaults(run=demo.run)
    return p


#: The exit status after the reader of stdout went away: a shell's for a command that SIGPIPE
#: ended (128 + 13), as ``yes | head -1`` gives, quietly, with no traceback.
SIGPIPE_STATUS = 141


def _prog():
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "gpuad" if name.startswith("gpuad") else "python -m gpuad"


def main(argv=None):
    """Run a command; returns its exit status (2: usage error, 1: failure, 0: success, 141:
    stdout was closed early, as by ``| head``)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # (argparse's usage error, --help or --version)
        return exc.code
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = args.run(args)
        sys.stdout.flush()  # (a closed pipe shows here, not at exit)
        return status
    except CommandError as exc:
        print(one_line(exc), file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # (python -m gpuad info | head -1)
        _stdout_to_devnull()
        return SIGPIPE_STATUS
    except KeyboardInterrupt:
        print("gpuad: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line, ``gpuad: warning: ...`` (its place in gpuad means nothing to a
    user of the command line)."""
    print(f"gpuad: warning: {one_line(message).removeprefix('gpuad: ')}", file=sys.stderr)


def _stdout_to_devnull():
    """After a broken pipe: point stdout at /dev/null, so the flush at exit cannot fail."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
