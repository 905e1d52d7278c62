"""The data_parallel suite: gpuad's ``DistributedDataParallel`` and its all-reduce, in ranks
started by ``mpiexec -n N`` (each running ``benchmarks.data_parallel_rank``; see there for
what is measured and how it is checked).

- The MLP step (the mlp_step suite's 784-256-256-10 SGD step, ``batch`` rows per rank: the
  global batch grows with the ranks, as when each GPU of a data-parallel job keeps its batch)
  at 1, 2 and 4 ranks (``--quick``: 1 and 2), with the share of the step spent inside DDP's
  all-reduce; PyTorch's DDP on gloo beside it where torch is asked for and gloo works. The
  1-rank step is the reference (its all-reduce is a world of one's: the staging copies only).
- From 2 ranks: the all-reduce of the MLP's flat gradient buffer and of a 16 MiB one through
  gpuad against a bare mpi4py ``Allreduce`` of the same bytes; the target is the flat buffer's
  (a DDP bucket reduced in place) at least ``suites.DATA_PARALLEL_TARGET`` × bare mpi4py's
  speed.
- With ``--device cuda``: the NCCL all-reduce of the same buffers (one rank, on cuda:0),
  through gpuad and bare; skipped, with gpuad's reason, where no GPU or NCCL is usable. With
  ``--device cpu`` it is recorded as skipped (asked for with ``--device cuda``).

Each rank gets ``max(1, threads // N)`` BLAS and gpuad threads (``--threads``: the threads of
the whole job, as of one framework elsewhere) and, where the ranks' threads fit the machine's
cores, cores of its own; more ranks than cores oversubscribe the machine, which the results
record and the report says. The suite is skipped, with the reason, without mpi4py or
mpiexec, or when gpuad is not among ``--frameworks``.
"""
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from . import machine, suites

RANKS = {"full": (1, 2, 4), "quick": (1, 2)}
#: the larger buffer, as the (rows, columns) of a Linear layer's weight: 16 MiB of float32
BIG = {"full": (1024, 4096), "quick": (64, 256)}
#: the ranks' timing, as the harness's PROFILES: seconds of warm-up, per sample and of
#: samples per method, and the rounds
PROFILES = {
    "full": {"warm_s": 0.3, "sample_s": 0.05, "budget_s": 1.0, "rounds": (7, 21)},
    "quick": {"warm_s": 0.0, "sample_s": 0.005, "budget_s": 0.02, "rounds": (2, 2)},
}
#: the frameworks that run here (each in ranks of its own), gpuad first
FRAMEWORKS = ("gpuad", "torch")
#: seconds a collective may wait for the other ranks, and a launch for its ranks to end
COLLECTIVE_TIMEOUT_S = 120
LAUNCH_TIMEOUT_S = {"full": 900, "quick": 240}
SUITE = "data_parallel"


def mpiexec():
    """The MPI launcher: ``mpiexec`` on PATH, or beside this Python (a venv's mpich)."""
    return shutil.which("mpiexec") or shutil.which(
        os.path.join(os.path.dirname(sys.executable), "mpiexec"))


def skip_reason(frameworks):
    """Why the suite cannot run here (None: it can)."""
    if "gpuad" not in frameworks:
        return "gpuad is not among --frameworks"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'gpuad[mpi]': mpi4py and MPICH)"
    if mpiexec() is None:
        return "no mpiexec on PATH or beside this Python (pip install 'gpuad[mpi]')"
    return None


def skipped(case, reason, **params):
    return {"suite": SUITE, "case": case, "unit": "", "x": params.get("ranks"),
            "params": params, "skipped": reason, "results": {}}


def spec(mode, framework, quick, threads):
    """What a launch's ranks do (the JSON ``benchmarks.data_parallel_rank`` reads)."""
    kind = "quick" if quick else "full"
    return {"mode": mode, "framework": framework, "quick": quick, "sizes": suites.MLP,
            "batch": 128, "big": BIG[kind], "threads": threads, "profile": PROFILES[kind],
            "timeout": COLLECTIVE_TIMEOUT_S, "cores": machine.usable_cores()}


