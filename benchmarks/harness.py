"""``python -m benchmarks run``: every framework in its own worker process, timed side by side.

For each case, every worker builds the step and checks its first result against the float64
reference (a wrong result is reported and fails the run; nothing wrong is ever timed). Then a
warm-up, then rounds: in each round every worker times one sample (a number of steps chosen
so a sample lasts about ``sample_s``) in turn, the order rotating, so that the machine's noise
falls on all frameworks alike, with a pause before each sample for the previous framework's
thread pools to stop spinning. Reported: the median and min of the samples, and gpuad / torch
as the median of the per-round ratios (for a variant's case, also each framework's variant /
plain, the plain step being timed in the same rounds). Before and after each suite the load
is read (``benchmarks.load``); a suite run under load has its results marked unreliable.
"""
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from . import data_parallel, load, machine, suites
from .worker import THREAD_VARIABLES

#: the results files' format: 3 added the data_parallel suite (``suites.ADDED``)
VERSION = 3

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Before each sample the harness waits ``settle_s``: a BLAS or OpenMP pool keeps spinning on
# the cores for a while after its last call (NumPy's OpenBLAS for about 0.1 s), which would
# slow whichever framework's sample came next, since all of them share the same cores.
PROFILES = {  # warm-up, seconds per sample, seconds of samples per framework and case, rounds
    "full": {"warm_s": 0.3, "sample_s": 0.05, "budget_s": 1.0, "rounds": (7, 21),
             "settle_s": 0.15, "imports": 11},
    "quick": {"warm_s": 0.0, "sample_s": 0.005, "budget_s": 0.05, "rounds": (2, 3),
              "settle_s": 0.0, "imports": 2},
}
# On CUDA the host threads are idle while the GPU works (little spinning to wait out), and a
# device machine is lent for minutes: fewer rounds, a short pause.
PROFILES["cuda"] = {**PROFILES["full"], "budget_s": 0.5, "rounds": (5, 11), "settle_s": 0.02}


class WorkerDied(RuntimeError):
    pass


class Unusable(RuntimeError):
    """gpuad itself cannot run on the device asked for: nothing to compare."""


def _env(threads):
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _python_module(module, *args):
    """The command of a child process that runs ``python -m module args``: through the script
    in BENCHMARKS_LAUNCHER when it is set (benchmarks/gpu_checks.sh's dry run sets
    tests/fake_cuda_run.py, which runs the module on the CuPy stand-in), so the children see
    the devices their parent sees."""
    launcher = os.environ.get("BENCHMARKS_LAUNCHER")
    return [sys.executable, *([launcher] if launcher else []), "-m", module, *args]


class Worker:
    """A framework's process, spoken to in JSON lines."""

    def __init__(self, framework, device, threads):
        self.framework = framework
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            _python_module("benchmarks.worker", framework, device, str(threads)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            cwd=ROOT, env=_env(threads))
        self.hello = self._receive()

    def _receive(self):
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log.seek(0)
            raise WorkerDied(f"the {self.framework} worker exited ({self.proc.returncode}):\n"
                             + self.log.read()[-3000:])
        return json.loads(line)

    def ask(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._receive()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout, self.log):
            stream.close()


