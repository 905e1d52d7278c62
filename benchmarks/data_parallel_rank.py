"""One rank of the data_parallel suite (``benchmarks.data_parallel`` starts them):

    mpiexec -n N python -m benchmarks.data_parallel_rank SPEC OUT   (SPEC's mode: "mpi")
    python -m benchmarks.data_parallel_rank SPEC OUT                (mode "nccl": one rank)

SPEC is the JSON that ``benchmarks.data_parallel.spec`` makes; rank 0 writes the records (the
harness's format) to the file OUT. Each framework runs in ranks of its own (SPEC's
``framework``), as every framework runs in its own process elsewhere in the harness. Every
measurement is checked before it is timed; a wrong one is recorded as wrong, and not timed.

- ``mpi``, gpuad: the MLP step with its model in ``gpuad.nn.parallel.DistributedDataParallel``, each
  rank with its own ``batch`` rows, checked after its first step against the float64 reference of
  one SGD step on all the ranks' rows together, every rank's parameters equal bit for bit (after the
  first step and after the timed ones); the time inside DDP's all-reduce (``_Bucket.reduce``:
  staging copies and the all-reduce; and the communicator's ``all_reduce`` alone) as a share of the
  step. Then, from 2 ranks, the all-reduce of the MLP's flat gradient buffer and of a larger buffer
  through gpuad (its MPI communicator's all-reduce, the sum that DDP's averaging makes, which the
  target compares; the DDP bucket of a model of those parameters, whose mean adds a scaling pass,
  reducing gradients that are views of one flat buffer in place, or separate gradients staged
  through its own buffer; ``ad.distributed.all_reduce`` of a tensor of that size) against a bare
  ``comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` of the same bytes and a bare ``Iallreduce`` +
  ``Wait`` (MPI's nonblocking algorithm without gpuad's polling wait), in the same rounds, each
  checked against its formula first.
- ``mpi``, torch: the same MLP step in PyTorch's DDP on a gloo group of the same ranks, checked
  the same way, and gloo's ``all_reduce`` of the same buffers; or, where gloo cannot start,
  records that say why.
- ``nccl``: in a world of one on ``cuda:0``, the same buffers through gpuad's NCCL path against
  a bare ``ncclAllReduce`` on gpuad's communicator followed by a stream synchronisation; or,
  where no GPU or no NCCL is usable, skipped records that say why.

Timing: a warm-up that also estimates a call's time; then rounds, in each of which every method
times one sample of ``reps`` calls, the order rotating. With several ranks each sample starts
after a barrier and counts the slowest rank's time (a collective ends when its last rank
does), so every rank takes the same decisions.
"""
import datetime
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

    def measure(self, methods):
        """``methods``: name -> fn or (fn, probe). Returns name -> {"samples", "reps",
        "extra": [the probe's readings]}, the samples of one round at one index."""
        methods = {k: v if isinstance(v, tuple) else (v, None) for k, v in methods.items()}
        if not methods:
            return {}
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
def _gpuad_mlp(ad, spec, weights, x, labels, device="cpu"):
    """gpuad_runs' MLP step, its model wrapped in DDP: (the step, its parameters as
    arrays)."""
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
    return _sgd_step(opt, ddp, ad.nn.functional.cross_entropy, xt, yt), \
        lambda: [p.numpy() for p in params]


def _torch_mlp(torch, spec, weights, x, labels):
    """torch_runs' MLP step, its model wrapped in PyTorch's DDP (gloo)."""
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
    return _sgd_step(opt, ddp, torch.nn.functional.cross_entropy, xt, yt), \
        lambda: [p.detach().numpy() for p in params]


def _sgd_step(opt, model, cross_entropy, x, labels):
    """One training step of either framework (the same spelling in both)."""
    def step():
        opt.zero_grad()
        loss = cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
        return loss

    return step


