"""The problems every framework solves, and their float64 NumPy answers.

Each suite's inputs come from here, so every framework starts from the same numbers, and every
framework's first result is compared with these references before anything is timed. The
functions take a ``dtype`` so the hand-written NumPy peer can run the very same code in
float32.
"""
import numpy as np

CHAIN_BLOCK = 4  # ops per block of the chain: y * 0.9, + 0.1, tanh, sin


# --- op chains (op_overhead, scaling_chain) ----------------------------------------------
def chain_input(shape):
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def chain_constants(shape):
    """The chain's 0.9 and 0.1 as float32 arrays of the input's shape, for the case whose
    operands are tensors rather than Python numbers (each framework wraps them once)."""
    return np.full(shape, 0.9, np.float32), np.full(shape, 0.1, np.float32)


def chain_grad(x, n_ops, dtype=np.float64):
    """Gradient of sum(chain(x)), the chain being n_ops / 4 blocks of y -> sin(tanh(0.9 y + 0.1)):
    d sin(tanh(u)) / dy = cos(tanh u) (1 - tanh² u) 0.9."""
    y = np.asarray(x, dtype=dtype)
    saved = []
    for _ in range(n_ops // CHAIN_BLOCK):
        t = np.tanh(y * dtype(0.9) + dtype(0.1))
        saved.append(t)
        y = np.sin(t)
    g = np.ones_like(y)
    for t in reversed(saved):
        g = g * np.cos(t) * (1 - t * t) * dtype(0.9)
    return g


# --- the MLP training step (mlp_step, scaling_mlp_*) ---------------------------------------------
def mlp_problem(sizes, batch):
    """Float32 initial weights (PyTorch's Linear layout: W is (out, in)), a batch and labels."""
    rng = np.random.default_rng(0)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    labels = rng.integers(0, sizes[-1], batch)
    return params, x, labels


SGD_LR = 0.01
ADAM = {"lr": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}


def mlp_loss_and_grads(params, x, labels, dtype=np.float64):
    """Mean softmax cross-entropy of a ReLU MLP (ReLU between layers, not after the last) and
    its gradients, by hand: dlogits = (softmax - onehot) / batch; dW = dhᵀ a, db = Σ dh,
    da = dh W, and ReLU passes da where its input was positive."""
    params = [np.asarray(p, dtype=dtype) for p in params]
    acts, a = [], np.asarray(x, dtype=dtype)
    n_layers = len(params) // 2
    for i in range(n_layers):
        acts.append(a)
        z = a @ params[2 * i].T + params[2 * i + 1]
        a = np.maximum(z, 0) if i < n_layers - 1 else z
    z = a - a.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    loss = -logp[rows, labels].mean()
    d = np.exp(logp)
    d[rows, labels] -= 1
    d /= len(labels)
    grads = [None] * len(params)
    for i in reversed(range(n_layers)):
        grads[2 * i] = d.T @ acts[i]
        grads[2 * i + 1] = d.sum(axis=0)
        if i:
            d = (d @ params[2 * i]) * (acts[i] > 0)
    return loss, grads


def sgd_update(params, grads):
    return [p - SGD_LR * g for p, g in zip(params, grads)]


def adam_update(params, grads, state, step):
    """PyTorch's Adam (no weight decay), ``state`` a list of (m, v) updated in place."""
    b1, b2, lr, eps = ADAM["b1"], ADAM["b2"], ADAM["lr"], ADAM["eps"]
    out = []
    for i, (p, g) in enumerate(zip(params, grads)):
        m, v = state[i]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[i] = (m, v)
        out.append(p - lr * (m / (1 - b1 ** step)) / (np.sqrt(v / (1 - b2 ** step)) + eps))
    return out


def mlp_first_step(params, x, labels, optimizer):
    """The loss of the first step and the parameters after it, in float64."""
    loss, grads = mlp_loss_and_grads(params, x, labels)
    params = [p.astype(np.float64) for p in params]
    if optimizer == "sgd":
        return loss, sgd_update(params, grads)
    state = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    return loss, adam_update(params, grads, state, 1)


# --- big_elementwise ----------------------------------------------------------------------------
def elementwise_input(n):
    return np.random.default_rng(0).standard_normal(n).astype(np.float32)


def elementwise_loss_and_grad(x, dtype=np.float64):
    """sum(sigmoid(x) tanh(x)) and its gradient s (1 - s) t + s (1 - t²)."""
    x = np.asarray(x, dtype=dtype)
    s, t = 1 / (1 + np.exp(-x)), np.tanh(x)
    return (s * t).sum(), s * (1 - s) * t + s * (1 - t * t)


# --- second_order -------------------------------------------------------------------------------
def second_order_input(n):
    return np.random.default_rng(0).uniform(-3, 3, n)


def sin_cubed_second(x):
    """d²/dx² of sum(sin(x)³), elementwise: 6 sin x cos² x - 3 sin³ x."""
    s, c = np.sin(x), np.cos(x)
    return 6 * s * c * c - 3 * s ** 3


# --- jacobian -----------------------------------------------------------------------------------
def jacobian_problem(n, m, hidden):
    """x, W1 (hidden, n), W2 (m, hidden) for f(x) = W2 tanh(W1 x) + sum(sin x)."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(n), rng.standard_normal((hidden, n)) / np.sqrt(n),
            rng.standard_normal((m, hidden)) / np.sqrt(hidden))


def jacobian(x, w1, w2):
    """J = W2 diag(1 - tanh²(W1 x)) W1 + 1 cos(x)ᵀ."""
    h = np.tanh(w1 @ x)
    return (w2 * (1 - h * h)) @ w1 + np.cos(x)
