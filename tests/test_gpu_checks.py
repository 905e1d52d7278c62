"""benchmarks/gpu_checks.sh run here: the path without a GPU (every GPU step skipped with
gpuad's own reason), the budget (a step that would start past it is skipped, with why), a step
that fails and one that must be stopped (the next still runs), and the dry run on the CuPy
stand-in (GPUAD_CHECKS_STANDIN=1) under a small budget. Each checks steps.tsv: every step, in
the issue's order, with a status, within the budget plus the grace a KILLed step may take; and
that OUT holds no more than the device tool brings back, every log packed in results.tar.gz."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_checks.sh"
#: issue 16's order, most valuable evidence first (issue 18 adds cuda_graph, the real capture,
#: and bench_compile, ad.compile's steps against PyTorch's eager and CUDA-graphed ones)
STEPS = ["env", "info", "kernels", "fused", "demo", "demo_nccl", "ops", "cuda_graph", "pytest",
         "bench_kernels", "bench_compile", "bench_suites"]
GPU_STEPS = STEPS[2:]
#: the seconds between a stopped step's TERM and KILL in these runs (GPUAD_CHECKS_GRACE)
GRACE = 2
#: what the device tool brings back of $OUT (/work/.library/device/README.md, "Limits")
MAX_FILES, MAX_FILE_BYTES, MAX_TOTAL_BYTES, MAX_DEPTH = 8, 16 << 20, 64 << 20, 2
NAME = re.compile(r"[A-Za-z0-9._-]+")


def _run(tmp_path, budget, **env):
    """Run the script; (exit status, steps.tsv rows as dicts, stdout and stderr). Checks that
    OUT fits what the device tool brings back, and unpacks results.tar.gz to tmp_path/results."""
    out = tmp_path / "out"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GPUAD_CHECKS_")}
    environ |= {"OUT": str(out), "GPUAD_CHECKS_BUDGET": str(budget), "PYTHON": sys.executable,
                "GPUAD_CHECKS_GRACE": str(GRACE), "CUPY_CACHE_DIR": str(tmp_path / "cache"),
                **env}
    proc = subprocess.run(["bash", str(SCRIPT)], env=environ, capture_output=True, text=True,
                          timeout=budget + 120, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    lines = (out / "steps.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["step", "status", "seconds", "note"]
    rows = [dict(zip(["step", "status", "seconds", "note"], line.split("\t"))) for line in
            lines[1:]]
    assert [r["step"] for r in rows] == [*STEPS, "gpu_cache"], log
    assert all(r["status"] in ("passed", "failed", "timeout", "skipped") for r in rows)
    # a step is stopped GRACE seconds before the budget's end, so even one KILLed GRACE
    # seconds after its TERM ends within the budget; the documented bound allows the grace
    assert sum(float(r["seconds"]) for r in rows[:-1]) <= budget + GRACE, rows
    _assert_fits_the_device_tool(out)
    with tarfile.open(out / "results.tar.gz") as archive:
        archive.extractall(tmp_path, filter="data")
    return proc.returncode, rows, log


def _assert_fits_the_device_tool(out):
    found = list(out.rglob("*"))
    files = [p for p in found if p.is_file() and not p.is_symlink()]
    assert len(files) == len(found) <= MAX_FILES, found  # plain files only
    assert sum(p.stat().st_size for p in files) <= MAX_TOTAL_BYTES
    for p in files:
        rel = p.relative_to(out)
        assert p.stat().st_size <= MAX_FILE_BYTES and len(rel.parts) <= MAX_DEPTH + 1, rel
        assert all(NAME.fullmatch(part) for part in rel.parts), rel


def _no_gpu_env():
    """An environment where the driver shows no device, even on a GPU machine."""
    return {"CUDA_VISIBLE_DEVICES": ""}


def _gpuad_reason(env):
    code = ("from gpuad.backends.probe import cuda_unavailable_reason as r; "
            "print(r(0) or '')")
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_without_a_gpu_every_gpu_step_is_skipped_with_gpuads_reason(tmp_path):
    env = _no_gpu_env()
    reason = _gpuad_reason(env)
    assert reason
    status, rows, log = _run(tmp_path, 120, **env)
    assert status == 0, log
    by = {r["step"]: r for r in rows}
    assert by["env"]["status"] == "passed" and by["info"]["status"] == "passed", log
    for name in GPU_STEPS:
        assert by[name]["status"] == "skipped" and by[name]["seconds"] == "0.000"
        assert by[name]["note"] == f"no usable GPU: {reason}"
    assert by["gpu_cache"]["status"] == "skipped", log  # nothing was compiled
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "results.tar.gz", "steps.tsv", "summary.txt"]
    results = tmp_path / "results"
    assert (results / "env.json").exists()
    assert "cupy" in (results / "info.log").read_text()
    assert (results / "steps.tsv").read_text() == (tmp_path / "out" / "steps.tsv").read_text()


def test_a_step_past_the_budget_is_skipped_with_why(tmp_path):
    status, rows, log = _run(tmp_path, 3, **_no_gpu_env())
    assert status == 0, log
    for r in rows[:2]:  # 3 s leave less than the least a step is started with
        assert r["status"] == "skipped" and r["note"].startswith("budget: "), r
    assert all(r["note"].startswith("no usable GPU") for r in rows[2:-1])


def test_dry_run_on_the_stand_in(tmp_path):
    if not (ROOT / "tests" / "fake_cuda_run.py").exists():
        pytest.fail("tests/fake_cuda_run.py (the stand-in's launcher) is missing")
    budget = 40
    status, rows, log = _run(tmp_path, budget, GPUAD_CHECKS_STANDIN="1")
    # the stand-in compiles nothing
    assert rows[-1]["status"] == "skipped" and "is empty" in rows[-1]["note"], rows[-1]
    for r in rows[:-1]:  # only the budget may stop a step; nothing fails on the stand-in
        assert (r["status"] == "passed"
                or r["status"] == "skipped" and r["note"].startswith("budget: ")
                or r["status"] == "timeout" and "the budget's remainder" in r["note"]), (r, log)
    assert status == (1 if any(r["status"] == "timeout" for r in rows) else 0), log
    # the first steps take seconds: with 40 they always run
    assert [r["status"] for r in rows[:3]] == ["passed"] * 3, log
    results = tmp_path / "results"
    assert "kernels compiled and launched" in (results / "kernels.log").read_text()
    for r in rows[:-1]:  # every step that ran left its log in the archive
        assert (results / f"{r['step']}.log").exists() == (r["status"] != "skipped"), r
    for name in ("kernels", "fused", "ops"):
        if by_step(rows)[name]["status"] == "passed":
            assert json.loads((results / f"{name}.json").read_text())["results" if name != "kernels"
                                                                       else "kernels"]


def by_step(rows):
    return {r["step"]: r for r in rows}


#: a PYTHON for the script that fails the fused step, makes the kernels step ignore TERM and
#: hang (so it must be KILLed), and runs everything else with this interpreter
_FAULTY_PYTHON = """#!/usr/bin/env bash
case " $* " in
    *"gpu_steps kernels "*) trap '' TERM; exec sleep 60 ;;
    *"gpu_steps fused "*) echo "fused: made to fail" >&2; exit 3 ;;