class CommProbe:
    """The seconds spent inside DDP's bucket reduce (``_Bucket.reduce``: staging copies and
    the all-reduce) and inside the communicator's ``all_reduce`` alone, while installed."""

    def __init__(self, parallel, comm):
        self.parallel, self.comm = parallel, comm
        self.reduce_s = self.mpi_s = 0.0
        self.calls = 0

    def __enter__(self):
        bucket_reduce, comm_reduce = self.parallel._Bucket.reduce, self.comm.all_reduce

        def timed_reduce(bucket, *args):
            t0 = time.perf_counter()
            result = bucket_reduce(bucket, *args)
            self.reduce_s += time.perf_counter() - t0
            self.calls += 1
            return result

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


def _check_first_step(weights, x, labels, gathered, losses):
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


def _step_check(comm, weights, x, labels, step, params):
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
                verdict = ("ok", _check_first_step(weights, x, labels,
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


def _pattern(size, rank):
    """Rank ``rank``'s values: small integers times (rank + 1), exact in float32 sums."""
    return ((np.arange(size) % 7 + 1) * (rank + 1)).astype(np.float32)


def _all(arrays):
    """The bucket's flags: every gradient present."""
    return (True,) * len(arrays)


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


class Method:
    """A way to all-reduce ``arrays`` (what ``call()`` reduces, in place, one after another)
    and its check: ``mine`` in, ``call()``, ``want`` out exactly; then zeros, which the timed
    calls reduce (their values never grow, whatever the number of calls)."""

    def __init__(self, what, arrays, call, mine, want, to_device=np.asarray,
                 to_host=np.asarray):
        self.what, self.arrays, self.call = what, arrays, call
        self.mine, self.want, self.to_device, self.to_host = mine, want, to_device, to_host

    def _fill(self, values):
        off = 0
        for a in self.arrays:
            a[...] = self.to_device(values[off:off + a.size].reshape(a.shape))
            off += a.size

    def check(self):
        self._fill(self.mine)
        self.call()
        got = np.concatenate([self.to_host(a).reshape(-1) for a in self.arrays])
        _close(self.what, got, self.want, 0, 0)
        self._fill(np.zeros_like(self.mine))


def _case_name(prefix, kind, ranks, nbytes=None):
    what = "the MLP's flat gradient buffer" if kind == "flat" else "a larger buffer"
    size = "" if nbytes is None else f" ({nbytes / 2 ** 20:.3g} MiB)"
    return f"{prefix} {what}{size}, {ranks} rank" + ("s" if ranks > 1 else "")


def _buffer_sizes(spec):
    """Elements of the flat buffer (the MLP's parameters) and of the larger one."""
    sizes, (rows, cols) = spec["sizes"], spec["big"]
    flat = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:]))
    return {"flat": flat, "big": rows * cols}


def _all_reduce_case(clock, kind, size, methods, extra):
    """One buffer's record: every method (name -> Method) checked, then the right ones timed
    in the same rounds."""
    nbytes, n, bare = 4 * size, extra["ranks"], extra.get("bare")
    bad = {}
    for name, m in methods.items():
        try:
            m.check()
        except AssertionError as exc:
            bad[name] = {"status": "wrong", "reason": str(exc)}
        except Exception as exc:
            bad[name] = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    if clock.comm is not None:  # (every rank's findings, so that all time the same methods)
        for theirs in clock.comm.allgather(bad):
            for name, why in theirs.items():
                bad.setdefault(name, why)
    timed = clock.measure({k: m.call for k, m in methods.items() if k not in bad})
    results = {k: bad.get(k) or _summary(timed[k], 1e3, nbytes) for k in methods}
    record = {"suite": "data_parallel", "case": _case_name(extra["prefix"], kind, n, nbytes),
              "unit": "ms", "x": n,
              "params": {"buffer": kind, "elements": size, "bytes": nbytes, "dtype": "float32",
                         "ranks": n, "launch": extra["launch"]},
              "results": results}
    if bare in timed:  # bare time / gpuad time, round by round
        if "gpuad_sum" in timed:  # (the target: the same operation, the same bytes)
            record[f"vs_{bare}"] = _per_round(timed, bare, "gpuad_sum")
        for name in ("gpuad", "gpuad_staged", "gpuad_all_reduce"):
            if name in timed:
                results[name][f"vs_{bare}"] = _per_round(timed, bare, name)
    return record


