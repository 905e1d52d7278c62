"""HIPS autograd: autograd.grad / value_and_grad / jacobian over autograd.numpy, with the
optimizers' updates in NumPy. CPU only, and reverse mode only."""
import numpy as np

from .. import reference as ref
from . import NotOffered, Unavailable

autograd = anp = None


def load(device, threads):
    global autograd, anp
    from importlib.metadata import version

    import autograd as _autograd
    import autograd.numpy as _anp

    if device != "cpu":
        raise Unavailable("HIPS autograd runs on the CPU only")
    autograd, anp = _autograd, _anp
    return version("autograd")


def elementwise(n, device):
    x = ref.elementwise_input(n)
    f = autograd.value_and_grad(lambda x: anp.sum(1 / (1 + anp.exp(-x)) * anp.tanh(x)))
    return lambda: list(f(x))


def second_order(n, device):
    x = ref.second_order_input(n)
    g = autograd.grad(lambda x: anp.sum(anp.sin(x) ** 3))
    h = autograd.grad(lambda x: anp.sum(g(x)))
    return lambda: h(x)


def jacobian(n, m, hidden, mode, device):
    if mode != "reverse":
        raise NotOffered("jacobian: HIPS autograd has reverse mode only")
    x, w1, w2 = ref.jacobian_problem(n, m, hidden)
    jf = autograd.jacobian(lambda x: anp.dot(w2, anp.tanh(anp.dot(w1, x)))
                           + anp.sum(anp.sin(x)))
    return lambda: jf(x)


def chain(shape, n_ops, device, operands="scalar"):
    """The chain's gradient; with ``operands="tensor"`` its 0.9 and 0.1 are constant float32
    arrays."""
    x = ref.chain_input(shape)
    a, b = (0.9, 0.1) if operands == "scalar" else ref.chain_constants(shape)

    def f(y):
        for _ in range(n_ops // ref.CHAIN_BLOCK):
            y = anp.sin(anp.tanh(y * a + b))
        return anp.sum(y)

    g = autograd.grad(f)
    return lambda: g(x)


def mlp(sizes, batch, optimizer, device):
    params, x, labels = ref.mlp_problem(sizes, batch)
    rows = np.arange(batch)

    def loss_fn(params):
        a = x
        for i in range(0, len(params), 2):
            a = anp.dot(a, params[i].T) + params[i + 1]
            if i + 2 < len(params):
                a = anp.maximum(a, 0)
        z = a - anp.max(a, axis=1, keepdims=True)
        logp = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
        return -anp.mean(logp[rows, labels])

    value_and_grad = autograd.value_and_grad(loss_fn)
    box = {"params": params, "t": 0,
           "state": [(np.zeros_like(p), np.zeros_like(p)) for p in params]}

    def step():
        loss, grads = value_and_grad(box["params"])
        if optimizer == "sgd":
            box["params"] = ref.sgd_update(box["params"], grads)
        else:
            box["t"] += 1
            box["params"] = ref.adam_update(box["params"], grads, box["state"], box["t"])
        return [loss] + box["params"]

    return step
