"""PyTorch eager, as its tutorials write it: nn.Linear, torch.optim, torch.autograd.grad,
torch.func for Jacobians."""
from .. import reference as ref
from . import Unavailable

torch = None
_device = "cpu"

def load(device, threads):
    global torch, _device
    import warnings

    import torch as _torch

    warnings.simplefilter("ignore", DeprecationWarning)  # (torch.func's own imports)
    import torch.func  # noqa: F401

    torch = _torch
    torch.set_num_threads(threads)
    _device = device
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("this PyTorch build sees no GPU")
    return torch.__version__

def sync(out):
    if _device == "cuda":
        torch.cuda.synchronize()

def array_to_numpy(a):
    return a.detach().cpu().numpy()


def chain(shape, n_ops, device, operands="scalar"):
    """The chain's step; with ``operands="tensor"`` its 0.9 and 0.1 are constant tensors."""
    x = torch.tensor(ref.chain_input(shape), device=device, requires_grad=True)
    a, b = (0.9, 0.1) if operands == "scalar" else (
        torch.tensor(c, device=device) for c in ref.chain_constants(shape))

    def step():
        y = x
        for _ in range(n_ops // ref.CHAIN_BLOCK):
            y = (y * a + b).tanh().sin()
        y.sum().backward()
        g, x.grad = x.grad, None
        return g

    return step

def _compiled(step, device):
    """torch.compile: its default mode on the CPU, CUDA graphs ("reduce-overhead") on CUDA."""
    return torch.compile(step, mode="reduce-overhead" if device == "cuda" else None)


def chain_compiled(shape, n_ops, device):
    return _compiled(chain(shape, n_ops, device), device)


def mlp_compiled(sizes, batch, optimizer, device):
    return _compiled(mlp(sizes, batch, optimizer, device), device)


def chain_anomaly(shape, n_ops, device):
    """The chain under torch.autograd.detect_anomaly (forward tracebacks kept, every backward
    function's output checked for nan)."""
    import warnings

    warnings.filterwarnings("ignore", "Anomaly Detection has been enabled")
    step = chain(shape, n_ops, device)

    def anomalous():
        with torch.autograd.detect_anomaly():
            return step()

    return anomalous

def mlp(sizes, batch, optimizer, device):
    weights, x, labels = ref.mlp_problem(sizes, batch)
    layers = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    model.load_state_dict({k: torch.from_numpy(w) for k, w in zip(model.state_dict(), weights)})
    model.to(device)
    params = list(model.parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=ref.SGD_LR)
    else:
        opt = torch.optim.Adam(params, lr=ref.ADAM["lr"],
                               betas=(ref.ADAM["b1"], ref.ADAM["b2"]), eps=ref.ADAM["eps"])
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(labels).to(device)
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss = cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return [loss] + params

    return step

def elementwise(n, device):
    x = torch.tensor(ref.elementwise_input(n), device=device, requires_grad=True)

    def step():
        loss = (torch.sigmoid(x) * torch.tanh(x)).sum()
        (g,) = torch.autograd.grad(loss, x)
        return [loss, g]

    return step

def second_order(n, device):
    x = torch.tensor(ref.second_order_input(n), device=device, requires_grad=True)

    def step():
        (g,) = torch.autograd.grad((torch.sin(x) ** 3).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), x)
        return h

    return step

def jacobian(n, m, hidden, mode, device):
    x, w1, w2 = (torch.tensor(a, device=device) for a in ref.jacobian_problem(n, m, hidden))

    def f(x):
        return w2 @ torch.tanh(w1 @ x) + torch.sin(x).sum()

    transform = torch.func.jacfwd if mode == "forward" else torch.func.jacrev
    jf = transform(f)
    return lambda: jf(x)
