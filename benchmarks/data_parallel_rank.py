"""One rank of the data_parallel suite (``benchmarks.data_parallel`` starts them):

    mpiexec -n N python -m benchmarks.data_parallel_rank SPEC OUT    (SPEC's mode "mpi")
    python -m benchmarks.data_parallel_rank SPEC OUT                 (mode "nccl": one rank)

SPEC is the JSON that ``benchmarks.data_parallel.spec`` makes; rank 0 writes the suite's
result records (the harness's format) to the file OUT. Every measurement is checked before it
is timed, and a wrong one is recorded as wrong and not timed:

- ``mpi``: the MLP step under ``gpuad.nn.parallel.DistributedDataParallel`` (and PyTorch's DDP
  on gloo, when asked for and usable), each rank with its own batch of ``batch`` rows, checked
  after its first step against the float64 reference of one SGD step on all the ranks' rows
  together, and every rank's parameters equal bit for bit after the first and after the last
  step; the time inside DDP's all-reduce (``_Bucket.reduce``, staging copies included, and
  the communicator's ``all_reduce`` alone) as a share of the step. Then, from 2 ranks, the
  all-reduce of the MLP's flat gradient buffer and of a larger one through gpuad (a DDP
  bucket in place, a DDP bucket staging separate gradients, ``ad.distributed.all_reduce``)
  against a bare ``comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` of the same bytes (and,
  to tell the polling wait from MPI's nonblocking algorithm, a bare ``Iallreduce`` +
  ``Wait``; and PyTorch's gloo ``all_reduce``), each checked against its formula first.
- ``nccl``: in a world of one on ``cuda:0``, the same buffers through gpuad's NCCL path against
  a bare ``ncclAllReduce`` on the same communicator followed by a stream synchronisation; or,
  where no GPU or no NCCL is usable, a skipped record that says why.

Timing: a warm-up that also estimates a call's time; then rounds, in each of which every
method times one sample of ``reps`` calls, the order rotating. In a world of several ranks
each sample starts after a barrier and counts as the slowest rank's time (a collective ends
when its last rank does), so every rank takes the same decisions.
"""
import json
import os
import socket
import statistics
import sys
import time

import numpy as np

from . import reference as ref
from .suites import _close