esac
exec {python} "$@"
"""


def test_a_failed_and_a_stopped_step_leave_the_next_steps_running(tmp_path):
    python = tmp_path / "python"
    python.write_text(_FAULTY_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    budget = 60
    status, rows, log = _run(tmp_path, budget, GPUAD_CHECKS_STANDIN="1", PYTHON=str(python),
                             GPUAD_CHECKS_CAP_kernels="2")
    by = by_step(rows)
    assert status == 1, log
    kernels = by["kernels"]
    assert kernels["status"] == "timeout", log
    assert kernels["note"] == "stopped after 2 s (the step's cap)"
    # TERM at 2 s is ignored: KILL GRACE seconds later, and no later
    assert 2 + GRACE <= float(kernels["seconds"]) < 2 + GRACE + 1.5, kernels
    assert by["fused"]["status"] == "failed", log
    assert by["fused"]["note"] == "exit status 3; see results/fused.log"
    assert "fused: made to fail" in (tmp_path / "results" / "fused.log").read_text()
    assert by["demo"]["status"] == "passed", log  # the step after them ran
    for name in ("kernels", "fused", "demo"):
        assert (tmp_path / "results" / f"{name}.log").exists()


def test_the_kernel_cache_comes_back_packed_unless_over_the_file_limit(tmp_path):
    cache = tmp_path / "cache"
    (cache / "ab").mkdir(parents=True)
    (cache / "ab" / "kernel.cubin").write_bytes(b"compiled")
    status, rows, log = _run(tmp_path, 3, **_no_gpu_env())
    assert rows[-1]["status"] == "passed", rows[-1]
    assert rows[-1]["note"].startswith("1 files in gpu-cache.tar.gz ("), rows[-1]
    with tarfile.open(tmp_path / "out" / "gpu-cache.tar.gz") as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")  # as the header says
    assert (tmp_path / "unpacked" / "ab" / "kernel.cubin").read_bytes() == b"compiled"
    # incompressible, over 16 MiB: left out, with the reason
    (cache / "ab" / "big.cubin").write_bytes(np.random.default_rng(0).bytes(MAX_FILE_BYTES + 1))
    status, rows, log = _run(tmp_path, 3, **_no_gpu_env())
    assert rows[-1]["status"] == "skipped", rows[-1]
    assert "over the 16777216 bytes the device tool brings back, left out" in rows[-1]["note"]
    assert not (tmp_path / "out" / "gpu-cache.tar.gz").exists()


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    run = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_fused_check_allows_flushed_subnormals_and_nothing_wrong():
    """The fused step's comparison: a float32 subnormal that CUDA's -ftz=true flushed passes,
    as does a result within the float32 tolerance; a value off by 1e-4, a nan for a number and
    an inf of the other sign fail."""
    from benchmarks.gpu_steps import TOLERANCE, _agree, _flush

    f32 = np.float32
    x = np.array([1e-40, -1e-40, 1.0, 2.0, np.inf, 3.0], dtype=f32)
    want = x.copy()  # the identity, as the CPU computes it
    rtol = TOLERANCE[np.dtype(f32)][0]
    got = np.array([0.0, -0.0, 1.0 * (1 + rtol / 2), 2.0, np.inf, 3.0], dtype=f32)
    assert _agree(got, [want, _flush(want)], f32).all()
    # x * 1e38 of a subnormal x = 1e-39: the CPU's 0.1 against the GPU's 0 * 1e38 = 0 of the
    # flushed input; 0 passes only with that alternative, a result of neither fails
    sub = np.array([1e-39], dtype=f32)
    cpu, flushed = sub * f32(1e38), _flush(sub) * f32(1e38)
    assert not _agree(np.zeros(1, f32), [cpu], f32).any()
    assert _agree(np.zeros(1, f32), [cpu, flushed], f32).all()
    assert not _agree(np.full(1, 0.05, f32), [cpu, flushed], f32).any()
    bad = np.array([0.0, -0.0, 1.0001, np.nan, -np.inf, 3.0], dtype=f32)
    assert _agree(bad, [want, _flush(want)], f32).tolist() == [True, True, False, False, False,
                                                               True]
    assert _flush(np.array([1e-300])).tolist() == [1e-300]  # double precision is not flushed


def test_kernels_step_reports_a_failing_kernel_and_goes_on(tmp_path, monkeypatch):
    """On the stand-in: every kernel the backend builds is compiled and launched (as many as
    ``gpuad.cuda.warmup`` counts, plus the all-finite reduction per dtype); one whose launch
    fails (here: no launcher for adam_update) is recorded with why, the others still run, and
    the step's status is 1."""
    from fake_cupy import installed

    from benchmarks import gpu_steps

    launchers = gpu_steps._row_launchers

    def without_adam(*args):
        found = launchers(*args)
        del found["adam_update"]
        return found

    with installed():
        assert gpu_steps.kernels(tmp_path) == 0
        done = json.loads((tmp_path / "kernels.json").read_text())
        assert all(k["status"] == "ok" for k in done["kernels"])
        finite = [k for k in done["kernels"] if k["kernel"] == "gpuad_all_finite"]
        assert len(finite) == 4 and done["warmup_count"] == len(done["kernels"]) - 4 > 0
        monkeypatch.setattr(gpu_steps, "_row_launchers", without_adam)
        assert gpu_steps.kernels(tmp_path) == 1
    again = json.loads((tmp_path / "kernels.json").read_text())["kernels"]
    failed = [k for k in again if k["status"] != "ok"]
    assert [(k["kernel"], k["dtype"]) for k in failed] == [
        ("adam_update", d) for d in ("float16", "float32", "float64")]
    assert "no launcher for the kernel adam_update" in failed[0]["error"]
    assert len(again) == len(done["kernels"])


