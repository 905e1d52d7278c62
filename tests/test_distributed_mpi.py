"""ad.distributed across processes: ``mpiexec -n 2`` and ``-n 3`` launches of
tests/distributed_worker.py (MPICH's wheel runs as root), compared across ranks and with a
single-process run computed here.

- The collectives give, on every rank, what formulas say (every op and dtype, views,
  broadcast from the last rank, both all_gather forms, metrics), and the sampler's shares are
  disjoint and cover the dataset once per epoch.
- DistributedDataParallel training leaves every rank with the same parameters, bit for bit,
  equal to one process training on the whole batch (float64: to 1e-12; float32: 1e-5), with
  one all-reduce per step; on the CuPy stand-in's NCCL too (one ncclAllReduce per step).
- Failures end, within their timeout, with a clear error: a rank that exits, raises, sleeps,
  or passes another shape or dtype.
- torchrun's variables are read (an MPMD launch gives each rank its RANK).
"""
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import gpuad as ad

pytest.importorskip("mpi4py", reason="the MPI tests need mpi4py and MPICH: "
                    "pip install '.[mpi]'")
MPIEXEC = shutil.which("mpiexec") or shutil.which(os.path.join(os.path.dirname(sys.executable),
                                                                "mpiexec"))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec on PATH: pip install "
                                "'.[mpi]'")
HERE = pathlib.Path(__file__).resolve().parent
WORKER = str(HERE / "distributed_worker.py")
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402


def _env():
    return {k: v for k, v in os.environ.items()
            if k not in ("GPUAD_DEVICE", "RANK", "WORLD_SIZE", "LOCAL_RANK")}


def launch(n, *args, timeout=120, check=True):
    """``mpiexec -n n python distributed_worker.py args``: (the run, seconds it took)."""
    start = time.monotonic()
    run = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, WORKER, *args],
                         capture_output=True, text=True, timeout=timeout, env=_env())
    took = time.monotonic() - start
    if check:
        assert run.returncode == 0, run.stdout + run.stderr
    return run, took


def ranks(out, n):
    return [dict(np.load(out / f"rank{r}.npz")) for r in range(n)]


@pytest.mark.parametrize("n", [2, 3])
def test_collectives_and_sampler(tmp_path, n):
    run, _ = launch(n, "collectives", str(tmp_path))
    assert run.stdout.count(" ok") == n
    shares = ranks(tmp_path, n)
    for key in shares[0]:
        size, drop = (int(v) for v in key.split("_")[1:3])
        parts = [s[key] for s in shares]
        assert len({len(p) for p in parts}) == 1  # (equal shares: equal step counts)
        everything = np.concatenate(parts)
        if drop:
            assert len(everything) == size - size % n and len(set(everything)) == len(everything)
        else:  # every index, and only the padding twice
            assert set(everything) == set(range(size))
            assert len(everything) == size + (-size) % n
        if size % n == 0:
            assert sorted(everything) == list(range(size))  # exactly once
    assert not np.array_equal(shares[0]["sampler_10_0_0"], shares[0]["sampler_10_0_1"])


