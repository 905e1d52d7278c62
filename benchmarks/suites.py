"""The suites: their cases (full and --quick sizes), the unit each reports in, and the check
of a framework's first result against the float64 NumPy reference.

A case's ``per_step`` turns seconds per step into its unit (µs per op for op_overhead: a step is
the whole 100-op chain forward and backward). op_overhead's chain multiplies and adds Python
numbers (``y * 0.9 + 0.1``), which some frameworks wrap into a tensor at every op; its
``tensor operands`` case (``operands="tensor"``, passed to the peers' ``chain``) uses constant
tensors of the framework made once, outside the step. ``x`` is the case's position on a scaling
curve. A case with a ``variant`` (op_overhead's ``anomaly``) runs each framework's step in that
mode, and times the framework's plain step in the same rounds, for the cost of the mode.
"""
from dataclasses import dataclass, field

import numpy as np

from . import reference as ref
from .peers import BUILDERS

FRAMEWORKS = ("gpuad", "torch", "torch_graph", "jax", "jax_jit", "autograd", "numpy")
BASELINE = "torch"  # ratios are gpuad / torch
CPU_ONLY = {"autograd", "numpy"}
MLP = [784, 256, 256, 10]


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    params: dict
    unit: str
    per_step: float  # unit per second of one step
    x: float = None
    extra: dict = field(default_factory=dict)  # derived figures, e.g. bytes per step for GB/s
    variant: str = None  # a mode the step runs in (peers' builder ``<builder>_<variant>``)

    @property
    def key(self):
        return f"{self.suite}/{self.name}"


#: a variant's target: at most this many times the framework's plain step
VARIANT_TARGETS = {"anomaly": 2.0}
#: the compiled suites' targets: gpuad compiled at most this many times PyTorch eager
COMPILED_TARGETS = {"compiled_chain": 1 / 3, "compiled_mlp_step": 0.9}
#: a compiled suite's target in its own unit too (the chain: at most this many µs per op)
COMPILED_UNIT_TARGETS = {"compiled_chain": 1.5}
#: a case's target when it is not "at least as fast as PyTorch": at most this × torch
CASE_TARGETS = {("op_overhead", "chain100 tensor operands"): 0.8}
#: the one case of each compiled suite whose target is a requirement (the others are reported)
COMPILED_TARGET_CASES = {"compiled_chain": "chain100",
                         "compiled_mlp_step": "784-256-256-10 b128"}
#: the demo's MLP
DEMO_MLP = [64, 128, 128, 10]
#: data_parallel's target: the all-reduce of the MLP's flat gradient buffer through gpuad (a DDP
#: bucket reduced in place) at least this × the speed of a bare mpi4py Allreduce of its bytes
DATA_PARALLEL_TARGET = 0.9


def _op_overhead(quick, device):
    params = {"shape": [4, 4], "n_ops": 100}
    return [Case("op_overhead", "chain100", params, "us/op", 1e6 / 100),
            Case("op_overhead", "chain100 tensor operands", {**params, "operands": "tensor"},
                 "us/op", 1e6 / 100),
            Case("op_overhead", "chain100 anomaly", params, "us/op", 1e6 / 100,
                 variant="anomaly")]


def _mlp_step(quick, device):
    cases = [Case("mlp_step", opt, {"sizes": MLP, "batch": 128, "optimizer": opt}, "ms/step",
                  1e3) for opt in ("sgd", "adam")]
    if device == "cuda":  # the wide variant, for the GPU
        cases += [Case("mlp_step", f"{opt}_wide", {"sizes": [784, 1024, 1024, 10], "batch": 512,
                                                    "optimizer": opt}, "ms/step", 1e3)
                  for opt in ("sgd", "adam")]
    return cases


def _compiled_chain(quick, device):
    params = {"shape": [4, 4], "n_ops": 100}
    return [Case("compiled_chain", "chain100", params, "us/op", 1e6 / 100, variant="compiled")]