def _row(kernel):
    from gpuad.backends.kernel_table import kernel_rows

    (row,) = [r for r in kernel_rows() if r.kernel == kernel]
    return row


def test_fused_check_fails_a_wrong_tiny_value():
    """sigmoid(-20 .. -50) in float32 is 2e-9 .. 2e-22, all normal: 0 or 3 times the value
    fails (a fixed absolute tolerance of 1e-6 passed both), a few ulps off passes."""
    from benchmarks.gpu_steps import NOISE_TIMES, _agree, _flush, _forward_ref, noise

    row = _row("sigmoid")
    x = np.linspace(-50, -20, 301, dtype=np.float32)
    want = _forward_ref(row, x)
    assert (want > np.finfo(np.float32).tiny).all()
    wants = [want, _flush(want)]
    floor = NOISE_TIMES * noise(lambda x: _forward_ref(row, x), [x], np.float32)
    assert (floor < 1e-4 * want).all()  # nothing cancels: a few ulps (times the condition)
    assert _agree(want * np.float32(1 + 3e-7), wants, np.float32, floor).all()
    assert not _agree(np.zeros_like(want), wants, np.float32, floor).any()
    assert not _agree(3 * want, wants, np.float32, floor).any()


def test_fused_check_allows_the_rounding_of_cancelled_terms_only():
    """gelu (tanh form) below -2 in float32: 0.5 x (1 + tanh(u)) cancels, so CUDA's tanhf
    (within 2 ulps, 2^-24 each near -1) may leave it 0.5 |x| 2^-23 from NumPy's; that passes,
    and 1% off does not (one rounding of the terms is up to 1.7e-4 of the result here)."""
    from benchmarks.gpu_steps import NOISE_TIMES, _agree, _forward_ref, noise

    row = _row("gelu_tanh")
    x = np.linspace(-3.5, -2.5, 2001, dtype=np.float32)
    want = _forward_ref(row, x)
    two_ulps = (0.5 * np.abs(x) * 2.0 ** -23).astype(np.float32)
    floor = NOISE_TIMES * noise(lambda x: _forward_ref(row, x), [x], np.float32)
    one_off = want + two_ulps
    assert not _agree(one_off, [want], np.float32).all()  # over the relative tolerance alone
    assert _agree(one_off, [want], np.float32, floor).all()
    assert not _agree(want * np.float32(1.01), [want], np.float32, floor).any()