def reference(steps, dtype, opt_name):
    """One process trains on every step's whole batch from rank 0's initial parameters."""
    x, y = worker.data(steps, 12, dtype)
    net = worker.model(ad, seed=0, dtype=dtype, device="cpu")
    opt = worker.optimizer(ad, net.parameters(), opt_name)
    losses = []
    for i in range(steps):
        opt.zero_grad()
        loss = ad.nn.functional.cross_entropy(net(ad.tensor(x[i * 12:(i + 1) * 12])),
                                              ad.tensor(y[i * 12:(i + 1) * 12]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {k: v.numpy() for k, v in net.state_dict().items()}, np.array(losses)


@pytest.mark.parametrize("n, opt, dtype, extra", [
    (2, "sgd", "float64", ()), (3, "sgd", "float64", ()), (2, "adam", "float64", ()),
    (3, "adam", "float32", ()), (2, "sgd", "float64", ("--zero-grad-none",)),
    (2, "adam", "float64", ("--compile",)),
])
def test_training_matches_one_process(tmp_path, n, opt, dtype, extra):
    steps = 5
    launch(n, "train", str(tmp_path), "--opt", opt, "--dtype", dtype, "--steps", str(steps),
           *extra)
    results = ranks(tmp_path, n)
    want, want_losses = reference(steps, dtype, opt)
    tol = 1e-12 if dtype == "float64" else 1e-5
    for name, value in want.items():
        for r in range(1, n):
            assert np.array_equal(results[r][name], results[0][name]), (name, r)
        np.testing.assert_allclose(results[0][name], value, rtol=tol, atol=tol, err_msg=name)
    # each rank's loss is its share's mean; their mean is the whole batch's
    np.testing.assert_allclose(np.mean([res["losses"] for res in results], axis=0),
                               want_losses, rtol=tol, atol=tol)
    # one MPI all-reduce per step, of every parameter at once (4 tensors, 83 values, and a
    # flag per tensor)
    assert results[0]["reduced"].tolist() == [8 * 6 + 8 + 3 * 8 + 3 + 4] * steps


@pytest.mark.parametrize("opt, extra", [("sgd", ()), ("adam", ()), ("adam", ("--compile",)),
                                        ("sgd", ("--compile", "--zero-grad-none"))])
def test_training_on_the_stand_in_nccl(tmp_path, opt, extra):
    """On CUDA with NCCL; compiled, the step is one CUDA graph whose launches each run the
    captured ncclAllReduce."""
    steps = 6
    run, _ = launch(2, "train", str(tmp_path), "--opt", opt, "--device", "cuda",
                    "--stand-in", "2", "--steps", str(steps), *extra)
    assert "CompileWarning" not in run.stderr, run.stderr  # (no eager fallback)
    results = ranks(tmp_path, 2)
    want, _ = reference(steps, "float64", opt)
    for name, value in want.items():
        assert np.array_equal(results[1][name], results[0][name]), name
        np.testing.assert_allclose(results[0][name], value, rtol=1e-12, atol=1e-12)
    calls = [c for c in results[0]["nccl_calls"].tolist() if c.startswith("allReduce")]
    assert calls == ["allReduce 87 float64"] * steps  # one per step: the flat buffer (+flags)
    assert results[0]["reduced"].tolist() == []  # (nothing through MPI)


def test_collectives_on_the_stand_in_nccl(tmp_path):
    run, _ = launch(2, "collectives", str(tmp_path), "--stand-in", "2")
    assert run.stdout.count("mpi+nccl (MPICH (PMI)) ok") == 2


def test_torchrun_variables(tmp_path):
    """An MPMD launch gives each rank torchrun's variables: they are read first."""
    per_rank = []
    for r in range(2):
        per_rank += [":"] if r else []
        per_rank += ["-n", "1", "-env", "RANK", str(r), "-env", "WORLD_SIZE", "2",
                     "-env", "LOCAL_RANK", str(r), "-env", "MASTER_ADDR", "127.0.0.1",
                     "-env", "MASTER_PORT", "29731", sys.executable, WORKER, "collectives",
                     str(tmp_path)]
    run = subprocess.run([MPIEXEC, *per_rank], capture_output=True, text=True, timeout=120,
                         env=_env())
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("mpi (torchrun) ok") == 2


@pytest.mark.parametrize("how, message, timeout", [
    ("exit", None, 30),
    ("raise", "rank 1 of 2 failed with ValueError: rank 1 failed on purpose; aborting", 30),
    ("sleep", "did not complete within timeout=4 s", 4),
    ("shape", "the ranks disagree (rank 0: float32 (3,) op='sum'; rank 1: float32 (4,)", 30),
    ("dtype", "rank 0: float32 (3,) op='sum'; rank 1: float64 (3,)", 30),
    ("barrier", "rank 0: all_reduce float32 (3,) op='sum'; rank 1: barrier()", 30),
    # (MPI_Init holds the GIL while it waits: faulthandler's watchdog, which needs none,
    # prints the stacks, the wait in MPI's start-up among them, and exits)
    ("raise_before_init", "in import_mpi", 4),
])
def test_failures_end_within_the_timeout(tmp_path, how, message, timeout):
    """Each failure ends the job: at once where a rank fails (no timeout waited for: the
    timeout is 30 s there), within the timeout where a rank just never takes part."""
    run, took = launch(2, "fail", str(tmp_path), "--how", how, "--timeout", str(timeout),
                       check=False)
    assert run.returncode != 0
    text = run.stdout + run.stderr
    if message is not None:
        assert message in text, text
    if timeout == 4:
        assert took < 4 + 15, took  # (the timeout, and the launch's start-up and clean-up)
    else:
        assert took < 10, took
    if how == "sleep":
        assert "DistributedTimeoutError" in text and "rank 0" in text


def _demo(cmd, **env):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**_env(), **env}, cwd=HERE.parent)


def test_demo_distributed_under_mpiexec():
    run = _demo([MPIEXEC, "-n", "2", sys.executable, "-m", "gpuad", "demo", "--distributed",
                 "--device", "cpu", "--epochs", "2"])
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert out.count("world size 2 (mpi)") == 1  # (rank 0 alone reports)
    assert out.count("test accuracy") == 1 and "ms per epoch on cpu" in out
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc > 0.6, out


def test_demo_distributed_under_torchrun_variables():
    per_rank = []
    for r in range(2):
        per_rank += [":"] if r else []
        per_rank += ["-n", "1", "-env", "RANK", str(r), "-env", "WORLD_SIZE", "2",
                     "-env", "LOCAL_RANK", str(r), sys.executable, "-m", "gpuad", "demo",
                     "--distributed", "--device", "cpu", "--epochs", "1"]
    run = _demo([MPIEXEC, *per_rank])
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("world size 2") == 1


def test_demo_distributed_without_mpi_is_one_line():
    """torchrun-style variables, processes started one by one, CPU tensors: refused before
    training, in one line that names the fix."""
    run = _demo([sys.executable, "-m", "gpuad", "demo", "--distributed", "--device", "cpu"],
                RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29733")
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    (line,) = run.stderr.splitlines()
    assert line.startswith("gpuad: --distributed: ") and "mpiexec" in line, line


def test_torchrun_inside_an_mpi_launch_is_no_mpi_world(tmp_path):
    """``mpiexec -n 1 torchrun ...`` (one launcher per machine): the workers inherit MPI's
    variables of the one torchrun process; they form no MPI world, and init says so (it
    used to start MPI in each and crash in PMI)."""
    torchrun = shutil.which("torchrun") or shutil.which(
        os.path.join(os.path.dirname(sys.executable), "torchrun"))
    if torchrun is None:
        pytest.skip("torchrun (PyTorch) is not installed")
    script = tmp_path / "rank.py"
    script.write_text("import gpuad as ad\ntry:\n    ad.distributed.init_process_group()\n"
                      "except ad.distributed.DistributedError as e:\n    print('refused:', e)\n")
    run = subprocess.run([MPIEXEC, "-n", "1", torchrun, "--standalone", "--nproc-per-node=2",
                          str(script)], capture_output=True, text=True, timeout=120,
                         env=_env())
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("refused:") == 2 and "started by mpiexec" in run.stdout
