"""ad.distributed within one process: reading the launchers' variables, a world of one (the
collectives leave tensors as they are, DistributedDataParallel equals the bare model, also
compiled), the refusals, the sampler's arithmetic, the end-of-backward callbacks, the
torchrun-style rendezvous between two processes, and the NCCL path of a world of one on the
CuPy stand-in. Launches of several processes: tests/test_distributed_mpi.py."""
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuad as ad
from gpuad.autograd.callbacks import queue_callback
from gpuad.distributed import launch
from gpuad.distributed.rendezvous import Rendezvous

dist = ad.distributed


@pytest.fixture
def world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK",
                 "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    dist.init_process_group(timeout=30)
    yield
    dist.destroy_process_group()


# ---- the launchers' variables -----------------------------------------------------------
@pytest.mark.parametrize("env, want", [
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
      "MASTER_PORT": "5"}, (3, 4, 1, "torchrun")),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3",
      "OMPI_COMM_WORLD_LOCAL_RANK": "0"}, (2, 3, 0, "Open MPI")),
    ({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}, (1, 2, 1, "MPICH (PMI)")),
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}, (5, 8, 1, "Slurm")),
    ({"RANK": "0", "WORLD_SIZE": "2", "PMI_RANK": "1", "PMI_SIZE": "2"},
     (0, 2, 0, "torchrun")),  # (torchrun's first)
    ({"PMI_RANK": "1", "PMI_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
     (1, 2, 0, "MPICH (PMI)")),
    ({}, (0, 1, 0, None)),
])
def test_launchers(env, want):
    got = launch.read(env)
    assert (got.rank, got.world_size, got.local_rank, got.launcher) == want
    if want[3] == "torchrun" and "MASTER_PORT" in env:
        assert (got.master_addr, got.master_port) == ("h", 5)