def _gpuad_buffers(ad, spec, device):
    """(which, the DDP bucket of a model of that many parameters): the MLP (its flat gradient
    buffer) and a Linear layer of the larger buffer's size."""
    sizes, (rows, cols) = spec["sizes"], spec["big"]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [ad.nn.Linear(sizes[i], sizes[i + 1]), ad.nn.ReLU()]
    out = []
    for kind, module in (("flat", ad.nn.Sequential(*layers[:-1])),
                         ("big", ad.nn.Linear(cols, rows, bias=False))):
        (bucket,) = ad.nn.parallel.DistributedDataParallel(module.to(device))._buckets
        assert bucket.total == _buffer_sizes(spec)[kind]
        out.append((kind, bucket))
    return out


def _step_record(n, spec, launch, results):
    return {"suite": "data_parallel", "case": f"mlp step, {n} rank" + ("s" if n > 1 else ""),
            "unit": "ms/step", "x": n,
            "params": {"sizes": spec["sizes"], "batch_per_rank": spec["batch"],
                       "optimizer": "sgd", "ranks": n, "launch": launch},
            "results": results}


def _time_step(comm, clock, framework, step, params, probe, checked):
    """The step's result entry: ``checked`` (the first step's verdict), then timed."""
    status, detail = checked
    if status != "ok":
        return {"status": status, "reason": detail}
    m = clock.measure({framework: (step, probe)})[framework]
    res = {**_summary(m, 1e3), "max_error": detail}
    if m["extra"]:
        for key in ("comm_share", "mpi_share"):
            res[key] = statistics.median(e[key] for e in m["extra"])
        res["reduces_per_step"] = statistics.median(e["reduces"] for e in m["extra"]) / m["reps"]
    if not _same_everywhere(comm, params):
        return {"status": "wrong", "reason": "the ranks' parameters differ after the timed "
                "steps"}
    return res


def _gpuad_ranks(comm, spec, launch, problem, rows):
    from mpi4py import MPI

    import gpuad as ad
    from gpuad.nn import parallel

    r, n = comm.rank, comm.size
    ad.set_num_threads(spec["threads"])
    ad.distributed.init_process_group(timeout=spec["timeout"])
    launch.update(backend=ad.distributed.get_backend(), gpuad=ad.__version__)
    clock = Clock(comm, spec["profile"])
    weights, x, labels = problem
    step, params = _gpuad_mlp(ad, spec, weights, x[rows], labels[rows])
    with CommProbe(parallel, ad.distributed.group.current.comms["cpu"]) as probe:
        checked = _step_check(comm, weights, x, labels, step, params)
        result = _time_step(comm, clock, "gpuad", step, params, probe, checked)
    records = [_step_record(n, spec, launch, {"gpuad": result})]
    if n > 1:
        k = n * (n + 1) // 2  # the sum of (rank + 1) over the ranks
        for kind, bucket in _gpuad_buffers(ad, spec, "cpu"):
            size = bucket.total
            shapes = [p.shape for p in bucket.params]
            mine, base = _pattern(size, r), _pattern(size, 0)
            mean, total = base * (n + 1) / 2, base * k
            inplace = _bucket_arrays(np, shapes, True)
            staged = _bucket_arrays(np, shapes, False)
            t = ad.zeros(size)
            bare, nonblocking = np.zeros(size, np.float32), np.zeros(size, np.float32)
            flat, mpi = np.zeros(size, np.float32), ad.distributed.group.current.comms["cpu"]
            methods = {
                "gpuad_sum": Method("gpuad's MPI all-reduce (sum)", [flat],
                                    lambda a=flat, c=mpi: c.all_reduce(a, "sum"), mine, total),
                "gpuad": Method("the bucket's mean", inplace,
                                lambda b=bucket, a=inplace: b.reduce(_all(a), *a), mine,
                                mean),
                "gpuad_staged": Method("the bucket's mean", staged,
                                       lambda b=bucket, a=staged: b.reduce(_all(a), *a), mine,
                                       mean),
                "gpuad_all_reduce": Method("ad.distributed.all_reduce's sum", [t._a],
                                           lambda t=t: ad.distributed.all_reduce(t), mine,
                                           total),
                "mpi4py": Method("MPI's sum", [bare], lambda a=bare: comm.Allreduce(
                    MPI.IN_PLACE, a, op=MPI.SUM), mine, total),
                "mpi4py_iallreduce": Method("MPI's sum", [nonblocking],
                                            lambda a=nonblocking: comm.Iallreduce(
                                                MPI.IN_PLACE, a, op=MPI.SUM).Wait(),
                                            mine, total)}
            records.append(_all_reduce_case(clock, kind, size, methods, {
                "prefix": "all_reduce", "launch": launch, "bare": "mpi4py", "ranks": n}))
    ad.distributed.destroy_process_group()
    return records