# ---- timing -------------------------------------------------------------------------------
class Clock:
    """Samples in a world of ``comm``'s ranks (``comm`` None: a world of one)."""

    def __init__(self, comm, profile):
        self.comm, self.profile = comm, profile

    def agree(self, seconds):
        """The largest of the ranks' ``seconds`` (the same value on every rank)."""
        if self.comm is None:
            return seconds
        from mpi4py import MPI

        return self.comm.allreduce(seconds, op=MPI.MAX)

    def mean(self, value):
        return value if self.comm is None else self.comm.allreduce(value) / self.comm.size

    def sample(self, fn, reps, probe=None):
        """Seconds per call of ``fn`` (the slowest rank's) and, with a ``probe``, its
        reading of the sample averaged over the ranks."""
        if self.comm is not None:
            self.comm.Barrier()
        if probe is not None:
            probe.reset()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        mine = time.perf_counter() - t0
        extra = None if probe is None else {k: self.mean(v) for k, v in
                                            probe.read(mine).items()}
        return self.agree(mine) / reps, extra

    def measure(self, methods, settle=False):
        """``methods``: name -> fn or (fn, probe). Returns name -> {"samples", "reps",
        "extra": [the probe's readings]}, the samples of one round at one index."""
        methods = {k: v if isinstance(v, tuple) else (v, None) for k, v in methods.items()}
        p = self.profile
        per_call = {}
        for name, (fn, _) in methods.items():  # warm-up, which also estimates a call's time
            spent, n = 0.0, 0
            while n < 2 or spent < p["warm_s"]:
                spent += self.sample(fn, 1)[0]
                n += 1
            per_call[name] = spent / n
        reps = {k: max(1, round(p["sample_s"] / t)) for k, t in per_call.items()}
        longest = max(reps[k] * t for k, t in per_call.items())
        lo, hi = p["rounds"]
        rounds = max(lo, min(hi, int(p["budget_s"] / longest)))
        names = list(methods)
        out = {k: {"samples": [], "reps": reps[k], "extra": []} for k in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                if settle and len(names) > 1:
                    time.sleep(p["settle_s"])
                fn, probe = methods[name]
                seconds, extra = self.sample(fn, reps[name], probe)
                out[name]["samples"].append(seconds)
                if extra is not None:
                    out[name]["extra"].append(extra)
        return out


def _summary(measured, scale, nbytes=None):
    s = measured["samples"]
    res = {"status": "ok", "median": statistics.median(s) * scale, "min": min(s) * scale,
           "samples": len(s), "reps": measured["reps"]}
    if nbytes is not None:
        res["gb_per_s"] = nbytes / statistics.median(s) / 1e9
    return res


def _per_round(measured, num, den):
    """The median over the rounds of ``num``'s sample / ``den``'s."""
    return statistics.median(a / b for a, b in zip(measured[num]["samples"],
                                                    measured[den]["samples"]))


# ---- the MLP ------------------------------------------------------------------------------
def _problem(spec, n):
    """Rank 0's weights, every rank's rows together (rank r's are rows r*batch onwards), and
    the float64 loss and parameters after one SGD step on all of them."""
    weights, x, labels = ref.mlp_problem(spec["sizes"], spec["batch"] * n)
    return weights, x, labels


def _gpuad_mlp(ad, spec, weights, x, labels, device="cpu"):
    layers = []
    sizes = spec["sizes"]
    for i in range(len(sizes) - 1):
        layers += [ad.nn.Linear(sizes[i], sizes[i + 1]), ad.nn.ReLU()]
    model = ad.nn.Sequential(*layers[:-1])
    model.load_state_dict({k: ad.tensor(w) for k, w in zip(model.state_dict(), weights)})
    model.to(device)
    ddp = ad.nn.parallel.DistributedDataParallel(model)
    params = list(ddp.parameters())
    opt = ad.optim.SGD(params, lr=ref.SGD_LR)
    xt, yt = ad.tensor(x, device=device), ad.tensor(labels, device=device)
    cross_entropy = ad.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = cross_entropy(ddp(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return ddp, step, lambda: [p.numpy() for p in params]


def _torch_mlp(torch, spec, weights, x, labels):
    sizes = spec["sizes"]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    model.load_state_dict({k: torch.from_numpy(w) for k, w in zip(model.state_dict(), weights)})
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    params = list(ddp.parameters())
    opt = torch.optim.SGD(params, lr=ref.SGD_LR)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = cross_entropy(ddp(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step, lambda: [p.detach().numpy() for p in params]


class CommProbe:
    """The seconds spent inside DDP's bucket reduce (``_Bucket.reduce``: staging copies and
    the all-reduce) and inside the communicator's ``all_reduce`` alone, while installed."""

    def __init__(self, parallel, comm):
        self.parallel, self.comm = parallel, comm
        self.reduce_s = self.mpi_s = 0.0
        self.calls = 0

    def __enter__(self):
        bucket_reduce, comm_reduce = self.parallel._Bucket.reduce, self.comm.all_reduce

        def timed_reduce(bucket, *grads):
            t0 = time.perf_counter()
            bucket_reduce(bucket, *grads)
            self.reduce_s += time.perf_counter() - t0
            self.calls += 1

        def timed_all_reduce(a, op):
            t0 = time.perf_counter()
            comm_reduce(a, op)
            self.mpi_s += time.perf_counter() - t0

        self._put_back = bucket_reduce
        self.parallel._Bucket.reduce = timed_reduce
        self.comm.all_reduce = timed_all_reduce  # (the instance's: the buckets hold it)
        return self

    def __exit__(self, *exc):
        self.parallel._Bucket.reduce = self._put_back
        del self.comm.all_reduce

    def reset(self):
        self.reduce_s = self.mpi_s = 0.0
        self.calls = 0

    def read(self, seconds):
        return {"comm_share": self.reduce_s / seconds, "mpi_share": self.mpi_s / seconds,
                "reduces": self.calls}


def _check_first_step(spec, n, results, weights, x, labels, gathered, losses):
    """On rank 0: every rank's parameters after the first step equal, and equal to the float64
    reference of one SGD step on every rank's rows. Returns the largest error."""
    loss, after = ref.mlp_first_step(weights, x, labels, "sgd")
    errs = [_close("loss (the mean of the ranks')", np.mean(losses), loss, 1e-4, 1e-6)]
    for r, params in enumerate(gathered[1:], 1):
        for i, (a, b) in enumerate(zip(params, gathered[0])):
            if not np.array_equal(a, b):
                raise AssertionError(f"rank {r}'s parameter {i} differs from rank 0's after "
                                     f"the first step (by up to {np.abs(a - b).max():.3g})")
    for i, (got, want) in enumerate(zip(gathered[0], after)):
        errs.append(_close(f"parameter {i} after one step", got, want, 1e-4, 1e-6))
    return max(errs)


def _step_check(comm, spec, n, weights, x, labels, step, params):
    """Run the first step on every rank and check it on rank 0: (ok, max_error or reason)."""
    try:
        loss = float(step().item())
        mine = (params(), loss)
        error = None
    except Exception as exc:  # (a failure is reported, every rank still takes part)
        mine, error = None, f"{type(exc).__name__}: {exc}"
    everyone = comm.gather(mine, root=0)
    verdict = None
    if comm.rank == 0:
        failed = [(r, e) for r, e in enumerate(comm.gather(error, root=0)) if e]
        if failed:
            verdict = ("error", "; ".join(f"rank {r}: {e}" for r, e in failed))
        else:
            try:
                verdict = ("ok", _check_first_step(spec, n, None, weights, x, labels,
                                                   [p for p, _ in everyone],
                                                   [loss for _, loss in everyone]))
            except AssertionError as exc:
                verdict = ("wrong", str(exc))
    else:
        comm.gather(error, root=0)
    return comm.bcast(verdict, root=0)


def _same_everywhere(comm, params):
    """Whether every rank's parameters equal rank 0's, bit for bit (on every rank)."""
    everyone = comm.gather(params(), root=0)
    same = None
    if comm.rank == 0:
        same = all(np.array_equal(a, b) for ps in everyone[1:] for a, b in zip(ps, everyone[0]))
    return comm.bcast(same, root=0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_torch(comm, threads, timeout):
    """PyTorch with a gloo group over the same ranks, or (None, the reason it is not used)."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        reason = f"not installed ({exc.name or exc})"
        ok = False
    else:
        torch.set_num_threads(threads)
        port = comm.bcast(_free_port() if comm.rank == 0 else None, root=0)
        try:
            import datetime

            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                    rank=comm.rank, world_size=comm.size,
                                    timeout=datetime.timedelta(seconds=timeout))
            ok, reason = True, None
        except Exception as exc:
            ok, reason = False, f"torch.distributed gloo failed: {type(exc).__name__}: {exc}"
    usable = comm.allreduce(int(ok)) == comm.size  # (every rank or none)
    if not usable:
        reasons = [r for r in comm.allgather(reason) if r]
        return None, reasons[0] if reasons else "gloo failed on some rank"
    return torch, None


# ---- the all-reduce of a buffer --------------------------------------------------------------
def _pattern(size, rank):
    """Rank ``rank``'s values: small integers times (rank + 1), exact in float32 sums."""
    return ((np.arange(size) % 7 + 1) * (rank + 1)).astype(np.float32)


def _bucket_arrays(xp, shapes, flat):
    """A DDP bucket's gradients: views of one flat buffer (``flat`` True: the bucket reduces
    it in place) or separate arrays (staged through the bucket's own flat buffer)."""
    if not flat:
        return [xp.zeros(s, np.float32) for s in shapes]
    buffer = xp.zeros(sum(int(np.prod(s)) for s in shapes), np.float32)
    out, off = [], 0
    for s in shapes:
        size = int(np.prod(s))
        out.append(buffer[off:off + size].reshape(s))
        off += size
    return out


def _fill(arrays, values, to_device):
    off = 0
    for a in arrays:
        a[...] = to_device(values[off:off + a.size].reshape(a.shape))
        off += a.size


def _read(arrays, to_host):
    return np.concatenate([to_host(a).reshape(-1) for a in arrays])


def _buffers(ad, spec, device):
    """(label, case part, the module whose DDP bucket is reduced): the MLP's flat gradient
    buffer and the larger one."""
    sizes, (rows, cols) = spec["sizes"], spec["big"]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [ad.nn.Linear(sizes[i], sizes[i + 1]), ad.nn.ReLU()]
    mlp = ad.nn.Sequential(*layers[:-1])
    return [("flat", mlp), ("big", ad.nn.Linear(cols, rows, bias=False))]


def _case_name(kind, nbytes, ranks, prefix="all_reduce"):
    what = "the MLP's flat gradient buffer" if kind == "flat" else "a larger buffer"
    return (f"{prefix} {what} ({nbytes / 2 ** 20:.3g} MiB), {ranks} rank"
            + ("s" if ranks > 1 else ""))


def _all_reduce_case(ad, clock, spec, kind, module, methods_for, checks, n, device, extra):
    """One buffer's record: each method checked against its formula, then timed together."""
    module.to(device)
    ddp = ad.nn.parallel.DistributedDataParallel(module)
    (bucket,) = ddp._buckets
    shapes = [p.shape for p in bucket.params]
    size = sum(bucket.sizes)
    nbytes = 4 * size
    methods, status = methods_for(bucket, shapes, size)
    for name, check in checks(bucket, shapes, size).items():
        if status.get(name, {}).get("status", "ok") != "ok":
            continue
        try:
            check()
        except AssertionError as exc:
            status[name] = {"status": "wrong", "reason": str(exc)}
        except Exception as exc:
            status[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    bad = {k: v for k, v in status.items() if v["status"] != "ok"}
    bad = clock.comm.bcast(bad, root=0) if clock.comm is not None else bad
    timed = clock.measure({k: fn for k, fn in methods.items() if k not in bad})
    results = dict(bad)
    for name, m in timed.items():
        results[name] = _summary(m, 1e3, nbytes)
    record = {"suite": "data_parallel", "case": _case_name(kind, nbytes, n, extra["prefix"]),
              "unit": "ms", "x": n, "params": {"buffer": kind, "elements": size,
                                               "bytes": nbytes, "dtype": "float32",
                                               "ranks": n, **extra["params"]},
              "results": results}
    for name, key in extra["ratios"]:
        if name in timed and "gpuad" in timed:
            record[key] = _per_round(timed, name, "gpuad")
    for name in ("gpuad_staged", "gpuad_all_reduce"):
        if name in timed and extra["bare"] in timed:
            results[name][f"vs_{extra['bare']}"] = _per_round(timed, extra["bare"], name)
    return record


def _expect(name, got, want):
    _close(name, got, want, 0, 0)


def _mpi_bandwidth(ad, clock, spec, torch, n, launch):
    """The all-reduce records of the mpi mode (2 ranks or more)."""
    from mpi4py import MPI

    comm = clock.comm
    r = comm.rank
    k = n * (n + 1) / 2  # the sum of (rank + 1) over the ranks

    def methods_for(bucket, shapes, size):
        inplace = _bucket_arrays(np, shapes, True)
        staged = _bucket_arrays(np, shapes, False)
        t = ad.zeros(size)
        bare = np.zeros(size, np.float32)
        nonblocking = np.zeros(size, np.float32)
        methods = {
            "gpuad": lambda: bucket.reduce(*inplace),
            "gpuad_staged": lambda: bucket.reduce(*staged),
            "gpuad_all_reduce": lambda: ad.distributed.all_reduce(t),
            "mpi4py": lambda: comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM),
            "mpi4py_iallreduce": lambda: comm.Iallreduce(MPI.IN_PLACE, nonblocking,
                                                         op=MPI.SUM).Wait(),
        }
        status = {}
        if torch is not None:
            tt = torch.zeros(size)
            methods["torch"] = lambda: torch.distributed.all_reduce(tt)
        self_state.update(inplace=inplace, staged=staged, t=t, bare=bare,
                          nonblocking=nonblocking, tt=tt if torch is not None else None)
        return methods, status

    self_state = {}

    def checks(bucket, shapes, size):
        mine, base = _pattern(size, r), _pattern(size, 0)
        s = self_state

        def bucket_check(arrays):
            def run():
                _fill(arrays, mine, np.asarray)
                bucket.reduce(*arrays)
                _expect("the bucket's mean", _read(arrays, np.asarray), base * (n + 1) / 2)
                _fill(arrays, np.zeros(size, np.float32), np.asarray)  # (timed on zeros)
            return run

        def all_reduce_check():
            s["t"]._a[...] = mine
            ad.distributed.all_reduce(s["t"])
            _expect("ad.distributed.all_reduce's sum", s["t"].numpy(), base * k)
            s["t"]._a[...] = 0

        def bare_check(buffer, call):
            def run():
                buffer[...] = mine
                call()
                _expect("MPI's sum", buffer, base * k)
                buffer[...] = 0
            return run

        out = {"gpuad": bucket_check(s["inplace"]), "gpuad_staged": bucket_check(s["staged"]),
               "gpuad_all_reduce": all_reduce_check,
               "mpi4py": bare_check(s["bare"], lambda: comm.Allreduce(
                   MPI.IN_PLACE, s["bare"], op=MPI.SUM)),
               "mpi4py_iallreduce": bare_check(s["nonblocking"], lambda: comm.Iallreduce(
                   MPI.IN_PLACE, s["nonblocking"], op=MPI.SUM).Wait())}
        if torch is not None:
            def torch_check():
                s["tt"][...] = torch.from_numpy(mine)
                torch.distributed.all_reduce(s["tt"])
                _expect("gloo's sum", s["tt"].numpy(), base * k)
                s["tt"].zero_()
            out["torch"] = torch_check
        return out

    extra = {"prefix": "all_reduce", "params": {"launch": launch}, "bare": "mpi4py",
             "ratios": [("mpi4py", "vs_mpi4py")]}
    return [_all_reduce_case(ad, clock, spec, kind, module, methods_for, checks, n, "cpu",
                             extra)
            for kind, module in _buffers(ad, spec, "cpu")]


def _pin(rank, size, threads):
    """Rank ``rank``'s cores: its own ``threads`` of them where the ranks' threads fit the
    machine's cores, else all of them (oversubscribed: the OS shares them out)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cores is None or size * threads > len(cores):
        return cores, False if cores is None else size * threads > len(cores)
    mine = cores[rank * threads:(rank + 1) * threads]
    os.sched_setaffinity(0, mine)
    return mine, False


def mpi_main(spec, out):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    r, n = comm.Get_rank(), comm.Get_size()
    threads = spec["threads"]
    cpus, oversubscribed = _pin(r, n, threads)
    import gpuad as ad
    from gpuad.nn import parallel

    ad.set_num_threads(threads)
    ad.distributed.init_process_group(timeout=spec["timeout"])
    group = ad.distributed.group.current
    import mpi4py

    launch = {"ranks": n, "threads_per_rank": threads, "cores": spec["cores"],
              "oversubscribed": oversubscribed, "cpus": comm.gather(cpus, root=0),
              "backend": ad.distributed.get_backend(), "mpi4py": mpi4py.__version__,
              "mpi": MPI.Get_library_version().splitlines()[0].strip(),
              "gpuad": ad.__version__}
    torch, why_not = (None, "not asked for (--frameworks)")
    if "torch" in spec["frameworks"]:
        torch, why_not = _start_torch(comm, threads, spec["timeout"])
    if torch is not None:
        launch["torch"] = torch.__version__
    clock = Clock(comm, spec["profile"])
    records = []

    # the MLP step
    weights, x, labels = _problem(spec, n)
    rows = slice(r * spec["batch"], (r + 1) * spec["batch"])
    steps, results, getters = {}, {}, {}
    ddp, gstep, gparams = _gpuad_mlp(ad, spec, weights, x[rows], labels[rows])
    probe = CommProbe(parallel, group.comms["cpu"])
    with probe:
        status, detail = _step_check(comm, spec, n, weights, x, labels, gstep, gparams)
        if status == "ok":
            steps["gpuad"], getters["gpuad"] = (gstep, probe), gparams
            results["gpuad"] = {"max_error": detail}
        else:
            results["gpuad"] = {"status": status, "reason": detail}
        if torch is not None:
            tstep, tparams = _torch_mlp(torch, spec, weights, x[rows], labels[rows])
            status, detail = _step_check(comm, spec, n, weights, x, labels, tstep, tparams)
            if status == "ok":
                steps["torch"], getters["torch"] = tstep, tparams
                results["torch"] = {"max_error": detail}
            else:
                results["torch"] = {"status": status, "reason": detail}
        else:
            results["torch"] = {"status": "missing" if why_not.startswith("not installed")
                                else "not offered", "reason": why_not}
        timed = clock.measure(steps, settle=threads > 1) if steps else {}
    for name, m in timed.items():
        res = {**_summary(m, 1e3), "max_error": results[name]["max_error"]}
        if m["extra"]:
            for key in ("comm_share", "mpi_share"):
                res[key] = statistics.median(e[key] for e in m["extra"])
            res["reduces_per_step"] = statistics.median(e["reduces"] for e in m["extra"]) \
                / m["reps"]
        if not _same_everywhere(comm, getters[name]):
            res = {"status": "wrong", "reason": "the ranks' parameters differ after the "
                   "timed steps"}
        results[name] = res
    record = {"suite": "data_parallel", "case": f"mlp step, {n} rank" + ("s" if n > 1 else ""),
              "unit": "ms/step", "x": n,
              "params": {"sizes": spec["sizes"], "batch_per_rank": spec["batch"],
                         "optimizer": "sgd", "ranks": n, "launch": launch},
              "results": results}
    if "gpuad" in timed and "torch" in timed:
        record["ratio"] = _per_round(timed, "gpuad", "torch")
    records.append(record)

    if n > 1:
        records += _mpi_bandwidth(ad, clock, spec, torch, n, launch)
    if r == 0:
        with open(out, "w") as f:
            json.dump(records, f)
    if torch is not None:
        torch.distributed.destroy_process_group()
    ad.distributed.destroy_process_group()


# ---- NCCL ---------------------------------------------------------------------------------
def _nccl_unusable(ad):
    """Why gpuad cannot all-reduce through NCCL here, or None."""
    if not ad.cuda.is_available():
        from gpuad.backends.probe import cuda_unavailable_reason

        return f"no usable GPU: {cuda_unavailable_reason(0)}"
    from gpuad.distributed import nccl_comm
    from gpuad.errors import DistributedError

    try:
        nccl_comm.import_nccl()
    except DistributedError as exc:
        return f"NCCL is not usable: {exc}"
    return None


def nccl_main(spec, out):
    import gpuad as ad

    reason = _nccl_unusable(ad)
    names = [_case_name(kind, 0, 1, "nccl all_reduce").split(" (")[0] for kind in
             ("flat", "big")]
    if reason is None:
        ad.distributed.init_process_group(timeout=spec["timeout"])
        comm = ad.distributed.group.current.comms.get("cuda")
        if comm is None or comm.name != "nccl":
            reason = f"gpuad's process group has no NCCL communicator (backend " \
                     f"{ad.distributed.get_backend()!r})"
            ad.distributed.destroy_process_group()
    if reason is not None:
        records = [{"suite": "data_parallel", "case": f"{name}, 1 rank", "unit": "ms",
                    "x": 1, "params": {"buffer": kind, "ranks": 1}, "skipped": reason,
                    "results": {}} for name, kind in zip(names, ("flat", "big"))]
        with open(out, "w") as f:
            json.dump(records, f)
        return
    cupy, nccl = comm.cupy, comm.nccl
    try:
        gpu = cupy.cuda.runtime.getDeviceProperties(comm.device)["name"]
        gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
    except Exception:  # (the name is a note; its absence is no reason to stop)
        gpu = None
    launch = {"ranks": 1, "device": f"cuda:{comm.device}", "gpu": gpu,
              "nccl": getattr(nccl, "get_version", lambda: None)(),
              "backend": ad.distributed.get_backend(), "gpuad": ad.__version__}
    clock = Clock(None, spec["profile"])
    state = {}
    to_device, to_host = cupy.asarray, cupy.asnumpy

    def methods_for(bucket, shapes, size):
        inplace = _bucket_arrays(cupy, shapes, True)
        staged = _bucket_arrays(cupy, shapes, False)
        t = ad.zeros(size, device=f"cuda:{comm.device}")
        bare = cupy.zeros(size, cupy.float32)

        def bare_call():
            comm.comm.allReduce(bare.data.ptr, bare.data.ptr, size, nccl.NCCL_FLOAT32,
                                nccl.NCCL_SUM, cupy.cuda.get_current_stream().ptr)
            cupy.cuda.get_current_stream().synchronize()

        state.update(inplace=inplace, staged=staged, t=t, bare=bare, bare_call=bare_call)
        return {"gpuad": lambda: bucket.reduce(*inplace),
                "gpuad_staged": lambda: bucket.reduce(*staged),
                "gpuad_all_reduce": lambda: ad.distributed.all_reduce(t),
                "nccl": bare_call}, {}

    def checks(bucket, shapes, size):
        mine = _pattern(size, 0)
        s = state

        def bucket_check(arrays):
            def run():
                _fill(arrays, mine, to_device)
                bucket.reduce(*arrays)
                _expect("the bucket's mean", _read(arrays, to_host), mine)
                _fill(arrays, np.zeros(size, np.float32), to_device)
            return run

        def all_reduce_check():
            s["t"]._a[...] = to_device(mine)
            ad.distributed.all_reduce(s["t"])
            _expect("ad.distributed.all_reduce's sum", s["t"].numpy(), mine)
            s["t"]._a[...] = 0

        def bare_check():
            s["bare"][...] = to_device(mine)
            s["bare_call"]()
            _expect("NCCL's sum", to_host(s["bare"]), mine)
            s["bare"][...] = 0

        return {"gpuad": bucket_check(s["inplace"]), "gpuad_staged": bucket_check(s["staged"]),
                "gpuad_all_reduce": all_reduce_check, "nccl": bare_check}

    extra = {"prefix": "nccl all_reduce", "params": {"launch": launch}, "bare": "nccl",
             "ratios": [("nccl", "vs_nccl")]}
    with cupy.cuda.Device(comm.device):
        records = [_all_reduce_case(ad, clock, spec, kind, module, methods_for, checks, 1,
                                    f"cuda:{comm.device}", extra)
                   for kind, module in _buffers(ad, spec, "cuda")]
    with open(out, "w") as f:
        json.dump(records, f)
    ad.distributed.destroy_process_group()


def main():
    spec, out = json.loads(sys.argv[1]), sys.argv[2]
    (nccl_main if spec["mode"] == "nccl" else mpi_main)(spec, out)


if __name__ == "__main__":
    main()
