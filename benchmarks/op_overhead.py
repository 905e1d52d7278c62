"""Per-op overhead: a chain of 100 tiny ops on a 4x4 float32 tensor, forward plus backward.

The chain is 25 repetitions of (x * 0.9, + 0.1, tanh, sin), then a sum. Every framework that
is installed (gpuad in PyTorch style, gpuad with a GradientTape, PyTorch, HIPS autograd) runs
the same chain in the same process, in interleaved rounds, so machine noise hits them alike.
Reports the median microseconds per op, and for each peer the median over rounds of the
per-round ratio gpuad / peer (a paired comparison, robust to the machine speeding up or
slowing down between rounds); for the tape variant, its ratio to PyTorch.

    python -m benchmarks.op_overhead [--rounds 15] [--reps 200] [--json out.json]
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

N_OPS = 100


def gpuad_step():
    import gpuad as ad

    x = ad.tensor(np.random.default_rng(0).random((4, 4), dtype=np.float32),
                  device="cpu", requires_grad=True)

    def step():
        y = x
        for _ in range(N_OPS // 4):
            y = (y * 0.9 + 0.1).tanh().sin()
        y.sum().backward()
        x.grad = None

    return step, ad.__version__


def gpuad_tape_step():
    """The same chain, TensorFlow style: a Variable, a GradientTape and tape.gradient."""
    import gpuad as ad

    v = ad.Variable(np.random.default_rng(0).random((4, 4), dtype=np.float32), device="cpu")

    def step():
        with ad.GradientTape() as tape:
            y = v
            for _ in range(N_OPS // 4):
                y = (y * 0.9 + 0.1).tanh().sin()
            s = y.sum()
        tape.gradient(s, v)

    return step, ad.__version__


def torch_step():
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    x = torch.tensor(np.random.default_rng(0).random((4, 4), dtype=np.float32),
                     requires_grad=True)

    def step():
        y = x
        for _ in range(N_OPS // 4):
            y = (y * 0.9 + 0.1).tanh().sin()
        y.sum().backward()
        x.grad = None

    return step, torch.__version__


def autograd_step():
    import autograd
    import autograd.numpy as anp

    x = np.random.default_rng(0).random((4, 4), dtype=np.float32)

    def f(y):
        for _ in range(N_OPS // 4):
            y = anp.sin(anp.tanh(y * 0.9 + 0.1))
        return anp.sum(y)

    g = autograd.grad(f)

    def step():
        g(x)

    from importlib.metadata import version

    return step, version("autograd")


FRAMEWORKS = {"gpuad": gpuad_step, "gpuad_tape": gpuad_tape_step, "torch": torch_step,
              "autograd": autograd_step}


def measure(rounds, reps):
    steps, versions, samples = {}, {}, {}
    for name, make in FRAMEWORKS.items():
        try:
            steps[name], versions[name] = make()
        except ImportError as exc:
            if name == "gpuad":
                raise
            print(f"{name:9s} skipped: not installed ({exc.name})")
            continue
        samples[name] = []
        for _ in range(20):  # warm-up
            steps[name]()
    for _ in range(rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                step()
            samples[name].append((time.perf_counter() - t0) / reps / N_OPS * 1e6)
    return versions, samples


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    versions, samples = measure(args.rounds, args.reps)
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {k: statistics.median(g / p for g, p in zip(samples["gpuad"], v))
              for k, v in samples.items() if k != "gpuad"}
    over_torch = {k: statistics.median(a / t for a, t in zip(v, samples["torch"]))
                  for k, v in samples.items() if k != "torch" and "torch" in samples}
    print(f"chain of {N_OPS} ops on a 4x4 float32 tensor, forward + backward, cpu")
    for name, us in med.items():
        ratio = "" if name == "gpuad" else f"   gpuad / {name} = {ratios[name]:.2f}"
        if name == "gpuad_tape" and name in over_torch:
            ratio = f"   {name} / torch = {over_torch[name]:.2f}"
        print(f"{name:10s} {versions[name]:>10s}  {us:7.2f} us/op "
              f"(min {min(samples[name]):.2f}){ratio}")
    if args.json:
        result = {
            "benchmark": "op_overhead",
            "machine": machine(),
            "versions": versions,
            "us_per_op_median": med,
            "us_per_op_min": {k: min(v) for k, v in samples.items()},
            "ratio_gpuad_over": ratios,
            "ratio_over_torch": over_torch,
            "rounds": args.rounds,
            "reps_per_round": args.reps,
        }
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def machine():
    """The machine a result was measured on (for the JSON files)."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "torch_threads": int(os.environ.get("BENCH_THREADS", "2"))}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