def _launch(command, env, timeout, what):
    """Run ``command`` and the file it is to write, in a process group of its own (killed
    whole on a timeout): (the records it wrote, or None), the error text."""
    from .harness import ROOT

    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "records.json"
        proc = subprocess.Popen(command + [str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            return None, f"{what} did not end within {timeout} s:\n{log[-2500:]}"
        if proc.returncode != 0 or not out.exists():
            return None, f"{what} exited with status {proc.returncode}:\n{log[-2500:]}"
        return json.loads(out.read_text()), None


def _env(threads):
    from .harness import _env as harness_env

    env = harness_env(threads)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GPUAD_DEVICE"):  # (not a torchrun)
        env.pop(name, None)
    return env


def _merge(records, more):
    """``more``'s results (another framework's) into the records of the same cases."""
    by_case = {r["case"]: r for r in records}
    for r in more:
        if r["case"] in by_case:
            by_case[r["case"]]["results"].update(r["results"])
        else:
            records.append(r)


def _failed(framework, what, error, ranks):
    """A launch that wrote nothing: one record that fails the run, with its output."""
    return {"suite": SUITE, "case": f"{what}, {framework}", "unit": "", "x": ranks,
            "params": {"ranks": ranks}, "results": {framework: {"status": "error",
                                                                "reason": error}}}


def run(quick, device, threads, frameworks, say=print):
    """The suite's records (``harness.run`` adds them to the results)."""
    from .harness import _python_module

    reason = skip_reason(frameworks)
    if reason is not None:
        return [skipped("every case", reason)]
    kind = "quick" if quick else "full"
    module = _python_module("benchmarks.data_parallel_rank")
    if device == "cuda":
        command = module + [json.dumps(spec("nccl", "gpuad", quick, threads))]
        got, error = _launch(command, _env(threads), LAUNCH_TIMEOUT_S[kind], "the NCCL run")
        return got or [_failed("gpuad", "nccl all_reduce", error, 1)]
    records = []
    for n in RANKS[kind]:
        per_rank = max(1, threads // n)
        for framework in [f for f in FRAMEWORKS if f in frameworks]:
            what = f"mpiexec -n {n} ({framework})"
            command = [mpiexec(), "-n", str(n), *module,
                       json.dumps(spec("mpi", framework, quick, per_rank))]
            got, error = _launch(command, _env(per_rank), LAUNCH_TIMEOUT_S[kind], what)
            _merge(records, got or [_failed(framework, what, error, n)])
    steps = {r["x"]: r for r in records if r["unit"] == "ms/step"}
    one = steps.get(1, {}).get("results", {}).get("gpuad", {}).get("median")
    for r in steps.values():
        g, t = r["results"].get("gpuad", {}), r["results"].get("torch", {})
        if one and "median" in g:
            g["vs_1_rank"] = g["median"] / one
        if "median" in g and "median" in t:  # (their own ranks, one after the other)
            r["ratio"] = g["median"] / t["median"]
    records.append(skipped("nccl all_reduce, 1 rank", "measured with --device cuda (python "
                           "-m benchmarks run --suite data_parallel --device cuda) on a "
                           "machine with a GPU and NCCL", ranks=1))
    return records


# ---- the report ---------------------------------------------------------------------------
def _ms(r):
    if r is None:
        return "—"
    if r["status"] != "ok":
        return r["status"]
    text = f"{r['median']:.3g}"
    if "gb_per_s" in r:
        text += f" ({r['gb_per_s']:.2f} GB/s)"
    return text


def _share(g):
    if "comm_share" not in g:
        return ""
    return f"{g['comm_share']:.1%} ({g['mpi_share']:.1%})"


#: the all-reduce table's columns: result key -> header
COLUMNS = {"gpuad_sum": "gpuad: MPI all-reduce (sum)",
           "gpuad": "gpuad: DDP bucket (views of one buffer)",
           "gpuad_staged": "gpuad: DDP bucket (separate arrays)",
           "gpuad_all_reduce": "gpuad: ad.distributed.all_reduce",
           "mpi4py": "bare mpi4py Allreduce", "mpi4py_iallreduce": "bare mpi4py Iallreduce+Wait",
           "nccl": "bare ncclAllReduce", "torch": "torch (gloo)"}


def markdown(records, verdict):
    """The suite's section of the report: the steps, then the all-reduces (``verdict(r)``:
    the target column of a record)."""
    lines = []
    for r in records:
        if "skipped" in r:
            lines.append(f"- {r['case']}: skipped ({r['skipped']})")
    if lines:
        lines.append("")
    steps = [r for r in records if r["unit"] == "ms/step"]
    if steps:
        launch = next((r["params"].get("launch") for r in steps if "launch" in r["params"]),
                      {})
        lines += [f"MLP step (ms per step; {steps[0]['params'].get('batch_per_rank')} rows per "
                  f"rank, so the global batch grows with the ranks; {launch.get('mpi', 'MPI')}, "
                  f"mpi4py {launch.get('mpi4py', '?')}). The communication share is the time "
                  "inside DDP's bucket all-reduce (staging copies included) over the step; in "
                  "brackets, inside the MPI all-reduce alone. A world of one has no MPI: its "
                  "all-reduce is the staging copies. Each framework runs in ranks of its own, "
                  "one launch after the other: gpuad / torch is the ratio of their medians, "
                  "not of rounds taken in turn.", "",
                  "| ranks | threads per rank | gpuad | × 1 rank | communication share | torch "
                  "DDP (gloo) | gpuad / torch | note |", "|---" * 8 + "|"]
        for r in steps:
            g, t = r["results"].get("gpuad", {}), r["results"].get("torch")
            launch = r["params"].get("launch", {})
            note = ""
            if launch.get("oversubscribed"):
                note = (f"oversubscribed: {r['x']} ranks × {launch['threads_per_rank']} "
                        f"thread(s) on {launch['cores']} cores")
            lines.append(f"| {r['x']} | {launch.get('threads_per_rank', '')} | {_ms(g)} | "
                         + (f"{g['vs_1_rank']:.2f}" if "vs_1_rank" in g else "")
                         + f" | {_share(g)} | {_ms(t)} | "
                         + (f"{r['ratio']:.2f}" if "ratio" in r else "") + f" | {note} |")
        lines.append("")
    reduces = [r for r in records if r["unit"] == "ms" and "skipped" not in r]
    if reduces:
        used = [k for k in COLUMNS if any(k in r["results"] for r in reduces)]
        bare = "nccl" if "nccl" in used else "mpi4py"
        lines += [f"All-reduce (ms per call, and bytes / time; every rank's values, checked "
                  f"first): the target is the flat buffer's all-reduce, gpuad's sum at least "
                  f"{suites.DATA_PARALLEL_TARGET:.2f}× bare {bare}'s speed (bare time / "
                  "gpuad time, the median of the per-round ratios). DDP's bucket adds to "
                  "that sum a copy of the gradients into its flat buffer (with a flag per "
                  "parameter) and back, and the mean's scaling pass; its gradients are "
                  "views of one buffer, or separate arrays (as on the CPU).", "",
                  "| case | " + " | ".join(COLUMNS[k] for k in used)
                  + " | bare / gpuad sum | bare / bucket (views) | bare / bucket (arrays) | "
                  "bare / all_reduce "
                  "| target |", "|---" * (len(used) + 6) + "|"]
        for r in reduces:
            res = r["results"]
            ratio = r.get("vs_mpi4py", r.get("vs_nccl"))
            lines.append(f"| {r['case']} | " + " | ".join(_ms(res.get(k)) for k in used)
                         + " | " + (f"{ratio:.2f}" if ratio is not None else "")
                         + " | " + " | ".join(
                             f"{res[k][f'vs_{bare}']:.2f}" if f"vs_{bare}" in res.get(k, {})
                             else "" for k in ("gpuad", "gpuad_staged", "gpuad_all_reduce"))
                         + f" | {verdict(r)} |")
        lines.append("")
    return lines
