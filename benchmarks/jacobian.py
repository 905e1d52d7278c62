"""Jacobians of f: R^n -> R^m with m >> n, forward mode against reverse mode.

f(x) = W2 @ tanh(W1 @ x) + sin(x).sum() with W1 of shape (hidden, n) and W2 of shape (m, hidden),
float64. Forward mode pushes n directions through one pass; reverse mode pulls m directions
back through one pass, so forward should win by about m / n. Where PyTorch is installed,
torch.func.jacfwd and jacrev run the same function. Every Jacobian is first checked against
the analytic one. Frameworks alternate in rounds (paired timings, robust to machine noise);
reports the median milliseconds per Jacobian and the ratios.

    python -m benchmarks.jacobian [--n 8] [--m 4096] [--hidden 64] [--device cpu] [--json out]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

from .op_overhead import machine


def _problem(n, m, hidden):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(n), rng.standard_normal((hidden, n)) / np.sqrt(n),
            rng.standard_normal((m, hidden)) / np.sqrt(hidden))


def _analytic(x, w1, w2):
    h = np.tanh(w1 @ x)
    return (w2 * (1 - h * h)) @ w1 + np.cos(x)


def gpuad_runs(x, w1, w2, device):
    import gpuad as ad

    xt = ad.tensor(x, dtype=ad.float64, device=device)
    a, b = ad.tensor(w1, dtype=ad.float64, device=device), ad.tensor(w2, dtype=ad.float64,
                                                                    device=device)

    def f(x):
        return b @ ad.tanh(a @ x) + ad.sin(x).sum()

    def run(mode):
        def go():
            jac = ad.jacobian(f, xt, mode=mode)
            if device != "cpu":
                ad.cuda.synchronize()
            return jac.numpy()
        return go

    return {"gpuad_forward": run("forward"), "gpuad_reverse": run("reverse")}, ad.__version__


def torch_runs(x, w1, w2, device):
    import warnings

    import torch

    warnings.simplefilter("ignore", DeprecationWarning)  # (torch.func's own imports)
    import torch.func

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    dev = "cuda" if device.startswith("cuda") else "cpu"
    xt = torch.tensor(x, device=dev)
    a, b = torch.tensor(w1, device=dev), torch.tensor(w2, device=dev)

    def f(x):
        return b @ torch.tanh(a @ x) + torch.sin(x).sum()

    def run(transform):
        jf = transform(f)

        def go():
            jac = jf(xt)
            if dev == "cuda":
                torch.cuda.synchronize()
            return jac.cpu().numpy()
        return go

    return ({"torch_jacfwd": run(torch.func.jacfwd), "torch_jacrev": run(torch.func.jacrev)},
            torch.__version__)


def measure(n, m, hidden, device, rounds, reps):
    x, w1, w2 = _problem(n, m, hidden)
    want = _analytic(x, w1, w2)
    runs, versions = {}, {}
    for name, make in (("gpuad", gpuad_runs), ("torch", torch_runs)):
        try:
            got, versions[name] = make(x, w1, w2, device)
        except ImportError as exc:
            if name == "gpuad":
                raise
            print(f"{name} skipped: not installed ({exc.name})")
            continue
        for label, go in got.items():
            np.testing.assert_allclose(go(), want, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{label} computed a wrong Jacobian")
            runs[label] = go
    samples = {k: [] for k in runs}
    for go in runs.values():
        for _ in range(3):
            go()
    for _ in range(rounds):
        for label, go in runs.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                go()
            samples[label].append((time.perf_counter() - t0) / reps * 1e3)
    return versions, samples


def _paired(samples, a, b):
    return statistics.median(x / y for x, y in zip(samples[a], samples[b]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    versions, samples = measure(args.n, args.m, args.hidden, args.device, args.rounds,
                                args.reps)
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {"gpuad_forward / gpuad_reverse": _paired(samples, "gpuad_forward",
                                                       "gpuad_reverse")}
    for ours, theirs in (("gpuad_forward", "torch_jacfwd"), ("gpuad_reverse", "torch_jacrev")):
        if theirs in samples:
            ratios[f"{ours} / {theirs}"] = _paired(samples, ours, theirs)
    print(f"jacobian of R^{args.n} -> R^{args.m} (hidden {args.hidden}), float64, "
          f"{args.device}; n/m = {args.n / args.m:.4f}")
    for label, ms in med.items():
        print(f"{label:14s} {ms:9.3f} ms  (min {min(samples[label]):.3f})")
    for label, r in ratios.items():
        print(f"{label:32s} {r:7.3f}")
    if args.json:
        result = {
            "benchmark": "jacobian",
            "problem": {"n": args.n, "m": args.m, "hidden": args.hidden, "dtype": "float64",
                        "device": args.device},
            "machine": machine(),
            "versions": versions,
            "ms_median": med,
            "ms_min": {k: min(v) for k, v in samples.items()},
            "ratios": ratios,
            "rounds": args.rounds,
            "reps_per_round": args.reps,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