def _start_gloo(comm, timeout):
    """PyTorch with a gloo group of the same ranks, or (None, why not: ``missing`` or ``not
    offered``, and the reason)."""
    why = None
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        torch, why = None, ("missing", f"not installed ({exc.name or exc})")
    port = comm.bcast(_free_port() if comm.rank == 0 else None, root=0)
    if torch is not None:
        try:
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                    rank=comm.rank, world_size=comm.size,
                                    timeout=datetime.timedelta(seconds=timeout))
        except Exception as exc:
            why = ("not offered", f"torch.distributed's gloo group failed to start: "
                   f"{type(exc).__name__}: {exc}")
    whys = [w for w in comm.allgather(why) if w]  # (every rank, or none)
    if whys:
        if why is None:
            dist.destroy_process_group()
        return None, whys[0]
    return torch, None


def _torch_ranks(comm, spec, launch, problem, rows):
    r, n = comm.rank, comm.size
    torch, why = _start_gloo(comm, spec["timeout"])
    sizes = _buffer_sizes(spec)
    if torch is None:
        absent = {"torch": {"status": why[0], "reason": why[1]}}
        return [_step_record(n, spec, launch, absent)] + [
            {"suite": "data_parallel", "case": _case_name("all_reduce", kind, n, 4 * size),
             "unit": "ms", "x": n, "params": {"buffer": kind, "ranks": n}, "results": absent}
            for kind, size in sizes.items() if n > 1]
    torch.set_num_threads(spec["threads"])
    launch.update(torch=torch.__version__, backend="gloo")
    clock = Clock(comm, spec["profile"])
    weights, x, labels = problem
    step, params = _torch_mlp(torch, spec, weights, x[rows], labels[rows])
    checked = _step_check(comm, weights, x, labels, step, params)
    records = [_step_record(n, spec, launch, {
        "torch": _time_step(comm, clock, "torch", step, params, None, checked)})]
    if n > 1:
        k = n * (n + 1) // 2
        for kind, size in sizes.items():
            t = torch.zeros(size)
            method = Method("gloo's sum", [t.numpy()],
                            lambda t=t: torch.distributed.all_reduce(t), _pattern(size, r),
                            _pattern(size, 0) * k)
            records.append(_all_reduce_case(clock, kind, size, {"torch": method}, {
                "prefix": "all_reduce", "launch": launch, "ranks": n}))
    torch.distributed.destroy_process_group()
    return records


