"""JAX, eager (each call dispatched op by op) or with the whole step under ``jax.jit``: grad,
value_and_grad, jacfwd/jacrev, and the optimizers' updates written with tree_map."""
import os

from .. import reference as ref
from . import Unavailable

jax = jnp = None
_jit = False
_put = None


def load(device, threads, jit=False):
    global jax, jnp, _jit, _put
    os.environ.setdefault("JAX_PLATFORMS", "cuda" if device == "cuda" else "cpu")
    import jax as _jax

    _jax.config.update("jax_enable_x64", True)  # float64 problems stay float64
    jax, jnp, _jit = _jax, _jax.numpy, jit
    try:
        target = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    except Exception as exc:  # (RuntimeError, or an assertion inside JAX's backend setup)
        raise Unavailable(f"JAX has no {device} backend ({type(exc).__name__}: {exc})") \
            from None
    _put = lambda a: jax.device_put(a, target)  # noqa: E731
    return jax.__version__ + (" (jit)" if jit else " (eager)")


def sync(out):
    jax.block_until_ready(out)


def _maybe_jit(f):
    return jax.jit(f) if _jit else f


def _jitted(build):
    """``build`` with the step under jax.jit whatever the framework's mode (the compiled
    variant)."""
    def make(**params):
        global _jit
        saved, _jit = _jit, True
        try:
            return build(**params)
        finally:
            _jit = saved
    return make


def chain(shape, n_ops, device, operands="scalar"):
    """The chain's gradient; with ``operands="tensor"`` its 0.9 and 0.1 are constant
    arrays on the device."""
    x = _put(ref.chain_input(shape))
    a, b = (0.9, 0.1) if operands == "scalar" else map(_put, ref.chain_constants(shape))

    def f(y):
        for _ in range(n_ops // ref.CHAIN_BLOCK):
            y = jnp.sin(jnp.tanh(y * a + b))
        return y.sum()

    g = _maybe_jit(jax.grad(f))
    return lambda: g(x)


def mlp(sizes, batch, optimizer, device):
    weights, x, labels = ref.mlp_problem(sizes, batch)
    params = [_put(w) for w in weights]
    xt, yt = _put(x), _put(labels)

    def loss_fn(params):
        a = xt
        for i in range(0, len(params), 2):
            a = a @ params[i].T + params[i + 1]
            if i + 2 < len(params):
                a = jax.nn.relu(a)
        logp = jax.nn.log_softmax(a)
        return -jnp.take_along_axis(logp, yt[:, None], axis=1).mean()

    value_and_grad = jax.value_and_grad(loss_fn)
    if optimizer == "sgd":
        def update(params, state):
            loss, grads = value_and_grad(params)
            return loss, [p - ref.SGD_LR * g for p, g in zip(params, grads)], state
        state = 0
    else:
        b1, b2, lr, eps = ref.ADAM["b1"], ref.ADAM["b2"], ref.ADAM["lr"], ref.ADAM["eps"]

        def update(params, state):
            loss, grads = value_and_grad(params)
            t, ms, vs = state
            t = t + 1
            ms = [b1 * m + (1 - b1) * g for m, g in zip(ms, grads)]
            vs = [b2 * v + (1 - b2) * g * g for v, g in zip(vs, grads)]
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            params = [p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps)
                      for p, m, v in zip(params, ms, vs)]
            return loss, params, (t, ms, vs)
        state = (jnp.float32(0), [jnp.zeros_like(p) for p in params],
                 [jnp.zeros_like(p) for p in params])
    update = _maybe_jit(update)
    box = {"params": params, "state": state}

    def step():
        loss, box["params"], box["state"] = update(box["params"], box["state"])
        return [loss] + box["params"]

    return step


def elementwise(n, device):
    x = _put(ref.elementwise_input(n))
    f = _maybe_jit(jax.value_and_grad(lambda x: (jax.nn.sigmoid(x) * jnp.tanh(x)).sum()))
    return lambda: list(f(x))


def second_order(n, device):
    x = _put(ref.second_order_input(n))
    g = jax.grad(lambda x: (jnp.sin(x) ** 3).sum())
    h = _maybe_jit(jax.grad(lambda x: g(x).sum()))
    return lambda: h(x)


def jacobian(n, m, hidden, mode, device):
    x, w1, w2 = (_put(a) for a in ref.jacobian_problem(n, m, hidden))
    transform = jax.jacfwd if mode == "forward" else jax.jacrev
    jf = _maybe_jit(transform(lambda x: w2 @ jnp.tanh(w1 @ x) + jnp.sin(x).sum()))
    return lambda: jf(x)


chain_compiled, mlp_compiled = _jitted(chain), _jitted(mlp)
