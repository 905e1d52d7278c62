"""The benchmark harness: every suite's check accepts the right answer and rejects a wrong one,
a quick run works end to end in worker processes, the report states targets, and README's
performance section is exactly what the committed results generate."""
import copy
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import harness, peers, readme, report, suites
from benchmarks.peers import NotOffered, gpuad_runs

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER_SUITES = [s for s, (_, make) in suites.SUITES.items() if make is not None]
gpuad_runs.load("cpu", 1)


def _perturb(out):
    """The same structure with one value moved by 1%."""
    if isinstance(out, list):
        return [_perturb(out[0])] + out[1:]
    out = np.array(out, dtype=np.float64, copy=True)
    out.flat[out.size // 2] = out.flat[out.size // 2] * 1.01 + 1e-3
    return out


@pytest.mark.parametrize("suite", WORKER_SUITES)
def test_checks_accept_gpuad_and_reject_a_wrong_value(suite):
    for case in suites.cases(suite, True, "cpu"):
        out = peers.to_numpy(gpuad_runs, peers.build(gpuad_runs, case.suite, case.params,
                                                     "cpu", case.variant)())
        assert suites.check(case, out) < 1e-3
        with pytest.raises(AssertionError, match="off"):
            suites.check(case, _perturb(out))


def test_check_rejects_nan():
    (case,) = suites.cases("second_order", True, "cpu")
    with pytest.raises(AssertionError, match="1000 of 1000 values off"):
        suites.check(case, np.full(1000, np.nan))


def test_check_rejects_a_wrong_shape():
    (case,) = suites.cases("second_order", True, "cpu")
    with pytest.raises(AssertionError, match="shape"):
        suites.check(case, np.zeros(999))


def test_numpy_peer_has_no_autodiff_suites():
    from benchmarks.peers import numpy_runs

    with pytest.raises(NotOffered):
        peers.build(numpy_runs, "second_order", {"n": 10}, "cpu")


class _FakeWorker:
    def __init__(self, framework, status="ok", seconds=1e-3, plain_seconds=None):
        self.framework, self.status, self.seconds = framework, status, seconds
        self.plain_seconds = plain_seconds
        self.asked = []

    def ask(self, cmd, **msg):
        if cmd == "build":
            return ({"ok": True, "max_error": 0.0} if self.status == "ok" else
                    {"ok": False, "status": self.status, "reason": "made up"})
        self.asked.append(msg["plain"])
        return {"seconds": self.plain_seconds if msg["plain"] else self.seconds}


def test_case_timing_pairs_rounds_and_reports_wrong_results():
    case = suites.cases("op_overhead", True, "cpu")[0]
    workers = [_FakeWorker("gpuad", seconds=2e-4), _FakeWorker("torch", seconds=4e-4),
               _FakeWorker("jax", status="wrong")]
    record = harness._time_case(case, workers, harness.PROFILES["quick"], True, lambda s: None)
    assert record["ratio"] == pytest.approx(0.5)
    assert record["results"]["gpuad"]["median"] == pytest.approx(2.0)  # µs per op
    assert record["results"]["jax"] == {"status": "wrong", "reason": "made up"}
    doc = {"cases": [record]}
    assert not harness.verdict(doc)
    record["results"]["jax"]["status"] = "not offered"
    assert harness.verdict(doc)
    doc["frameworks"] = {"gpuad": {}, "torch": {}}
    record["results"]["gpuad"]["status"] = "not offered"
    assert not harness.verdict(doc), "a case gpuad did not run must fail the run"
    doc["frameworks"] = {"torch": {}}  # (gpuad not asked for)
    del record["results"]["gpuad"]
    assert harness.verdict(doc)


def test_a_variant_is_timed_against_the_plain_step_in_the_same_rounds():
    """op_overhead's anomaly case: each framework's step in its anomaly mode, its plain step
    timed in the same rounds; gpuad / torch compares the anomaly runs, and the target is
    gpuad's cost against its own plain run."""
    case = [c for c in suites.cases("op_overhead", True, "cpu") if c.variant == "anomaly"][0]
    workers = [_FakeWorker("gpuad", seconds=3e-4, plain_seconds=2e-4),
               _FakeWorker("torch", seconds=1.2e-3, plain_seconds=3e-4),
               _FakeWorker("jax", status="not offered")]
    record = harness._time_case(case, workers, harness.PROFILES["quick"], True, lambda s: None)
    g, t = record["results"]["gpuad"], record["results"]["torch"]
    assert record["variant"] == "anomaly" and record["ratio"] == pytest.approx(0.25)
    assert g["vs_plain"] == pytest.approx(1.5) and t["vs_plain"] == pytest.approx(4.0)
    assert g["median"] == pytest.approx(3.0) and g["plain_median"] == pytest.approx(2.0)
    for w in workers[:2]:
        assert w.asked.count(True) == w.asked.count(False) > 0  # both, round by round
    assert report.target(record) == ("≤ 2.00× gpuad plain", True, "-25%")
    assert "3 (1.50× plain)" in report.markdown([{"device": "cpu", "machine": {
        "cpu": "x", "threads": 1, "cores": 1, "python": "3"}, "frameworks": {
        "gpuad": {"status": "ok", "version": "0"}}, "quick": True, "created": "now",
        "cases": [record]}])
    assert "anomaly" in harness._line(record) and "gpuad 1.50" in harness._line(record)


def test_anomaly_variant_runs_in_the_anomaly_mode_of_each_framework():
    import gpuad as ad

    case = [c for c in suites.cases("op_overhead", True, "cpu") if c.variant][0]
    seen = []
    step = peers.build(gpuad_runs, case.suite, case.params, "cpu", case.variant)
    real = ad.Tensor.backward

    def spy(self, *a, **k):
        seen.append(ad.autograd.is_anomaly_enabled())
        return real(self, *a, **k)

    ad.Tensor.backward = spy
    try:
        step()
        peers.build(gpuad_runs, case.suite, case.params, "cpu")()
    finally:
        ad.Tensor.backward = real
    assert seen == [True, False] and not ad.autograd.is_anomaly_enabled()
    if _has("torch"):
        from benchmarks.peers import torch_runs

        torch_runs.load("cpu", 1)
        out = peers.build(torch_runs, case.suite, case.params, "cpu", case.variant)()
        assert suites.check(case, peers.to_numpy(torch_runs, out)) < 1e-3
    from benchmarks.peers import numpy_runs

    with pytest.raises(NotOffered, match="chain_anomaly"):
        peers.build(numpy_runs, case.suite, case.params, "cpu", case.variant)


def test_threads_must_be_positive():
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--threads", "0"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert run.returncode == 2 and "needs at least 1 thread" in run.stderr


def test_quick_run_end_to_end(tmp_path):
    """Two suites in worker processes, a missing framework skipped with a note, JSON written,
    then the report."""
    out = tmp_path / "r.json"
    frameworks = "gpuad,numpy,torch" if _has("torch") else "gpuad,numpy"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick", "--suite",
                          "op_overhead", "--suite", "import_time", "--frameworks", frameworks,
                          "--threads", "1", "--out", str(out)], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(out.read_text())
    assert doc["machine"]["threads"] == 1 and doc["frameworks"]["gpuad"]["cpus"] in ([0], None)
    assert [r["case"] for r in doc["cases"]] == ["chain100", "chain100 anomaly", "import"]
    for record in doc["cases"]:
        g = record["results"]["gpuad"]
        assert g["status"] == "ok" and 0 < g["min"] <= g["median"]
    assert doc["cases"][1]["results"]["gpuad"]["vs_plain"] > 0
    assert doc["cases"][1]["results"]["numpy"]["status"] == "not offered"
    if _has("torch"):
        assert "ratio" in doc["cases"][0] and "ratio" in doc["cases"][1]
    rep = subprocess.run([sys.executable, "-m", "benchmarks", "report", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "report.md").read_text()
    assert "### op_overhead" in text and "| chain100 | us/op |" in text


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_targets_say_by_how_much_they_are_missed():
    record = {"suite": "mlp_step", "results": {"gpuad": {"status": "ok", "median": 1.2}},
              "ratio": 1.2}
    assert report.target(record) == ("≤ 1.00× torch", False, "+20%")
    record["ratio"] = 0.9
    assert report.target(record)[1]
    imports = {"suite": "import_time", "results": {"gpuad": {"status": "ok", "median": 0.36}}}
    assert report.target(imports) == ("< 0.3 s", False, "+20%")
    assert report.target({"suite": "scaling_chain", "results": {}, "ratio": 3}) is None


def test_readme_performance_section_is_generated_from_committed_results():
    files = readme.result_files()
    assert files, "benchmarks/results/cpu.json is missing"
    docs = report.load(files)
    cpu = [d for d in docs if d["device"] == "cpu"][0]
    assert not cpu["quick"], "the committed CPU results must come from a full run"
    assert {r["suite"] for r in cpu["cases"]} >= set(suites.CPU_SUITES)
    assert cpu["machine"]["cpu"] and cpu["machine"]["threads"]
    text = (ROOT / "README.md").read_text()
    assert readme.render() in text, "README's performance section is stale: python -m " \
                                    "benchmarks readme"
    for suite in report.LABELS:
        assert (readme.RESULTS / f"{suite}.png").exists()


def test_render_reflects_the_results(monkeypatch, tmp_path):
    doc = report.load(readme.result_files())[0]
    doc = copy.deepcopy(doc)
    doc["cases"] = [r for r in doc["cases"] if r["suite"] == "op_overhead"]
    doc["cases"][0]["ratio"] = 1.37
    (tmp_path / "cpu.json").write_text(json.dumps(doc))
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    text = readme.render()
    assert "| 1.37 | missed by +37% |" in text


def test_a_device_gpuad_cannot_use_is_a_clear_error():
    import gpuad as ad

    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick", "--device",
                          "cuda", "--suite", "op_overhead", "--frameworks", "gpuad,numpy"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2
    assert "gpuad cannot run on cuda: no usable GPU" in run.stderr


@pytest.mark.parametrize("suite", [s for s in WORKER_SUITES if s != "scaling_chain"])
def test_the_gpuad_peer_on_cuda_is_right_on_the_stand_in(suite, monkeypatch):
    """The CUDA path of the gpuad peer (tensors on cuda, the wide MLP cases, the device
    synchronisation) on the CuPy stand-in, checked like the CPU path."""
    from fake_cupy import installed

    with installed(monkeypatch):
        gpuad_runs.load("cuda", 1)
        try:
            for case in suites.cases(suite, True, "cuda"):
                out = peers.build(gpuad_runs, case.suite, case.params, "cuda")()
                peers.sync(gpuad_runs, out)
                assert suites.check(case, peers.to_numpy(gpuad_runs, out)) < 1e-3
        finally:
            gpuad_runs.load("cpu", 1)


def test_a_compiled_step_is_held_to_its_target_against_pytorch_eager():
    record = {"suite": "compiled_chain", "case": "chain100", "variant": "compiled",
              "results": {"gpuad": {"status": "ok", "vs_plain": 0.3}}, "ratio": 0.8,
              "ratio_plain": 0.3}
    assert report.target(record) == ("≤ 0.33× torch eager", True, "-10%")
    record["ratio_plain"] = 0.5
    assert report.target(record)[1] is False
    assert report.ratio_text(record) == "0.80 (0.50× torch eager)"
    mlp = dict(record, suite="compiled_mlp_step", case="64-128-128-10 b32", ratio_plain=2.0)
    assert report.target(mlp) is None  # (only the case is a requirement)
    assert report.target(dict(mlp, case="784-256-256-10 b128"))[1] is False
