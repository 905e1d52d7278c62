"""gpuad, written the way its README shows: tensors with requires_grad, nn.Linear and optim."""
import numpy as np

from .. import reference as ref
from . import Unavailable

ad = None
_device = "cpu"


def load(device, threads):
    global ad, _device
    import gpuad

    ad, _device = gpuad, device
    gpuad.set_num_threads(threads)
    if device == "cuda" and not gpuad.cuda.is_available():
        from gpuad.backends.probe import cuda_unavailable_reason

        raise Unavailable(f"no usable GPU: {cuda_unavailable_reason(0)}")
    return gpuad.__version__


def sync(out):
    if _device == "cuda":
        ad.cuda.synchronize()


def array_to_numpy(a):
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def chain(shape, n_ops, device, operands="scalar"):
    """The chain's step; with ``operands="tensor"`` its 0.9 and 0.1 are constant tensors."""
    x = ad.tensor(ref.chain_input(shape), device=device, requires_grad=True)
    a, b = (0.9, 0.1) if operands == "scalar" else (
        ad.tensor(c, device=device) for c in ref.chain_constants(shape))

    def step():
        y = x
        for _ in range(n_ops // ref.CHAIN_BLOCK):
            y = (y * a + b).tanh().sin()
        y.sum().backward()
        g, x.grad = x.grad, None
        return g

    return step


def chain_anomaly(shape, n_ops, device):
    """The chain with the anomaly mode on for the whole step (forward lines noted, every
    derivative rule's result checked for nan/inf)."""
    step = chain(shape, n_ops, device)

    def anomalous():
        with ad.autograd.detect_anomaly():
            return step()

    return anomalous


def mlp(sizes, batch, optimizer, device):
    weights, x, labels = ref.mlp_problem(sizes, batch)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(ad.nn.Linear(sizes[i], sizes[i + 1]))
        layers.append(ad.nn.ReLU())
    model = ad.nn.Sequential(*layers[:-1])
    model.load_state_dict({k: ad.tensor(w) for k, w in zip(model.state_dict(), weights)})
    model.to(device)
    params = list(model.parameters())
    if optimizer == "sgd":
        opt = ad.optim.SGD(params, lr=ref.SGD_LR)
    else:
        opt = ad.optim.Adam(params, lr=ref.ADAM["lr"], betas=(ref.ADAM["b1"], ref.ADAM["b2"]),
                            eps=ref.ADAM["eps"])
    xt = ad.tensor(x, device=device)
    yt = ad.tensor(labels, device=device)
    cross_entropy = ad.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return [loss] + params

    return step


def chain_compiled(shape, n_ops, device):
    """The chain step under ad.compile (traced twice, then replayed)."""
    return ad.compile(chain(shape, n_ops, device))


def mlp_compiled(sizes, batch, optimizer, device):
    """The MLP step under ad.compile."""
    return ad.compile(mlp(sizes, batch, optimizer, device))


def elementwise(n, device):
    x = ad.tensor(ref.elementwise_input(n), device=device, requires_grad=True)

    def step():
        loss = (ad.sigmoid(x) * ad.tanh(x)).sum()
        (g,) = ad.grad(loss, x)
        return [loss, g]

    return step


def second_order(n, device):
    x = ad.tensor(ref.second_order_input(n), device=device, requires_grad=True)

    def step():
        (g,) = ad.grad((ad.sin(x) ** 3).sum(), x, create_graph=True)
        (h,) = ad.grad(g.sum(), x)
        return h

    return step


def jacobian(n, m, hidden, mode, device):
    x, w1, w2 = (ad.tensor(a, device=device) for a in ref.jacobian_problem(n, m, hidden))

    def f(x):
        return w2 @ ad.tanh(w1 @ x) + ad.sin(x).sum()

    return lambda: ad.jacobian(f, x, mode=mode)
