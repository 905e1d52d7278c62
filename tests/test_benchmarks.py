"""The benchmark harness: every suite's check accepts the right answer and rejects a wrong one,
a quick run works end to end in worker processes, the report states targets, results taken
under load are marked and kept out of README, each machine's results have their own file, a
target is met only where every machine meets it, and README's performance section is exactly
what the committed results generate."""
import copy
import json
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from benchmarks import __main__ as cli
from benchmarks import harness, load, machine, peers, readme, report, suites
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
    """Two suites in worker processes, a missing framework skipped with a note, JSON written
    to the machine's own file in the folder given, the load read around each suite, then the
    report."""
    frameworks = "gpuad,numpy,torch" if _has("torch") else "gpuad,numpy"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick", "--suite",
                          "op_overhead", "--suite", "import_time", "--frameworks", frameworks,
                          "--threads", "1", "--out", f"{tmp_path}/"], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / f"cpu-{machine.slug(machine.cpu_model())}.json"
    assert f"wrote {out}" in run.stdout
    doc = json.loads(out.read_text())
    assert doc["machine"]["threads"] == 1 and doc["frameworks"]["gpuad"]["cpus"] in ([0], None)
    assert [r["case"] for r in doc["cases"]] == ["chain100", "chain100 tensor operands",
                                                 "chain100 anomaly", "import"]
    for record in doc["cases"]:
        g = record["results"]["gpuad"]
        assert g["status"] == "ok" and 0 < g["min"] <= g["median"]
    assert doc["cases"][2]["results"]["gpuad"]["vs_plain"] > 0
    assert doc["cases"][2]["results"]["numpy"]["status"] == "not offered"
    assert doc["cases"][1]["results"]["numpy"]["status"] == "not offered"
    if _has("torch"):
        assert all("ratio" in r for r in doc["cases"][:3])
        assert doc["cases"][1]["results"]["torch"]["max_error"] < 1e-3
    assert [e["suite"] for e in doc["load"]] == ["op_overhead", "import_time"]
    for e in doc["load"]:
        assert e["cores"] >= 1 and e["before"]["cpu"] == e["after"]["cpu"] == doc["machine"][
            "cpu"] and e["after"]["own"] >= 0
    rep = subprocess.run([sys.executable, "-m", "benchmarks", "report", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "report.md").read_text()
    assert "### op_overhead" in text and "| chain100" in text  # (" (unreliable)" under load)
    assert "naive NumPy" in text and "| chain100 tensor operands" in text


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_targets_say_by_how_much_they_are_missed():
    record = {"suite": "mlp_step", "case": "sgd", "unit": "ms/step",
              "results": {"gpuad": {"status": "ok", "median": 1.2}}, "ratio": 1.2}
    assert report.target(record) == ("≤ 1.00× torch", False, "+20%")
    record["ratio"] = 0.9
    assert report.target(record)[1]
    # the op chain with tensor operands: at most 0.8× torch
    tensors = dict(record, suite="op_overhead", case="chain100 tensor operands", ratio=0.9)
    assert report.target(tensors) == ("≤ 0.80× torch", False, "+12%")
    imports = {"suite": "import_time", "results": {"gpuad": {"status": "ok", "median": 0.36}}}
    assert report.target(imports) == ("< 0.3 s", False, "+20%")
    assert report.target({"suite": "scaling_chain", "results": {}, "ratio": 3}) is None


def test_readme_performance_section_is_generated_from_committed_results():
    files = readme.result_files()
    assert files, "benchmarks/results/cpu-<model>.json is missing"
    docs = report.load_docs(files)
    for path, doc in zip(files, docs):  # each machine's results in the file named for it
        assert path.name == f"{machine.stem(doc)}.json" or (
            doc["device"] == "cuda" and path.name.startswith(machine.stem(doc) + "-")), path
        assert not load.unreliable(doc), f"{path.name} was taken under load"
    cpu = [d for d in docs if d["device"] == "cpu"][0]
    assert not cpu["quick"], "the committed CPU results must come from a full run"
    # every CPU suite of the harness that wrote the file (suites.ADDED: the later ones)
    assert {r["suite"] for r in cpu["cases"]} >= {
        s for s in suites.CPU_SUITES if suites.ADDED.get(s, 0) <= cpu["harness"]}
    assert cpu["machine"]["cpu"] and cpu["machine"]["threads"]
    page = readme.PAGE.read_text()
    assert readme.render() == page, "docs/performance.md is stale: python -m benchmarks readme"
    assert readme.headline() in (ROOT / "README.md").read_text(), \
        "README's figure is stale: python -m benchmarks readme"
    for suite in report.LABELS:
        assert (readme.RESULTS / f"{suite}.png").exists()


def _committed_doc():
    return copy.deepcopy(report.load_docs(readme.result_files())[0])


def test_render_reflects_the_results(monkeypatch, tmp_path):
    doc = _committed_doc()
    doc["cases"] = [r for r in doc["cases"] if r["suite"] == "op_overhead"]
    doc["cases"][0]["ratio"] = 1.37
    (tmp_path / f"{machine.stem(doc)}.json").write_text(json.dumps(doc))
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    text = readme.render()
    assert "| 1.37 | missed by +37% |" in text
    assert f"**cpu: {doc['machine']['cpu']}** (`benchmarks/results/cpu-" in text
    assert "| naive NumPy |" in text and "| numpy |" not in text


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
              "unit": "us/op", "results": {"gpuad": {"status": "ok", "vs_plain": 0.3,
                                                     "median": 1.2}},
              "ratio": 0.8, "ratio_plain": 0.3}
    goal = "≤ 0.33× torch eager and ≤ 1.5 us/op"
    assert report.target(record) == (goal, True, "-10%")
    record["ratio_plain"] = 0.5
    assert report.target(record)[1] is False
    assert report.ratio_text(record) == "0.80 (0.50× torch eager)"
    # the chain's own µs per op must hold too: 3.0 misses by +100% however good the ratio
    slow = dict(record, ratio_plain=0.2, results={"gpuad": {"status": "ok", "median": 3.0}})
    assert report.target(slow) == (goal, False, "+100%")
    assert report.target_value(slow) == 0.2  # (across machines: × torch eager, one unit)
    mlp = dict(record, suite="compiled_mlp_step", case="64-128-128-10 b32", ratio_plain=2.0)
    assert report.target(mlp) is None  # (only the case is a requirement)
    assert report.target(dict(mlp, case="784-256-256-10 b128"))[1] is False


