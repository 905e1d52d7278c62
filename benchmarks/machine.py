"""The machine a result was measured on, recorded with every result file."""
import os
import platform
import subprocess
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name():
    """The first GPU's name by nvidia-smi, or None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,"
                              "noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def describe(threads, device):
    import numpy

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "gpu": gpu_name() if device == "cuda" else None, "os": platform.platform(),
            "python": sys.version.split()[0], "numpy": numpy.__version__}