def _time_case(case, workers, profile, quick, say):
    """Build, check, warm up and time one case on every worker; the case's result record."""
    record = {"suite": case.suite, "case": case.name, "unit": case.unit, "x": case.x,
              "params": case.params, "results": {}}
    if case.variant:
        record["variant"] = case.variant
    ready = []
    for w in workers:
        answer = w.ask(cmd="build", suite=case.suite, name=case.name, quick=quick)
        if answer["ok"]:
            ready.append(w)
            record["results"][w.framework] = {"status": "ok", "max_error": answer["max_error"]}
        else:
            record["results"][w.framework] = {"status": answer["status"],
                                              "reason": answer["reason"]}
            if answer["status"] != "not offered":
                say(f"  {w.framework}: {answer['status']}: {answer['reason']}")
    # what each worker times: its step, and for a variant's case its plain step too
    runs = [(w, plain) for w in ready for plain in ((False, True) if case.variant else (False,))]
    per_step = {}
    for w, plain in runs:  # warm-up, which also estimates a step's time
        spent, n = 0.0, 0
        while n < 2 or spent < profile["warm_s"]:
            spent += w.ask(cmd="time", reps=1, plain=plain)["seconds"]
            n += 1
        per_step[w.framework, plain] = spent / n
    reps = {k: max(1, round(profile["sample_s"] / t)) for k, t in per_step.items()}
    longest = max([reps[k] * t for k, t in per_step.items()], default=1)
    lo, hi = profile["rounds"]
    rounds = max(lo, min(hi, int(profile["budget_s"] / longest)))
    all_samples = {k: [] for k in per_step}
    for r in range(rounds):
        for w, plain in runs[r % len(runs):] + runs[:r % len(runs)] if runs else []:
            if len(runs) > 1:
                time.sleep(profile["settle_s"])
            key = (w.framework, plain)
            all_samples[key].append(w.ask(cmd="time", reps=reps[key], plain=plain)["seconds"])
    samples = {f: s for (f, plain), s in all_samples.items() if not plain}
    for f, s in samples.items():
        res = record["results"][f]
        res.update(median=statistics.median(s) * case.per_step, min=min(s) * case.per_step,
                   samples=len(s), reps=reps[f, False])
        if "bytes_per_step" in case.extra:
            res["gb_per_s"] = case.extra["bytes_per_step"] / statistics.median(s) / 1e9
        if case.variant:  # the mode's cost: against the plain step, round by round
            plain = all_samples[f, True]
            res.update(plain_median=statistics.median(plain) * case.per_step,
                       vs_plain=statistics.median(a / b for a, b in zip(s, plain)))
    if "gpuad" in samples and suites.BASELINE in samples:
        record["ratio"] = statistics.median(
            a / b for a, b in zip(samples["gpuad"], samples[suites.BASELINE]))
        if case.variant == "compiled":  # gpuad compiled against the baseline's eager step
            record["ratio_plain"] = statistics.median(
                a / b for a, b in zip(samples["gpuad"], all_samples[suites.BASELINE, True]))
    return record


IMPORT_CHECKS = {  # after the timed import: a first derivative, printed
    "gpuad": "x = gpuad.tensor(3.0, requires_grad=True); print(float(gpuad.grad(x * x, x)[0]))",
    "torch": "x = torch.tensor(3.0, requires_grad=True); "
             "print(float(torch.autograd.grad(x * x, x)[0]))",
    "jax": "print(float(jax.grad(lambda x: x * x)(3.0)))",
    "autograd": "print(float(autograd.grad(lambda x: x * x)(3.0)))",
    "numpy": "print(float(numpy.gradient(numpy.array([0.0, 9.0, 36.0]), 3.0)[1]))",
}


def _import_times(frameworks, threads, profile, say):
    """Seconds to import each framework in fresh interpreters (rounds interleaved), each run
    then checking that d(x²)/dx at 3 is 6."""
    names = [f for f in frameworks if f in suites.IMPORTS]
    record = {"suite": "import_time", "case": "import", "unit": "s", "x": None, "params": {},
              "results": {}}
    samples = {f: [] for f in names}
    for _ in range(profile["imports"] + 1):  # the first round only fills the OS file cache
        for f in list(samples):
            module = suites.IMPORTS[f]
            code = (f"import time; t0 = time.perf_counter(); import {module}; "
                    f"t = time.perf_counter() - t0; print(t); {IMPORT_CHECKS[f]}")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=_env(threads), cwd=tempfile.gettempdir())
            if out.returncode != 0:
                missing = "ModuleNotFoundError" in out.stderr
                record["results"][f] = {
                    "status": "missing" if missing else "error",
                    "reason": "not installed" if missing else out.stderr[-2000:]}
                if not missing:
                    say(f"  {f}: import failed: {out.stderr[-500:]}")
                del samples[f]
                continue
            t, value = out.stdout.split()[-2:]
            if abs(float(value) - 6.0) > 1e-6:
                record["results"][f] = {"status": "wrong",
                                        "reason": f"d(x²)/dx at 3 gave {value}"}
                del samples[f]
                continue
            samples[f].append(float(t))
    for f, s in samples.items():
        s = s[1:]
        record["results"][f] = {"status": "ok", "median": statistics.median(s), "min": min(s),
                                "samples": len(s), "reps": 1}
    if "gpuad" in samples and suites.BASELINE in samples:
        record["ratio"] = (record["results"]["gpuad"]["median"]
                           / record["results"][suites.BASELINE]["median"])
    return record


def _kernels(quick, say):
    """gpuad's CUDA kernel benchmark (benchmarks.kernels), its JSON kept whole."""
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "kernels.json"
        args = _python_module("benchmarks.kernels", "--json", str(path))
        if quick:
            args += ["--n", str(1 << 22), "--reps", "3"]
        out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=_env(1))
        say(out.stdout.rstrip())
        record = {"suite": "kernels", "case": "kernels", "unit": "GB/s", "x": None,
                  "params": {}, "results": {}}
        if out.returncode != 0:
            record["results"]["gpuad"] = {"status": "error", "reason": out.stderr[-3000:]}
        else:
            record["results"]["gpuad"] = {"status": "ok", "detail": json.loads(path.read_text())}
        return record


