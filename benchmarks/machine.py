"""The machine a result was measured on, recorded with every result file, and the name of the
file its results are kept in: ``<device>-<model slug>.json`` (``cpu-amd-epyc.json``,
``cuda-nvidia-h100-80gb-hbm3.json``), so that each machine keeps its own results."""
import os
import pathlib
import platform
import re
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
    """The first GPU's name and driver by nvidia-smi ("NVIDIA H100 80GB HBM3, 550.54.15"), or
    None."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,"
                              "noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def usable_cores():
    """The CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        return os.cpu_count() or 1


def describe(threads, device):
    import numpy

    return {"cpu": cpu_model(), "cores": usable_cores(), "threads": threads,
            "gpu": gpu_name() if device == "cuda" else None, "os": platform.platform(),
            "python": sys.version.split()[0], "numpy": numpy.__version__}


def model(doc):
    """The model a results document was measured on: its GPU's name (without the driver) for a
    CUDA run, else its CPU's."""
    m = doc["machine"]
    if doc["device"] == "cuda":
        return (m.get("gpu") or "unknown GPU").split(",")[0].strip()
    return m["cpu"]


def slug(text):
    """A model name as a file name's part: "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz" ->
    "intel-xeon-gold-6148-cpu" (trademarks and the clock left out)."""
    text = re.sub(r"\((r|tm)\)", " ", text.split("@")[0].lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def stem(doc):
    """``<device>-<model slug>``: the name (less ``.json``) of a document's results file."""
    return f"{doc['device']}-{slug(model(doc))}"


def result_path(out, doc):
    """Where ``--out OUT`` writes ``doc``: OUT with ``{machine}`` replaced by ``stem(doc)``;
    an OUT that is a folder (or ends in /) gets ``<stem>.json`` inside it."""
    if "{machine}" in out:
        return pathlib.Path(out.replace("{machine}", stem(doc)))
    if out.endswith(("/", os.sep)) or pathlib.Path(out).is_dir():
        return pathlib.Path(out) / f"{stem(doc)}.json"
    return pathlib.Path(out)
