"""One rank of tests/test_distributed_mpi.py's launches (``mpiexec -n N python
distributed_worker.py SCENARIO OUT [options]``). Each rank asserts what it can check alone
against formulas, and writes what the test compares across ranks (and with a single-process
run) to ``OUT/rank<r>.npz``.

Scenarios:
- ``collectives``: all_reduce (every op, dtypes, a non-contiguous view, a tensor saved for
  backward), broadcast, both forms of all_gather, barrier, reduce_metrics, the sampler;
- ``train``: a small MLP trained by DistributedDataParallel (``--opt sgd|adam``,
  ``--dtype``, ``--device cpu|cuda`` on the CuPy stand-in with ``--stand-in N``,
  ``--compile``, ``--zero-grad-none``); its final parameters;
- ``fail``: what ``--how`` says rank 1 does (``exit``, ``raise``, ``sleep``, ``shape``,
  ``dtype``), with ``--timeout`` seconds.
"""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def _options():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("out")
    p.add_argument("--opt", default="sgd")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--device", default="cpu")
    p.add_argument("--stand-in", type=int, default=0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--zero-grad-none", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--how", default="")
    p.add_argument("--timeout", type=float, default=60.0)
    return p.parse_args()


def data(steps, batch, dtype):
    """The whole run's inputs and labels: ``steps`` batches of ``batch`` rows."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((steps * batch, 6)).astype(dtype)
    y = rng.integers(0, 3, steps * batch)
    return x, y


def model(ad, seed, dtype, device):
    ad.manual_seed(seed)
    return ad.nn.Sequential(ad.nn.Linear(6, 8), ad.nn.Tanh(), ad.nn.Linear(8, 3)).to(
        device=device, dtype=dtype)


def optimizer(ad, params, name):
    return (ad.optim.SGD(params, lr=0.1, momentum=0.9) if name == "sgd"
            else ad.optim.Adam(params, lr=0.01))


def collectives(ad, r, n, out):
    dist = ad.distributed
    k = n * (n + 1) / 2
    for dtype in ("float32", "float64", "float16", "int64", "int32"):
        base = np.arange(1, 7).reshape(2, 3).astype(dtype)
        for op, want in (("sum", base * k), ("max", base * n), ("min", base),
                         ("mean", base * k / n)):
            if op == "mean" and dtype.startswith("int"):
                continue
            t = ad.tensor(base * (r + 1), dtype=dtype)
            assert dist.all_reduce(t, op=op) is t
            assert t.dtype == dtype and np.allclose(t.numpy(), want), (dtype, op, t)
    flags = ad.tensor([r == 0, True, False])
    dist.all_reduce(flags, op="max")
    assert flags.tolist() == [True, True, False]
    flags = ad.tensor([r == 0, True, False])
    dist.all_reduce(flags, op="min")
    assert flags.tolist() == [n == 1, True, False]
    m = ad.tensor(np.arange(6.0).reshape(2, 3) + r)
    view = m.T  # (not contiguous: staged, written back)
    dist.all_reduce(view, op="sum")
    assert np.array_equal(m.numpy(), (np.arange(6.0).reshape(2, 3) * n + k - n))
    b = ad.full((4,), float(r))
    dist.broadcast(b, src=n - 1)
    assert b.tolist() == [n - 1.0] * 4
    g = dist.all_gather(ad.tensor([r, 10 * r]))
    assert g.tolist() == [[i, 10 * i] for i in range(n)]
    slots = [ad.zeros(2) for _ in range(n)]
    dist.all_gather(slots, ad.tensor([r + 0.5, -r]))
    assert [s.tolist() for s in slots] == [[i + 0.5, -i] for i in range(n)]
    dist.barrier()
    metrics = dist.reduce_metrics({"loss": float(r), "hits": 2}, op="sum")
    assert metrics == {"loss": k - n, "hits": 2.0 * n}
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    z = (y * y).sum()  # (saves y)
    dist.all_reduce(y)
    try:
        z.backward()
    except RuntimeError as exc:
        assert "modified by an in-place operation" in str(exc), exc
    else:
        raise AssertionError("a tensor changed by all_reduce after it was saved went unseen")
    # DDP: a layer unused on rank 1 only averages with rank 1's zeros; a layer no rank uses
    # keeps no gradient on every rank
    ad.manual_seed(0)
    net = ad.nn.Sequential(ad.nn.Linear(2, 2), ad.nn.Linear(2, 2), ad.nn.Linear(2, 2))
    ddp = ad.nn.parallel.DistributedDataParallel(net)
    h = net[0](ad.ones(1, 2))
    (net[1](h) if r != 1 else h).sum().backward()
    assert net[2].weight.grad is None and net[2].bias.grad is None
    want = float(np.float32(n - 1) / np.float32(n))  # (every rank but rank 1 gave 1s)
    assert net[1].bias.grad.tolist() == [want] * 2, net[1].bias.grad
    del ddp
    shares = {}
    for size, drop in ((10, False), (10, True), (3 * n, False)):
        s = dist.DistributedSampler(size, shuffle=True, seed=3, drop_last=drop)
        for epoch in (0, 1):
            s.set_epoch(epoch)
            shares[f"sampler_{size}_{int(drop)}_{epoch}"] = s.indices()
    np.savez(out / f"rank{r}.npz", **shares)


def train(ad, args, r, n, out):
    dtype, steps, batch = args.dtype, args.steps, 12
    device = f"cuda:{r}" if args.device == "cuda" else "cpu"
    x, y = data(steps, batch, dtype)
    net = model(ad, seed=r, dtype=dtype, device=device)  # (rank 0's reaches every rank)
    ddp = ad.nn.parallel.DistributedDataParallel(net)
    opt = optimizer(ad, ddp.parameters(), args.opt)
    losses, reduced = [], []  # (reduced: the sizes MPI all-reduced, from here on)
    comm = ad.distributed.group.current.comms.get("cpu")
    if comm is not None and comm.name == "mpi":
        plain = comm.all_reduce
        comm.all_reduce = lambda a, op: (reduced.append(a.size), plain(a, op))[1]

    def step(xb, yb):
        opt.zero_grad(set_to_none=args.zero_grad_none)
        loss = ad.nn.functional.cross_entropy(ddp(xb), yb)
        loss.backward()
        opt.step()
        return loss

    run = ad.compile(step) if args.compile else step
    for i in range(steps):
        rows = slice(i * batch + r, (i + 1) * batch, n)  # (this rank's share of the batch)
        loss = run(ad.tensor(x[rows], device=device), ad.tensor(y[rows], device=device))
        losses.append(float(loss.item()))
    state = {k: v.numpy() for k, v in ddp.state_dict().items()}
    if args.stand_in:  # (the stand-in NCCL's record of the collectives)
        from cupy.cuda import nccl

        state["nccl_calls"] = np.array([f"{c[0]} {c[1]} {c[2]}" for c in nccl.calls])
    np.savez(out / f"rank{r}.npz", losses=np.array(losses), reduced=np.array(reduced, int),
             **state)


def fail(ad, args, r):
    t = ad.ones(3)
    if r == 1:
        if args.how == "exit":
            os._exit(3)
        if args.how == "raise":
            raise ValueError("rank 1 failed on purpose")
        if args.how == "sleep":
            time.sleep(args.timeout * 10)
        if args.how == "shape":
            t = ad.ones(4)
        if args.how == "dtype":
            t = ad.ones(3, dtype=ad.float64)
        if args.how == "barrier":  # (another call than rank 0's)
            ad.distributed.barrier()
            return
        if args.how == "before_init":  # (gone before init_process_group)
            os._exit(3)
    start = time.monotonic()
    try:
        ad.distributed.all_reduce(t)
    finally:
        print(f"rank {r}: all_reduce ended after {time.monotonic() - start:.1f} s", flush=True)


def main():
    args = _options()
    out = pathlib.Path(args.out)
    if args.stand_in:
        sys.path.insert(0, str(HERE))
        import fake_cupy

        fake_cupy.install(devices=args.stand_in)
    import gpuad as ad

    if args.how == "raise_before_init" and os.environ.get("PMI_RANK") == "1":
        raise FileNotFoundError("rank 1 failed before init_process_group")
    ad.distributed.init_process_group(backend=args.backend, timeout=args.timeout)
    r, n = ad.distributed.get_rank(), ad.distributed.get_world_size()
    if args.scenario == "collectives":
        collectives(ad, r, n, out)
    elif args.scenario == "train":
        train(ad, args, r, n, out)
    else:
        fail(ad, args, r)
    launcher = ad.distributed.group.current.launch.launcher
    print(f"rank {r} of {n}: {ad.distributed.get_backend()} ({launcher}) ok", flush=True)
    ad.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