def mpi_main(spec, out):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    r, n = comm.Get_rank(), comm.Get_size()
    cpus, oversubscribed = _pin(r, n, spec["threads"])
    import mpi4py

    launch = {"ranks": n, "threads_per_rank": spec["threads"], "cores": spec["cores"],
              "oversubscribed": oversubscribed, "cpus": comm.gather(cpus, root=0),
              "mpi4py": mpi4py.__version__,
              "mpi": " ".join(MPI.Get_library_version().splitlines()[0].split())}
    # every rank's rows together are the problem (rank r's: from r * batch on)
    problem = ref.mlp_problem(spec["sizes"], spec["batch"] * n)
    rows = slice(r * spec["batch"], (r + 1) * spec["batch"])
    ranks = _torch_ranks if spec["framework"] == "torch" else _gpuad_ranks
    records = ranks(comm, spec, launch, problem, rows)
    if r == 0:
        with open(out, "w") as f:
            json.dump(records, f)


def _pin(rank, size, threads):
    """Rank ``rank``'s cores: its own ``threads`` of them where the ranks' threads fit the
    machine's cores, else all of them (oversubscribed: the OS shares them out)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if cores is None or size * threads > len(cores):
        return cores, False if cores is None else size * threads > len(cores)
    mine = cores[rank * threads:(rank + 1) * threads]
    os.sched_setaffinity(0, mine)
    return mine, False


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
    if reason is None:
        try:  # (a world of one starts NCCL only when asked to)
            ad.distributed.init_process_group(backend="nccl", timeout=spec["timeout"])
        except ad.distributed.DistributedError as exc:
            reason = f"gpuad cannot start NCCL: {exc}"
        else:
            comm = ad.distributed.group.current.comms["cuda"]
    if reason is not None:
        records = [{"suite": "data_parallel", "case": _case_name("nccl all_reduce", kind, 1),
                    "unit": "ms", "x": 1, "params": {"buffer": kind, "ranks": 1},
                    "skipped": reason, "results": {}} for kind in ("flat", "big")]
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
    device = f"cuda:{comm.device}"

    def make(bucket):
        size = bucket.total
        shapes = [p.shape for p in bucket.params]
        mine = _pattern(size, 0)  # (a world of one: the sum and the mean are the values)
        inplace = _bucket_arrays(cupy, shapes, True)
        staged = _bucket_arrays(cupy, shapes, False)
        t = ad.zeros(size, device=device)
        bare = cupy.zeros(size, cupy.float32)

        def bare_call():
            stream = cupy.cuda.get_current_stream()
            comm.comm.allReduce(bare.data.ptr, bare.data.ptr, size, nccl.NCCL_FLOAT32,
                                nccl.NCCL_SUM, stream.ptr)
            stream.synchronize()

        on = {"to_device": cupy.asarray, "to_host": cupy.asnumpy}
        flat = cupy.zeros(size, cupy.float32)
        return {
            "gpuad_sum": Method("gpuad's NCCL all-reduce (sum)", [flat],
                                lambda: comm.all_reduce(flat, "sum"), mine, mine, **on),
            "gpuad": Method("the bucket's mean", inplace,
                            lambda: bucket.reduce(_all(inplace), *inplace),
                            mine, mine, **on),
            "gpuad_staged": Method("the bucket's mean", staged,
                                   lambda: bucket.reduce(_all(staged), *staged), mine, mine,
                                   **on),
            "gpuad_all_reduce": Method("ad.distributed.all_reduce's sum", [t._a],
                                       lambda: ad.distributed.all_reduce(t), mine, mine, **on),
            "nccl": Method("NCCL's sum", [bare], bare_call, mine, mine, **on)}

    extra = {"prefix": "nccl all_reduce", "launch": launch, "bare": "nccl", "ranks": 1}
    clock = Clock(None, spec["profile"])
    with cupy.cuda.Device(comm.device):
        records = [_all_reduce_case(clock, kind, bucket.total, make(bucket), extra)
                   for kind, bucket in _gpuad_buffers(ad, spec, device)]
    with open(out, "w") as f:
        json.dump(records, f)
    ad.distributed.destroy_process_group()


def main():
    spec, out = json.loads(sys.argv[1]), sys.argv[2]
    (nccl_main if spec["mode"] == "nccl" else mpi_main)(spec, out)


if __name__ == "__main__":
    main()
