"""Naive NumPy in float32: the forward pass and its derivative coded by hand, the same code as
the float64 references in ``benchmarks.reference`` (a temporary array for every operation,
Adam's moments rebuilt each step). What plain NumPy costs, not a lower bound: a cache-blocked
in-place version would be faster, so the report heads its column "naive NumPy". No automatic
differentiation, so no second-order or Jacobian suites."""
import numpy as np

from .. import reference as ref
from . import NotOffered, Unavailable

F32 = np.float32


def load(device, threads):
    if device != "cpu":
        raise Unavailable("NumPy runs on the CPU only")
    return np.__version__


def chain(shape, n_ops, device, operands="scalar"):
    if operands != "scalar":
        raise NotOffered("tensor operands: NumPy's chain multiplies by NumPy float32 scalars "
                         "already (nothing to wrap)")
    x = ref.chain_input(shape)
    return lambda: ref.chain_grad(x, n_ops, dtype=F32)


def elementwise(n, device):
    x = ref.elementwise_input(n)
    return lambda: list(ref.elementwise_loss_and_grad(x, dtype=F32))


def mlp(sizes, batch, optimizer, device):
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