def _compiled_mlp_step(quick, device):
    shapes = {"784-256-256-10": MLP, "64-128-128-10": DEMO_MLP}
    batches = [128] if quick else [32, 128, 1024]
    return [Case("compiled_mlp_step", f"{name} b{b}", {"sizes": sizes, "batch": b,
                                                        "optimizer": "sgd"}, "ms/step", 1e3,
                 variant="compiled")
            for name, sizes in shapes.items() for b in batches
            if not quick or name == "784-256-256-10"]


def _big_elementwise(quick, device):
    n = 10 ** 6 if quick else 10 ** 7
    # one float32 read of x and one write of its gradient: the least any implementation moves
    return [Case("big_elementwise", f"n={n:.0e}", {"n": n}, "ms", 1e3,
                 extra={"bytes_per_step": 8 * n})]


def _second_order(quick, device):
    return [Case("second_order", "sin3", {"n": 1000}, "ms", 1e3)]


def _jacobian(quick, device):
    m = 512 if quick else 4096
    return [Case("jacobian", f"{mode} R^8->R^{m}",
                 {"n": 8, "m": m, "hidden": 64, "mode": mode}, "ms", 1e3)
            for mode in ("forward", "reverse")]


SCALING_CHAIN_OPS = 20


def _scaling_chain(quick, device):
    sizes = [1, 10 ** 3, 10 ** 5] if quick else [10 ** k for k in range(8)]
    return [Case("scaling_chain", f"n={n}", {"shape": [n], "n_ops": SCALING_CHAIN_OPS},
                 "us/step", 1e6, x=n) for n in sizes]


def _scaling_mlp_batch(quick, device):
    batches = [32, 512] if quick else [32, 128, 512, 2048, 4096]
    return [Case("scaling_mlp_batch", f"batch={b}", {"sizes": MLP, "batch": b,
                                                     "optimizer": "sgd"}, "ms/step", 1e3, x=b)
            for b in batches]


def _scaling_mlp_width(quick, device):
    widths = [64, 256] if quick else [64, 256, 1024, 4096]
    return [Case("scaling_mlp_width", f"width={w}", {"sizes": [784, w, w, 10], "batch": 128,
                                                     "optimizer": "sgd"}, "ms/step", 1e3, x=w)
            for w in widths]


# suite -> (description, cases(quick, device)); import_time, data_parallel and kernels run
# outside the workers
SUITES = {
    "op_overhead": ("µs per op of a 100-op chain (y*0.9, +0.1, tanh, sin) on a 4x4 float32 "
                    "tensor, forward plus backward; with tensor operands, 0.9 and 0.1 are "
                    "4x4 constant tensors of the framework made once, not Python numbers; "
                    "the anomaly variant runs it in the "
                    "framework's anomaly mode (gpuad.autograd.detect_anomaly, "
                    "torch.autograd.detect_anomaly), its plain run timed in the same rounds",
                    _op_overhead),
    "mlp_step": ("one training step of a 784-256-256-10 ReLU MLP with softmax cross-entropy, "
                 "batch 128, float32 (and 784-1024-1024-10, batch 512, on CUDA)", _mlp_step),
    "compiled_chain": ("the op_overhead chain as one compiled step (ad.compile; torch.compile "
                       "on the CPU, mode='reduce-overhead' on CUDA; jax.jit), each framework's "
                       "eager step timed in the same rounds", _compiled_chain),
    "compiled_mlp_step": ("the SGD MLP step compiled (784-256-256-10 and the demo's "
                          "64-128-128-10, batch 32, 128 and 1024), each framework's eager "
                          "step timed in the same rounds", _compiled_mlp_step),
    "big_elementwise": ("sum(sigmoid(x) * tanh(x)) and its gradient on 10⁷ float32 values",
                        _big_elementwise),
    "second_order": ("d²/dx² of sum(sin(x)³) on 1,000 float64 values (grad of grad)",
                     _second_order),
    "jacobian": ("the Jacobian of R^8 -> R^4096, x ↦ W2 tanh(W1 x) + sum(sin x), float64, in "
                 "forward and in reverse mode", _jacobian),
    "import_time": ("seconds to import the framework in a fresh interpreter", None),
    "scaling_chain": (f"a {SCALING_CHAIN_OPS}-op chain forward plus backward against tensor "
                      "size", _scaling_chain),
    "scaling_mlp_batch": ("the SGD MLP step against batch size", _scaling_mlp_batch),
    "scaling_mlp_width": ("the SGD MLP step (784-w-w-10, batch 128) against width",
                          _scaling_mlp_width),
    "data_parallel": ("gpuad.nn.parallel.DistributedDataParallel under mpiexec: the SGD MLP "
                      "step (128 rows per rank) at 1, 2 and 4 ranks with its communication "
                      "share, and the all-reduce of its flat gradient buffer (and of 16 MiB) "
                      "through gpuad against a bare mpi4py Allreduce of the same bytes; with "
                      "--device cuda, through NCCL (see benchmarks/data_parallel.py)", None),
    "kernels": ("gpuad's CUDA kernels: bandwidth against a copy, fused cross-entropy against "
                "PyTorch (CUDA only)", None),
}
CPU_SUITES = [s for s in SUITES if s != "kernels"]
#: the version of the harness (a results file's "harness") that added a suite: a file written
#: by an earlier one has not run it (suites not named here: from the start)
ADDED = {"data_parallel": 3}
SCALING = [s for s in SUITES if s.startswith("scaling_")]
IMPORTS = {"gpuad": "gpuad", "torch": "torch", "jax": "jax", "autograd": "autograd",
           "numpy": "numpy"}