def run(suite_names, frameworks, device, quick, threads, say=print, save=None):
    """Run the suites; returns (the results document, whether every result was right).
    ``save(doc)`` is called after each suite, so a run cut short keeps what it measured."""
    profile = PROFILES["quick" if quick else "cuda" if device == "cuda" else "full"]
    meter = load.Meter()  # (before the workers start: their CPU is the benchmark's own)
    doc = {"harness": VERSION, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "device": device, "quick": quick,
        "machine": machine.describe(threads, device), "frameworks": {}, "cases": [],
        "load": []}
    workers = []
    for f in frameworks:
        if device == "cuda" and f in suites.CPU_ONLY:
            doc["frameworks"][f] = {"status": "skipped", "reason": "CPU only"}
            continue
        w = Worker(f, device, threads)
        if w.hello["ready"]:
            workers.append(w)
            doc["frameworks"][f] = {"status": "ok", "version": w.hello["version"],
                                    "cpus": w.hello["cpus"]}
        else:
            doc["frameworks"][f] = {"status": "skipped", "reason": w.hello["reason"]}
            w.close()
        say(f"{f:9s} " + (w.hello.get("version") or f"skipped: {w.hello['reason']}"))
    if "gpuad" in frameworks and doc["frameworks"]["gpuad"]["status"] != "ok":
        for w in workers:
            w.close()
        raise Unusable(f"gpuad cannot run on {device}: {doc['frameworks']['gpuad']['reason']}")
    try:
        for name in suite_names:
            say(f"{name}: {suites.SUITES[name][0]}")
            before = meter.reading()
            if name == "import_time":
                records = [_import_times(frameworks, threads, profile, say)]
            elif name == "kernels":
                records = [_kernels(quick, say)] if device == "cuda" else []
            elif name == "data_parallel":
                records = data_parallel.run(quick, device, threads, frameworks, say)
            else:
                records = []
                for case in suites.cases(name, quick, device):
                    chosen = ([w for w in workers if w.framework in ("gpuad", "torch")]
                              if name in suites.SCALING else workers)
                    records.append(_time_case(case, chosen, profile, quick, say))
            entry = load.judge(name, before, meter.reading(), doc["machine"]["cores"] or 1)
            doc["load"].append(entry)
            for record in records:
                if "unreliable" in entry:
                    record["unreliable"] = entry["unreliable"]
                doc["cases"].append(record)
                say("  " + _line(record))
            if "unreliable" in entry:
                say(f"  UNRELIABLE ({name}): {entry['unreliable']}")
            if save is not None:
                save(doc)
    finally:
        for w in workers:
            w.close()
    return doc, verdict(doc)


def verdict(doc):
    """True when no framework gave a wrong result or failed, and gpuad (when it was asked
    for) ran every case that was not skipped (a case that cannot run here, such as
    data_parallel's without mpi4py, is recorded with ``skipped``: why)."""
    cases = [record for record in doc["cases"] if "skipped" not in record]
    right = all(r["status"] in ("ok", "not offered", "missing")
                for record in cases for r in record["results"].values())
    if "gpuad" not in doc.get("frameworks", {"gpuad": None}):
        return right
    return right and all(record["results"].get("gpuad", {}).get("status") == "ok"
                         for record in cases)


def _line(record):
    if "skipped" in record:
        return f"{record['case']}: skipped ({record['skipped']})"
    parts = []
    for f, r in record["results"].items():
        if r["status"] == "ok" and "median" in r:
            parts.append(f"{f} {r['median']:.4g}"
                         + (f" (communication {r['comm_share']:.0%})" if "comm_share" in r
                            else ""))
        elif r["status"] != "ok":
            parts.append(f"{f} {r['status']}")
    ratio = f"   gpuad/torch {record['ratio']:.2f}" if "ratio" in record else ""
    for key, bare in (("vs_mpi4py", "mpi4py"), ("vs_nccl", "nccl")):
        if key in record:
            ratio += f"   {bare}/gpuad {record[key]:.2f}"
    costs = [f"{f} {r['vs_plain']:.2f}" for f, r in record["results"].items() if "vs_plain" in r]
    if costs:
        ratio += "   against plain: " + ", ".join(costs)
    return f"{record['case']:24s} [{record['unit']}] " + ", ".join(parts) + ratio
