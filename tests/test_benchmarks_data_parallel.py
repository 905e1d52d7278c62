"""The data_parallel suite of the benchmark harness: a quick run under mpiexec end to end (the
MLP step checked on every rank, every all-reduce path checked against its formula, the report),
the skip without MPI, the target (at least the bare speed), the checks rejecting wrong results,
and the NCCL case on the CuPy stand-in."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from test_benchmarks import _has, _perturb

from benchmarks import __main__ as cli
from benchmarks import harness, machine, report, suites

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- data_parallel: DDP under mpiexec, its all-reduce against bare mpi4py and NCCL -----------
def _mpi_usable():
    from benchmarks import data_parallel

    return data_parallel.skip_reason(["gpuad"]) is None


@pytest.mark.skipif(not _mpi_usable(), reason="needs mpi4py and mpiexec: pip install '.[mpi]'")
def test_data_parallel_quick_run_end_to_end(tmp_path):
    """The quick run of the suite: the MLP step at 1 and 2 ranks, checked against the
    reference (every rank's parameters equal), with its communication share; the all-reduce
    of the flat gradient buffer and of the larger one at 2 ranks, every path checked against
    its formula, against bare mpi4py; the NCCL case skipped with why; then the report."""
    from benchmarks import data_parallel

    frameworks = "gpuad,torch" if _has("torch") else "gpuad"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick", "--suite",
                          "data_parallel", "--frameworks", frameworks, "--threads", "2",
                          "--out", f"{tmp_path}/"], capture_output=True, text=True, cwd=ROOT,
                         timeout=400)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / f"cpu-{machine.slug(machine.cpu_model())}.json"
    doc = json.loads(out.read_text())
    assert doc["harness"] == harness.VERSION >= suites.ADDED["data_parallel"]
    records = {r["case"]: r for r in doc["cases"]}
    assert list(records) == [
        "mlp step, 1 rank", "mlp step, 2 ranks",
        "all_reduce the MLP's flat gradient buffer (1.03 MiB), 2 ranks",
        "all_reduce a larger buffer (0.0625 MiB), 2 ranks", "nccl all_reduce, 1 rank"]
    for n in (1, 2):
        step = records[f"mlp step, {n} rank" + "s" * (n > 1)]
        g, launch = step["results"]["gpuad"], step["params"]["launch"]
        assert g["status"] == "ok" and g["max_error"] < 1e-5 and 0 < g["min"] <= g["median"]
        assert 0 < g["mpi_share"] <= g["comm_share"] < 1 and g["reduces_per_step"] == 1
        assert launch["ranks"] == n and launch["threads_per_rank"] == max(1, 2 // n)
        assert launch["cores"] == machine.usable_cores() and len(launch["cpus"]) == n
        assert launch["oversubscribed"] == (n * launch["threads_per_rank"] > launch["cores"])
        assert launch["backend"] == ("self" if n == 1 else "mpi")
        assert g["vs_1_rank"] == pytest.approx(g["median"] / records["mlp step, 1 rank"][
            "results"]["gpuad"]["median"])
        if _has("torch"):
            assert step["results"]["torch"]["max_error"] < 1e-5
            assert step["ratio"] == pytest.approx(g["median"] / step["results"]["torch"][
                "median"])
    flat, big = (records[c] for c in list(records)[2:4])
    assert flat["params"]["elements"] == sum(i * o + o for i, o in zip(suites.MLP[:-1],
                                                                       suites.MLP[1:]))
    assert big["params"]["elements"] == np.prod(data_parallel.BIG["quick"])
    for r in (flat, big):
        res = r["results"]
        for path in ("gpuad", "gpuad_staged", "gpuad_all_reduce", "mpi4py",
                     "mpi4py_iallreduce") + (("torch",) if _has("torch") else ()):
            assert res[path]["status"] == "ok" and res[path]["gb_per_s"] > 0, path
        assert r["vs_mpi4py"] > 0 and res["gpuad_staged"]["vs_mpi4py"] > 0
    assert report.target(flat)[0] == "≥ 0.90× bare mpi4py" and report.target(big) is None
    assert "--device cuda" in records["nccl all_reduce, 1 rank"]["skipped"]
    assert [e["suite"] for e in doc["load"]] == ["data_parallel"]
    assert cli.main(["report", str(out), "--out-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "### data_parallel" in text and "- nccl all_reduce, 1 rank: skipped (" in text
    assert "| 2 | 1 | " in text and "bare mpi4py Allreduce" in text
    assert f"| {flat['case']} | " in text and "≥ 0.90× bare mpi4py: " in text


def test_data_parallel_without_mpi_is_skipped_with_the_reason(monkeypatch):
    """Without mpi4py (or mpiexec) the suite is one skipped record that says why: the run
    still passes, and the report says so."""
    from benchmarks import data_parallel

    real = data_parallel.importlib.util.find_spec
    monkeypatch.setattr(data_parallel.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mpi4py" else real(name, *a))
    doc, right = harness.run(["data_parallel"], ["gpuad"], "cpu", True, 1, say=lambda s: None)
    assert right
    (record,) = doc["cases"]
    assert record["skipped"].startswith("mpi4py is not installed")
    assert "- every case: skipped (mpi4py is not installed" in report.markdown([doc])
    assert harness._line(record).startswith("every case: skipped (mpi4py")
    monkeypatch.setattr(data_parallel.importlib.util, "find_spec", real)
    monkeypatch.setattr(data_parallel, "mpiexec", lambda: None)
    assert data_parallel.skip_reason(["gpuad"]).startswith("no mpiexec")
    assert data_parallel.skip_reason(["torch"]) == "gpuad is not among --frameworks"
    # a failed case still fails the run: only a skipped one is left out of the verdict
    doc["cases"].append({"suite": "data_parallel", "case": "x", "results": {
        "gpuad": {"status": "error", "reason": "made up"}}})
    assert not harness.verdict(doc)


def test_data_parallel_target_is_at_least_the_bare_speed():
    """The flat buffer's all-reduce through gpuad must reach 0.9× bare mpi4py's speed (bare
    time / gpuad time); the larger buffer, the steps and NCCL's cases are reported only."""
    record = {"suite": "data_parallel", "case": "all_reduce flat", "unit": "ms",
              "params": {"buffer": "flat"}, "results": {}, "vs_mpi4py": 0.95}
    assert report.target(record) == ("≥ 0.90× bare mpi4py", True, "+6%")
    assert report.target(dict(record, vs_mpi4py=0.6)) == ("≥ 0.90× bare mpi4py", False,
                                                          "-33%")
    assert report.target_value(dict(record, vs_mpi4py=0.6)) == 0.6
    assert report.target(dict(record, params={"buffer": "big"})) is None
    step = {"suite": "data_parallel", "case": "mlp step, 2 ranks", "unit": "ms/step",
            "params": {}, "results": {}, "ratio": 1.5}
    assert report.target(step) is None  # (gpuad / torch: reported, no target)
    nccl = {"suite": "data_parallel", "case": "nccl", "unit": "ms",
            "params": {"buffer": "flat"}, "results": {}, "vs_nccl": 0.5}
    assert report.target(nccl) is None


def test_data_parallel_checks_reject_wrong_results():
    """A rank's check: an all-reduce that leaves other values, parameters that differ across
    ranks or from the reference after the first step, are errors, named."""
    from benchmarks import data_parallel_rank as rank
    from benchmarks import reference as ref

    a = np.zeros(10, np.float32)
    mine = rank._pattern(10, 1)
    good = rank.Method("the sum", [a], lambda: None, mine, mine)
    good.check()
    assert not a.any()  # (timed on zeros)
    with pytest.raises(AssertionError, match="the sum: 10 of 10 values off"):
        rank.Method("the sum", [a], lambda: None, mine, mine * 2).check()
    split = rank._bucket_arrays(np, [(2, 3), (4,)], flat=True)
    assert split[0].base is split[1].base and split[0].base.size == 10
    weights, x, labels = ref.mlp_problem([6, 4, 3], 8)
    _, after = ref.mlp_first_step(weights, x, labels, "sgd")
    loss = ref.mlp_loss_and_grads(weights, x, labels)[0]
    params = [p.astype(np.float32) for p in after]
    assert rank._check_first_step(weights, x, labels, [params, params], [loss, loss]) < 1e-6
    other = [p.copy() for p in params]
    other[1][0] += 1e-6
    with pytest.raises(AssertionError, match="rank 1's parameter 1 differs from rank 0's"):
        rank._check_first_step(weights, x, labels, [params, other], [loss, loss])
    with pytest.raises(AssertionError, match="parameter 0 after one step"):
        rank._check_first_step(weights, x, labels, [_perturb(params)[:1] + params[1:]] * 2,
                               [loss, loss])


def test_data_parallel_nccl_case_on_the_stand_in(tmp_path):
    """--device cuda: the NCCL all-reduce of the same buffers (one rank), through gpuad and
    bare, each checked first, on the CuPy stand-in's NCCL; where no GPU is usable, skipped
    with gpuad's reason."""
    from benchmarks import data_parallel

    def nccl_run(*launcher):
        spec = json.dumps(data_parallel.spec("nccl", "gpuad", True, 1))
        out = tmp_path / "records.json"
        run = subprocess.run([sys.executable, *launcher, "-m", "benchmarks.data_parallel_rank",
                              spec, str(out)], capture_output=True, text=True, cwd=ROOT,
                             timeout=300, env=data_parallel._env(1))
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads(out.read_text())

    flat, big = nccl_run(str(ROOT / "tests" / "fake_cuda_run.py"))
    assert flat["case"] == "nccl all_reduce the MLP's flat gradient buffer (1.03 MiB), 1 rank"
    for r in (flat, big):
        assert r["params"]["launch"]["backend"].startswith("nccl")
        for path in ("gpuad", "gpuad_staged", "gpuad_all_reduce", "nccl"):
            assert r["results"][path]["status"] == "ok", path
        assert r["vs_nccl"] > 0 and report.target(r) is None
    import gpuad as ad

    if not ad.cuda.is_available():
        records = nccl_run()
        assert [r["case"] for r in records] == [
            "nccl all_reduce the MLP's flat gradient buffer, 1 rank",
            "nccl all_reduce a larger buffer, 1 rank"]
        assert all(r["skipped"].startswith("no usable GPU: ") and not r["results"]
                   for r in records)