def cases(suite, quick, device):
    return SUITES[suite][1](quick, device)


def _close(name, got, want, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        raise AssertionError(f"{name}: shape {got.shape}, expected {np.shape(want)}")
    err = np.abs(got - want)
    bad = ~(err <= atol + rtol * np.abs(want))  # (nan is never close)
    if bad.any():
        i = np.unravel_index(np.argmax(err - rtol * np.abs(want)), err.shape) if err.ndim else ()
        raise AssertionError(f"{name}: {int(bad.sum())} of {err.size} values off, the worst "
                             f"{float(got[i])} against {float(np.asarray(want)[i])}")
    return float(err.max()) if err.size else 0.0  # (finite: every value passed)


def check(case, out):
    """Compare a framework's first result with the float64 reference; returns the largest
    absolute error, raises AssertionError naming what is wrong."""
    p = case.params
    kind = BUILDERS[case.suite]  # (the problem the case's step solves)
    if kind == "chain":
        x = ref.chain_input(p["shape"])
        return _close("gradient", out, ref.chain_grad(x, p["n_ops"]), 1e-4, 1e-5)
    if kind == "mlp":
        weights, x, labels = ref.mlp_problem(p["sizes"], p["batch"])
        loss, after = ref.mlp_first_step(weights, x, labels, p["optimizer"])
        errs = [_close("loss", out[0], loss, 1e-4, 1e-6)]
        # Adam's first step is lr * g / (|g| + eps): a float32 gradient near eps moves it by up
        # to lr, so its tolerance is a fraction of lr; SGD's follows the gradient's own error
        atol = 0.05 * ref.ADAM["lr"] if p["optimizer"] == "adam" else 1e-6
        for i, (got, want) in enumerate(zip(out[1:], after)):
            errs.append(_close(f"parameter {i} after one step", got, want, 1e-4, atol))
        return max(errs)
    if case.suite == "big_elementwise":
        loss, grad = ref.elementwise_loss_and_grad(ref.elementwise_input(p["n"]))
        return max(_close("loss", out[0], loss, 1e-4, 0),
                   _close("gradient", out[1], grad, 1e-5, 1e-6))
    if case.suite == "second_order":
        x = ref.second_order_input(p["n"])
        return _close("second derivative", out, ref.sin_cubed_second(x), 1e-10, 1e-12)
    if case.suite == "jacobian":
        x, w1, w2 = ref.jacobian_problem(p["n"], p["m"], p["hidden"])
        return _close("Jacobian", out, ref.jacobian(x, w1, w2), 1e-10, 1e-12)
    raise KeyError(case.suite)