def test_the_load_is_taken_off_the_benchmarks_own_share(monkeypatch):
    """The benchmark's own CPU use, averaged over the load average's minute, is taken off the
    load average; what other processes add, above 0.5 per core, makes a suite unreliable, and
    so does the CPU model changing in between."""
    clock, cpu = [0.0], [0.0]
    monkeypatch.setattr(load, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    meter = load.Meter(own_cpu=lambda: cpu[0])
    clock[0], cpu[0] = 60.0, 120.0  # two busy cores for a minute: a share of 2 (1 - 1/e)
    monkeypatch.setattr(load.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    quiet = meter.reading()
    assert quiet["own"] == pytest.approx(2 * (1 - np.exp(-1)), abs=1e-3)
    entry = load.judge("mlp_step", quiet, quiet, 2)
    assert entry["per_core"] == pytest.approx(0.368, abs=1e-3) and "unreliable" not in entry
    monkeypatch.setattr(load.os, "getloadavg", lambda: (3.5, 3.0, 2.0))
    busy = meter.reading()
    entry = load.judge("mlp_step", quiet, busy, 2)
    assert entry["per_core"] > load.LIMIT_PER_CORE
    assert entry["unreliable"].startswith(f"load {entry['per_core']:.2f} per core")
    moved = dict(quiet, cpu="another CPU")
    assert "CPU model changed" in load.judge("mlp_step", quiet, moved, 2)["unreliable"]


def test_a_run_under_load_is_marked_unreliable_and_readme_refuses_it(monkeypatch, tmp_path,
                                                                     capsys):
    monkeypatch.setattr(load.os, "getloadavg", lambda: (40.0, 40.0, 40.0))
    doc, right = harness.run(["op_overhead"], ["gpuad"], "cpu", True, 1, say=lambda s: None)
    assert right
    (entry,) = doc["load"]
    assert entry["suite"] == "op_overhead" and entry["per_core"] > load.LIMIT_PER_CORE
    assert all(r["unreliable"] == entry["unreliable"] for r in doc["cases"])
    text = report.markdown([doc])
    assert "| chain100 (unreliable) |" in text and "**Unreliable**: load" in text
    assert "UNRELIABLE: op_overhead ran under load" in report.header(doc)
    name = f"{machine.stem(doc)}.json"
    (tmp_path / name).write_text(json.dumps(doc))
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    readme_before = (ROOT / "README.md").read_text()
    page_before = readme.PAGE.read_text()
    assert cli.main(["readme"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"refusing {name}: op_overhead: load {entry['per_core']:.2f} per core" in err
    assert ("rerun `python -m benchmarks run --out benchmarks/results/` on that machine while "
            f"it is idle (it rewrites {name})") in err
    assert (ROOT / "README.md").read_text() == readme_before
    assert readme.PAGE.read_text() == page_before
    assert not (tmp_path / "report.md").exists()


def test_each_machine_has_its_own_results_file(tmp_path):
    assert machine.slug("AMD EPYC") == "amd-epyc"
    assert machine.slug("Intel(R) Xeon(R) Processor") == "intel-xeon-processor"
    assert machine.slug("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz") == "intel-xeon-gold-6148-cpu"
    cpu = {"device": "cpu", "machine": {"cpu": "AMD EPYC", "gpu": None}}
    gpu = {"device": "cuda", "machine": {"cpu": "AMD EPYC",
                                         "gpu": "NVIDIA H100 80GB HBM3, 550.54.15"}}
    assert machine.stem(cpu) == "cpu-amd-epyc"
    assert machine.stem(gpu) == "cuda-nvidia-h100-80gb-hbm3"
    assert machine.result_path(f"{tmp_path}/", cpu) == tmp_path / "cpu-amd-epyc.json"
    assert machine.result_path(str(tmp_path), gpu) == tmp_path / "cuda-nvidia-h100-80gb-hbm3.json"
    assert machine.result_path(f"{tmp_path}/{{machine}}-kernels.json", gpu) == (
        tmp_path / "cuda-nvidia-h100-80gb-hbm3-kernels.json")
    assert machine.result_path(str(tmp_path / "r.json"), cpu) == tmp_path / "r.json"
    assert [p.name for p in readme.result_files()] == sorted(
        p.name for p in readme.RESULTS.glob("c*.json"))
    assert "cpu-amd-epyc.json" in [p.name for p in readme.result_files()]
    assert not (readme.RESULTS / "cpu.json").exists()
    script = (ROOT / "benchmarks" / "gpu_checks.sh").read_text()
    assert script.count('--out "$res/{machine}-') == 3  # the GPU checks' results, per GPU too


def test_the_tensor_operand_chain_is_checked_and_uses_tensors():
    """op_overhead's "chain100 tensor operands": the chain with 0.9 and 0.1 as constant
    tensors of the framework made once, checked against the float64 reference."""
    import gpuad as ad

    (case,) = [c for c in suites.cases("op_overhead", False, "cpu")
               if c.name == "chain100 tensor operands"]
    assert case.params["operands"] == "tensor" and case.variant is None
    operands = []
    real = ad.Tensor.__mul__

    def spy(self, other):
        operands.append(type(other))
        return real(self, other)

    ad.Tensor.__mul__ = spy
    try:
        step = peers.build(gpuad_runs, case.suite, case.params, "cpu")
        out = peers.to_numpy(gpuad_runs, step())
    finally:
        ad.Tensor.__mul__ = real
    assert operands and set(operands) == {ad.Tensor}
    assert suites.check(case, out) < 1e-3
    with pytest.raises(AssertionError, match="off"):
        suites.check(case, _perturb(out))
    if _has("torch"):
        from benchmarks.peers import torch_runs

        torch_runs.load("cpu", 1)
        out = peers.build(torch_runs, case.suite, case.params, "cpu")()
        assert suites.check(case, peers.to_numpy(torch_runs, out)) < 1e-3
    from benchmarks.peers import numpy_runs

    with pytest.raises(NotOffered, match="tensor operands"):
        peers.build(numpy_runs, case.suite, case.params, "cpu")


def _machine_doc(cpu_name, chain_ratio):
    doc = _committed_doc()
    doc["machine"]["cpu"] = cpu_name
    doc["cases"] = [r for r in doc["cases"] if r["suite"] in ("op_overhead", "import_time")]
    doc["cases"][0]["ratio"] = chain_ratio
    return doc


def test_a_target_is_met_only_on_every_machine(monkeypatch, tmp_path):
    docs = [_machine_doc("AMD EPYC", 0.8), _machine_doc("Intel(R) Xeon(R) Processor", 1.2)]
    for doc in docs:
        (tmp_path / f"{machine.stem(doc)}.json").write_text(json.dumps(doc))
    monkeypatch.setattr(readme, "RESULTS", tmp_path)
    assert [p.name for p in readme.result_files()] == ["cpu-amd-epyc.json",
                                                       "cpu-intel-xeon-processor.json"]
    text = readme.render()
    assert "**cpu: AMD EPYC** (`benchmarks/results/cpu-amd-epyc.json`)" in text
    assert "**cpu: Intel(R) Xeon(R) Processor**" in text
    amd, intel = text.split("**cpu: Intel")[0], text.split("**cpu: Intel")[1]
    assert "| 0.80 | met here; missed on Intel(R) Xeon(R) Processor (+20%) |" in amd
    assert "| 1.20 | missed by +20% |" in intel.split("Across")[0]
    assert "| import_time | import |" in amd and "met on all 2 machines |" in amd
    assert "Across the 2 cpu machines" in text
    assert "| op_overhead | chain100 | 0.8 | 1.2 | 0.8–1.2 | ≤ 1.00× torch: missed |" in text
    # the report of both files says the same
    assert "≤ 1.00× torch: met here; missed on Intel" in report.markdown(docs)


def test_a_results_file_that_is_not_one_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert cli.main(["report", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not a results file" in err
    assert cli.main(["report", str(tmp_path / "missing.json")]) == 2
    assert "No such file" in capsys.readouterr().err
    # the top-level keys, but no machine in it
    bad.write_text(json.dumps({"harness": 1, "created": "x", "device": "cpu", "quick": False,
                               "machine": {}, "frameworks": {}, "cases": []}))
    assert cli.main(["report", str(bad), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "KeyError" in err


def test_an_out_path_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--quick", "--suite", "import_time", "--out",
                  str(blocker / "sub" / "{machine}.json")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"cannot write into {blocker / 'sub'}")