@pytest.mark.parametrize("env, message", [
    ({"RANK": "0"}, "WORLD_SIZE is not set"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 of world size 2"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "RANK='x' is not an integer"),
    ({"PMI_RANK": "0", "PMI_SIZE": "0"}, "rank 0 of world size 0"),
    ({"RANK": "0", "WORLD_SIZE": "1", "MASTER_PORT": "p"}, "MASTER_PORT='p'"),
])
def test_bad_launch_variables(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch.read(env)


# ---- a world of one ---------------------------------------------------------------------
def test_world_of_one(world_of_one):
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.get_backend() == "self" and dist.is_initialized() and dist.is_main_process()
    t = ad.tensor([[1.0, -2.0], [3.0, 4.0]])
    for op in ("sum", "mean", "max", "min"):
        assert dist.all_reduce(t, op=op).tolist() == [[1.0, -2.0], [3.0, 4.0]]
    assert dist.broadcast(t, src=0) is t
    assert dist.all_gather(t).tolist() == [[[1.0, -2.0], [3.0, 4.0]]]
    slot = [ad.zeros(2, 2)]
    dist.all_gather(slot, t)
    assert slot[0].tolist() == t.tolist()
    dist.barrier()
    assert dist.reduce_metrics({"a": 2, "b": 0.5}, op="max") == {"a": 2.0, "b": 0.5}


def test_version_counter_bumped(world_of_one):
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    z = (y * y).sum()
    dist.all_reduce(y)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward()


@pytest.mark.parametrize("call, message, error", [
    (lambda: dist.all_reduce(ad.ones(2), op="prod"), "op='prod'; choose one of", ValueError),
    (lambda: dist.all_reduce(ad.ones(2, dtype=ad.int64), op="mean"), "needs a floating",
     TypeError),
    (lambda: dist.all_reduce(ad.tensor([True]), op="sum"), "on a bool tensor", TypeError),
    (lambda: dist.all_reduce(np.ones(2)), "expected a gpuad Tensor, got ndarray", TypeError),
    (lambda: dist.broadcast(ad.ones(2), src=1), r"src=1; give a rank in \[0, 1\)",
     ValueError),
    (lambda: dist.all_gather([ad.zeros(2), ad.zeros(2)], ad.ones(2)), "a list of 1 tensors",
     ValueError),
    (lambda: dist.all_gather([ad.zeros(3)], ad.ones(2)), "each must be like the tensor",
     ValueError),
    (lambda: dist.init_process_group(), "already initialised", dist.DistributedError),
])
def test_refusals(world_of_one, call, message, error):
    with pytest.raises(error, match=message):
        call()


def test_refusals_without_a_group():
    assert not dist.is_initialized() and dist.is_main_process()
    for call in (dist.get_rank, dist.barrier, lambda: dist.all_reduce(ad.ones(1))):
        with pytest.raises(dist.DistributedError, match="init_process_group"):
            call()
    with pytest.raises(ValueError, match="backend='gloo'"):
        dist.init_process_group(backend="gloo")
    for timeout in (0, -1, "10", True):
        with pytest.raises(ValueError, match="timeout="):
            dist.init_process_group(timeout=timeout)
    assert not dist.is_initialized()
    dist.destroy_process_group()  # (nothing to leave: no error)


def test_torchrun_launch_without_mpi_or_nccl_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(dist.DistributedError, match="started by mpiexec, mpirun or srun"):
        dist.init_process_group()
    assert not dist.is_initialized()


def test_save_on_rank_zero(world_of_one, tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "m.safetensors"
    dist.save({"w": ad.arange(3.0)}, path)
    assert ad.load(path)["w"].tolist() == [0.0, 1.0, 2.0]
    calls = []
    assert dist.rank0_only(lambda x: calls.append(x) or x)(5) == 5 and calls == [5]


# ---- DistributedDataParallel in a world of one ------------------------------------------
def _pair(seed=0):
    ad.manual_seed(seed)
    plain = ad.nn.Sequential(ad.nn.Linear(4, 5), ad.nn.Tanh(), ad.nn.Linear(5, 2))
    ad.manual_seed(seed)
    twin = ad.nn.Sequential(ad.nn.Linear(4, 5), ad.nn.Tanh(), ad.nn.Linear(5, 2))
    return plain, ad.nn.parallel.DistributedDataParallel(twin)


def test_ddp_equals_the_bare_model(world_of_one):
    plain, ddp = _pair()
    assert list(ddp.state_dict()) == list(plain.state_dict()) == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(list(ddp.parameters())) == 4
    x = ad.randn(6, 4)
    for model in (plain, ddp):
        model(x).square().sum().backward()
    for p, q in zip(plain.parameters(), ddp.parameters()):
        assert np.array_equal(p.grad.numpy(), q.grad.numpy())
    ddp.load_state_dict({"module." + k: v for k, v in plain.state_dict().items()})
    with pytest.raises(TypeError, match="expected an ad.nn.Module"):
        ad.nn.parallel.DistributedDataParallel(lambda x: x)
    with pytest.raises(RuntimeError, match="move or cast the module before wrapping it"):
        ddp.to(dtype=ad.float64)


def _count_reduces(ddp, monkeypatch):
    """The calls of ``ddp``'s (one) bucket's reduce, one entry (its number of gradients) each."""
    (bucket,) = ddp._buckets
    calls = []
    plain_reduce = bucket.reduce
    monkeypatch.setattr(bucket, "reduce", lambda present, *g: (
        calls.append(len(g)), plain_reduce(present, *g))[1])
    return calls


def test_ddp_averages_once_per_backward_and_not_for_grad(world_of_one, monkeypatch):
    _, ddp = _pair()
    calls = _count_reduces(ddp, monkeypatch)
    x = ad.randn(3, 4)
    ddp(x).sum().backward()
    assert calls == [4]
    params = list(ddp.parameters())
    ad.grad(ddp(x).sum(), params)  # (no .grad written: no averaging)
    with ad.GradientTape() as tape:
        tape.watch(params)
        y = ddp(x).sum()
    tape.gradient(y, params)
    assert calls == [4]
    with ddp.no_sync():
        ddp(x).sum().backward()
    assert calls == [4]
    ddp(x).sum().backward()
    assert calls == [4, 4]


def test_ddp_leaves_a_parameter_no_rank_used_without_gradient(world_of_one):
    """As a single process (and PyTorch's DDP): no gradient, not zeros (which would move it
    under Adam or weight decay); backward(inputs=...) leaves the others alone."""
    ad.manual_seed(0)
    net = ad.nn.Sequential(ad.nn.Linear(3, 3), ad.nn.Linear(3, 3))
    ad.nn.parallel.DistributedDataParallel(net)  # (its hooks on the parameters keep it)
    net[0](ad.ones(2, 3)).sum().backward()  # (the second layer is not used)
    assert net[1].weight.grad is None and net[0].weight.grad is not None
    net.zero_grad()
    net(ad.ones(2, 3)).sum().backward(inputs=[net[1].weight])
    assert net[0].weight.grad is None and net[1].weight.grad is not None


def test_ddp_refuses_create_graph_and_a_parameter_unfrozen_after_wrapping(world_of_one):
    ad.manual_seed(0)
    net = ad.nn.Sequential(ad.nn.Linear(3, 3), ad.nn.Linear(3, 1))
    net[0].bias.requires_grad_(False)
    ddp = ad.nn.parallel.DistributedDataParallel(net)
    with pytest.raises(RuntimeError, match="create_graph=True"):
        ddp(ad.ones(2, 3)).square().sum().backward(create_graph=True)
    net.zero_grad()
    net[0].bias.requires_grad_(True)
    with pytest.raises(dist.DistributedError, match="parameter '0.bias' requires grad"):
        ddp(ad.ones(2, 3)).sum().backward()


def test_ddp_after_a_failed_backward_still_averages(world_of_one, monkeypatch):
    """A backward that raises runs no averaging, and the next one averages again."""
    _, ddp = _pair()
    calls = _count_reduces(ddp, monkeypatch)
    first = next(iter(ddp.parameters()))

    def fail(g):
        raise ValueError("a hook fails")

    handle = first.register_hook(fail)
    with pytest.raises(ValueError, match="a hook fails"):
        ddp(ad.ones(2, 4)).sum().backward()
    handle.remove()
    ddp(ad.ones(2, 4)).sum().backward()
    assert calls == [4]


def test_ddp_no_sync_is_checked_on_each_compiled_replay(world_of_one, monkeypatch):
    _, ddp = _pair()
    calls = _count_reduces(ddp, monkeypatch)

    @ad.compile
    def micro(x):
        ddp.zero_grad()
        ddp(x).sum().backward()

    x = ad.ones(2, 4)
    for _ in range(3):
        with ddp.no_sync():
            micro(x)
    assert calls == []
    for _ in range(3):
        micro(x)
    assert calls == [4, 4, 4]
    with ddp.no_sync():
        micro(x)
    assert calls == [4, 4, 4]


def test_ddp_compiled_equals_eager(world_of_one):
    results = []
    for compiled in (False, True):
        plain, ddp = _pair(1)
        opt = ad.optim.SGD(ddp.parameters(), lr=0.1)

        def step(x, ddp=ddp, opt=opt):
            opt.zero_grad()
            loss = ddp(x).square().mean()
            loss.backward()
            opt.step()
            return loss

        run = ad.compile(step) if compiled else step
        for i in range(4):
            run(ad.tensor(np.full((3, 4), 0.1 * i, np.float32)))
        results.append([p.numpy() for p in ddp.parameters()])
    for a, b in zip(*results):
        assert np.array_equal(a, b)


# ---- the callbacks at the end of backward() ---------------------------------------------
def test_callbacks_run_after_accumulation_only_in_backward():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    assert not queue_callback(lambda: seen.append("outside"))

    def hook(g):
        queue_callback(lambda: seen.append(x.grad.tolist()))

    x.register_hook(hook)
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0]]  # (run after .grad was written)
    ad.grad((x * 2).sum(), x)
    assert seen == [[3.0, 3.0]]
    with pytest.raises(RuntimeError):
        (x * 2).sum().backward(ad.ones(3))  # (a failed pass runs none)
    assert seen == [[3.0, 3.0]]


# ---- the sampler ------------------------------------------------------------------------
@settings(max_examples=60, derandomize=True, deadline=None)
@given(n=st.integers(0, 40), world=st.integers(1, 5), drop=st.booleans(),
       shuffle=st.booleans(), epoch=st.integers(0, 3))
def test_sampler_shares(n, world, drop, shuffle, epoch):
    if drop and n < world:
        with pytest.raises(ValueError, match="cannot be split"):
            dist.DistributedSampler(n, world, 0, drop_last=True)
        return
    shares = []
    for r in range(world):
        s = dist.DistributedSampler(list(range(n)), num_replicas=world, rank=r,
                                    shuffle=shuffle, seed=4, drop_last=drop)
        s.set_epoch(epoch)
        shares.append(list(s))
        assert len(s) == len(shares[-1])
    assert len({len(s) for s in shares}) == 1
    flat = [i for s in shares for i in s]
    if drop:
        assert len(flat) == n - n % world and len(set(flat)) == len(flat)
    else:
        assert set(flat) == set(range(n)) and len(flat) == n + (-n) % world
    if not shuffle:
        assert shares[0][:2] == list(range(0, n, world))[:2]


def test_sampler_orders_differ_by_epoch_and_agree_across_ranks():
    a, b = dist.DistributedSampler(100, 2, 0), dist.DistributedSampler(100, 2, 1)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match="rank 2 of num_replicas=2"):
        dist.DistributedSampler(10, 2, 2)


