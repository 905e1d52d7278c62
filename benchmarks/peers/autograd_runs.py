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


def sync(out):
    pass


def to_numpy(out):
    if isinstance(out, (list, tuple)):
        return [to_numpy(o) for o in out]
    return np.asarray(out)


def build(suite, params, device):
    if suite in ("op_overhead", "scaling_chain"):
        return _chain(params["shape"], params["n_ops"])
    if suite in ("mlp_step", "scaling_mlp_batch", "scaling_mlp_width"):
        return _mlp(params["sizes"], params["batch"], params["optimizer"])
    if suite == "big_elementwise":
        x = ref.elementwise_input(params["n"])
        f = autograd.value_and_grad(lambda x: anp.sum(
            1 / (1 + anp.exp(-x)) * anp.tanh(x)))
        return lambda: list(f(x))
    if suite == "second_order":
        x = ref.second_order_input(params["n"])
        g = autograd.grad(lambda x: anp.sum(anp.sin(x) ** 3))
        h = autograd.grad(lambda x: anp.sum(g(x)))
        return lambda: h(x)
    if suite == "jacobian" and params["mode"] == "reverse":
        x, w1, w2 = ref.jacobian_problem(params["n"], params["m"], params["hidden"])
        jf = autograd.jacobian(lambda x: anp.dot(w2, anp.tanh(anp.dot(w1, x)))
                               + anp.sum(anp.sin(x)))
        return lambda: jf(x)
    raise NotOffered(f"{suite} {params.get('mode', '')}".strip())


def _chain(shape, n_ops):
    x = ref.chain_input(shape)

    def f(y):
        for _ in range(n_ops // ref.CHAIN_BLOCK):
            y = anp.sin(anp.tanh(y * 0.9 + 0.1))
        return anp.sum(y)

    g = autograd.grad(f)
    return lambda: g(x)


def _mlp(sizes, batch, optimizer):
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
