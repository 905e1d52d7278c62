"""Hand-written NumPy in float32: the forward pass and its derivative coded by hand (the same
code as the float64 references in ``benchmarks.reference``), the floor an autodiff library's
bookkeeping is measured against. No automatic differentiation, so no second-order or
Jacobian suites."""
import numpy as np

from .. import reference as ref
from . import NotOffered, Unavailable

F32 = np.float32


def load(device, threads):
    if device != "cpu":
        raise Unavailable("NumPy runs on the CPU only")
    return np.__version__


def sync(out):
    pass


def to_numpy(out):
    if isinstance(out, (list, tuple)):
        return [to_numpy(o) for o in out]
    return np.asarray(out)


def build(suite, params, device):
    if suite in ("op_overhead", "scaling_chain"):
        x = ref.chain_input(params["shape"])
        return lambda: ref.chain_grad(x, params["n_ops"], dtype=F32)
    if suite in ("mlp_step", "scaling_mlp_batch", "scaling_mlp_width"):
        return _mlp(params["sizes"], params["batch"], params["optimizer"])
    if suite == "big_elementwise":
        x = ref.elementwise_input(params["n"])
        return lambda: list(ref.elementwise_loss_and_grad(x, dtype=F32))
    raise NotOffered(f"{suite}: hand-written NumPy has no automatic differentiation")


def _mlp(sizes, batch, optimizer):
    params, x, labels = ref.mlp_problem(sizes, batch)
    box = {"params": params, "t": 0,
           "state": [(np.zeros_like(p), np.zeros_like(p)) for p in params]}

    def step():
        loss, grads = ref.mlp_loss_and_grads(box["params"], x, labels, dtype=F32)
        if optimizer == "sgd":
            box["params"] = ref.sgd_update(box["params"], grads)
        else:
            box["t"] += 1
            box["params"] = ref.adam_update(box["params"], grads, box["state"], box["t"])
        return [loss] + box["params"]

    return step