def test_op_error_is_per_element():
    """Each element against its own magnitude plus its term scale: a small element without
    cancellation off by 10 orders fails however large the others are; one left small by
    cancellation may differ by its terms' rounding; nan places must match."""
    from benchmarks.gpu_steps import OP_RTOL, op_error

    want = np.array([1e-30, 3e140, 3e140])
    scale = np.array([1e-30, 3e140, 3e140])  # nothing cancels
    assert op_error(np.array([1e-20, 3e140, 3e140]), want, scale) > 1e9
    assert op_error(want * (1 + 1e-12), want, scale) <= OP_RTOL
    cancelled = np.array([1e-17, 1.0])  # e.g. 1 - (1 - 1e-17): terms of 1
    assert op_error(np.array([1.5e-17, 1.0]), cancelled, np.array([2.0, 1.0])) <= OP_RTOL
    assert op_error(np.array([1.5e-17, 1.0]), cancelled, np.zeros(2)) > OP_RTOL
    assert op_error(np.array([np.nan, 1.0]), cancelled, np.ones(2)) == np.inf
    assert op_error(np.zeros(3), np.zeros(2), np.zeros(2)) == np.inf


def test_term_scale_of_an_exponential_is_its_condition_times_its_value():
    from benchmarks.gpu_steps import term_scale

    x = np.array([-3.0, 0.5, 2.0])
    scale = term_scale(lambda xs: {"value": np.exp(xs[0])}, [x])["value"]
    np.testing.assert_allclose(scale, np.abs(x) * np.exp(x), rtol=1e-5)