# ---- the torchrun-style rendezvous --------------------------------------------------------
def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rendezvous_between_two_processes():
    port = _free_port()
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from gpuad.distributed.rendezvous import Rendezvous
        r = Rendezvous(1, 2, "127.0.0.1", {port}, timeout=30)
        print(r.exchange("nccl-id", None).hex())
        """)], stdout=subprocess.PIPE, text=True)
    ours = Rendezvous(0, 2, "127.0.0.1", port, timeout=30)
    try:
        time.sleep(0.2)  # (rank 1 may ask before rank 0 publishes: it waits)
        assert ours.exchange("nccl-id", b"\x01\xfe") == b"\x01\xfe"
        out, _ = other.communicate(timeout=60)
    finally:
        ours.close()
    assert out.strip() == "01fe"


def test_rendezvous_timeout_and_missing_address():
    start = time.monotonic()
    with pytest.raises(dist.DistributedTimeoutError, match="is rank 0 running"):
        Rendezvous(1, 2, "127.0.0.1", 9, timeout=1).exchange("nccl-id", None)
    assert time.monotonic() - start < 10
    with pytest.raises(dist.DistributedError, match="MASTER_ADDR and MASTER_PORT"):
        Rendezvous(1, 2, None, None, timeout=1)


# ---- NCCL in a world of one, on the CuPy stand-in ---------------------------------------
def test_nccl_world_of_one_on_the_stand_in(monkeypatch):
    import fake_cupy

    for name in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with fake_cupy.installed(monkeypatch, devices=2):
        from cupy.cuda import nccl

        before = len(nccl.calls)
        dist.init_process_group(backend="nccl", timeout=30)
        try:
            assert dist.get_backend() == "nccl+self"
            t = ad.tensor([1.0, 2.0], device="cuda")
            dist.all_reduce(t, op="mean")
            assert t.tolist() == [1.0, 2.0]
            ad.manual_seed(0)
            net = ad.nn.Linear(3, 2).to("cuda")
            ddp = ad.nn.parallel.DistributedDataParallel(net)
            ddp(ad.ones(4, 3, device="cuda")).sum().backward()
            assert net.weight.grad.tolist() == [[4.0] * 3] * 2
            assert ("allReduce", 8 + 2, "float32") in nccl.calls[before:]  # (and the flags)
            with pytest.raises(ad.DeviceMismatchError, match="a tensor on cuda:1, but this "
                               "rank's NCCL communicator is on cuda:0"):
                dist.all_reduce(ad.ones(2, device="cuda:1"))
        finally:
            dist.destroy_process_group()


def test_nccl_timeout_aborts_the_communicator(monkeypatch):
    """A collective whose completion never comes (its event never done): after ``timeout``
    seconds the communicator is aborted and the call raises; the group refuses from then on."""
    import fake_cupy

    for name in ("RANK", "WORLD_SIZE", "PMI_RANK", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with fake_cupy.installed(monkeypatch, devices=1):
        import cupy

        dist.init_process_group(backend="nccl", timeout=0.3)
        try:
            comm = dist.group.current.comms["cuda"]
            monkeypatch.setattr(cupy.cuda.Event, "done", property(lambda self: False))
            t = ad.ones(3, device="cuda")
            start = time.monotonic()
            with pytest.raises(dist.DistributedTimeoutError,
                               match=r"all_reduce\(sum\) of float32 \(3,\) .* did not complete "
                               r"within timeout=0.3 s"):
                comm.all_reduce(t._a, "sum")
            assert 0.3 <= time.monotonic() - start < 5
            assert not comm.comm.alive  # (aborted)
            with pytest.raises(dist.DistributedError, match="the NCCL group is unusable"):
                dist.all_reduce(t)
        finally:
            dist.destroy_process_group()


def test_nothing_distributed_is_imported_until_used():
    code = ("import sys, gpuad as ad; ad.nn.Linear(2, 2); (ad.ones(2) * 2).sum(); "
            "print(sorted(m for m in sys.modules if m.startswith(('gpuad.distributed', "
            "'gpuad.nn.parallel', 'mpi4py', 'cupy', 'threadpoolctl', 'multiprocessing'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out


def test_rendezvous_port_and_a_foreign_listener():
    from gpuad.distributed.rendezvous import rendezvous_port

    assert rendezvous_port(29500, {}) == 29500
    assert rendezvous_port(29500, {"TORCHELASTIC_USE_AGENT_STORE": "True"}) == 29501
    assert rendezvous_port(29500, {"GPUAD_RENDEZVOUS_PORT": "4000",
                                   "TORCHELASTIC_USE_AGENT_STORE": "True"}) == 4000
    with pytest.raises(ValueError, match="GPUAD_RENDEZVOUS_PORT='x'"):
        rendezvous_port(1, {"GPUAD_RENDEZVOUS_PORT": "x"})
    # a listener that accepts and never speaks (as torchrun's own store would, to gpuad):
    # the deadline holds all the same
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        start = time.monotonic()
        with pytest.raises(dist.DistributedTimeoutError, match="nothing else listening there"):
            Rendezvous(1, 2, "127.0.0.1", silent.getsockname()[1], timeout=1).exchange(
                "nccl-id", None)
        assert time.monotonic() - start < 5
    finally:
        silent.close()


def _fetch_in_another_process(port, key="nccl-id#0", **env):
    code = textwrap.dedent(f"""
        from gpuad.distributed.rendezvous import Rendezvous
        print(Rendezvous(1, 2, "127.0.0.1", {port}, timeout=20)._fetch({key!r}, 20).decode())
        """)
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_rendezvous_with_another_key_is_named():
    port = _free_port()
    ours = Rendezvous(0, 2, "127.0.0.1", port, timeout=10)
    try:
        ours.exchange("nccl-id", b"x")
        run = _fetch_in_another_process(port, GPUAD_RENDEZVOUS_KEY="another")
        assert run.returncode != 0 and "different GPUAD_RENDEZVOUS_KEY" in run.stderr
        assert _fetch_in_another_process(port).stdout.strip() == "x"  # (same key: served)
    finally:
        ours.close()


def test_rendezvous_survives_idle_and_foreign_clients_and_frees_its_port():
    import socket

    port = _free_port()
    ours = Rendezvous(0, 2, "127.0.0.1", port, timeout=10)
    idle = socket.create_connection(("127.0.0.1", port))  # (connects, never speaks)
    try:
        with socket.create_connection(("127.0.0.1", port)) as probe:  # (an HTTP probe)
            probe.sendall(b"GET / HTTP/1.0\r\n\r\n")
        ours.exchange("nccl-id", b"id-1")
        other = Rendezvous(1, 2, "127.0.0.1", port, timeout=10)
        assert other.exchange("nccl-id", None) == b"id-1"
    finally:
        idle.close()
        ours.close()
    again = Rendezvous(0, 2, "127.0.0.1", port, timeout=10, generation=1)  # (port free)
    try:
        again.exchange("nccl-id", b"id-2")
        # a rank of the new group never takes the old group's value
        assert Rendezvous(1, 2, "127.0.0.1", port, timeout=10, generation=1).exchange(
            "nccl-id", None) == b"id-2"
        with pytest.raises(dist.DistributedTimeoutError):
            Rendezvous(1, 2, "127.0.0.1", port, timeout=1, generation=0).exchange(
                "nccl-id", None)
    finally:
        again.close()


def test_rendezvous_under_torchrun(tmp_path):
    """PyTorch's own torchrun: its agent serves MASTER_PORT, gpuad's rendezvous the next port."""
    import shutil

    torchrun = shutil.which("torchrun") or shutil.which(str(
        __import__("pathlib").Path(sys.executable).parent / "torchrun"))
    if torchrun is None:
        pytest.skip("torchrun (PyTorch) is not installed")
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent("""
        import os
        from gpuad.distributed import launch
        from gpuad.distributed.rendezvous import Rendezvous, rendezvous_port
        info = launch.read()
        port = rendezvous_port(info.master_port, os.environ)
        r = Rendezvous(info.rank, info.world_size, info.master_addr, port, timeout=60)
        got = r.exchange("nccl-id", b"from rank 0" if info.rank == 0 else None)
        print(info.launcher, info.rank, port - info.master_port, got.decode(), flush=True)
        import time; time.sleep(0.5)  # (rank 0 serves until the others have fetched)
        """))
    run = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", str(script)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(run.stdout.splitlines()) == ["torchrun 0 1 from rank 0",
                                               "torchrun 1 1 from rank 0"]


@settings(max_examples=80, derandomize=True, deadline=None)
@given(n=st.integers(0, 50), world=st.integers(1, 6), rank_seed=st.integers(0, 5),
       drop=st.booleans())
def test_sampler_order_is_pytorchs_without_shuffling(n, world, rank_seed, drop):
    """Differential against torch.utils.data.DistributedSampler (shuffle=False: the same
    padding, stride and drop_last rule; the shuffled orders come from different generators)."""
    torch_data = pytest.importorskip("torch.utils.data")
    rank = rank_seed % world
    if drop and n < world:
        return  # (PyTorch makes empty shares; gpuad refuses: tested above)
    ours = dist.DistributedSampler(n, world, rank, shuffle=False, drop_last=drop)
    theirs = torch_data.DistributedSampler(range(n), num_replicas=world, rank=rank,
                                           shuffle=False, drop_last=drop)
    if n == 0:
        assert list(ours) == [] and len(ours) == 0
        return
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_real_cupys_nccl_unique_id_travels_as_it_takes_it():
    """Real CuPy (14 returns the id as bytes, and NcclCommunicator takes bytes only; older
    ones used tuples): the id that gpuad packs arrives as the type CuPy's constructor takes.
    Runs without a GPU (ncclGetUniqueId needs none) where CuPy and NCCL's wheel are
    installed; the constructor itself needs a GPU."""
    code = textwrap.dedent("""
        import cupy.cuda.nccl as nccl
        if not nccl.available:
            raise SystemExit(77)
        from gpuad.distributed.nccl_comm import _id_bytes, _id_of
        uid = nccl.get_unique_id()
        back = _id_of(_id_bytes(uid))
        assert back == uid and type(back) is type(uid), (type(uid), type(back))
        try:
            nccl.NcclCommunicator(1, tuple(range(128)), 0)
        except TypeError as exc:  # (CuPy 14: bytes only)
            assert isinstance(uid, bytes), exc
        print("ok", type(uid).__name__)
        """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    if run.returncode == 77 or "No module named 'cupy'" in run.stderr:
        pytest.skip("real CuPy with NCCL is not installed (pip install nvidia-nccl-cu13)")
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stdout + run.stderr
