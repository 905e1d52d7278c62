"""ad.compile on the CPU: a traced step replays to the same bits as the eager step, and every
guard (host reads, replaced parameters, new signatures, changed modules, values that steer
the computation) ends in a clear error, a warning, or a new trace; never a stale replay."""
import warnings

import numpy as np
import pytest

import gpuad as ad
from gpuad.capture import CompileError, CompileWarning

pytestmark = pytest.mark.usefixtures("cpu_default")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((200, 32, 64)).astype(np.float32)
Y = np.argmax(X @ RNG.standard_normal((64, 10)), axis=-1)  # (labels a model can learn)


def _demo_step(optimizer, dropout):
    """The demo's 64-128-128-10 MLP (with Dropout after the first layer, if asked) and its
    training step: forward, cross-entropy, zero_grad, backward, optimizer step."""
    ad.manual_seed(0)
    nn = ad.nn
    layers = [nn.Linear(64, 128), nn.ReLU(), *([nn.Dropout(0.2)] if dropout else []),
              nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)]
    model = nn.Sequential(*layers)
    opt = (ad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
           else ad.optim.Adam(model.parameters(), lr=1e-3))

    def step(x, y):
        loss = ad.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return model, step


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_200_compiled_training_steps_give_the_eager_bits(optimizer, dropout):
    runs = []
    for compiled in (False, True):
        model, step = _demo_step(optimizer, dropout)
        if compiled:
            step = ad.compile(step)
        losses = [step(ad.tensor(X[i]), ad.tensor(Y[i])).numpy() for i in range(200)]
        runs.append(([p.numpy() for p in model.parameters()], losses,
                     [p.grad.numpy() for p in model.parameters()]))
    assert (step.traces, step.replays, step.eager_calls) == (1, 199, 0)
    (params, losses, grads), (cparams, closses, cgrads) = runs
    for a, b in zip(params + grads, cparams + cgrads):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(losses, closses)
    assert np.mean(losses[-20:]) < 0.8 * np.mean(losses[:20])


def test_the_chain_of_100_ops_replays_values_and_gradients():
    w = ad.tensor(RNG.standard_normal((4, 4)).astype(np.float32), requires_grad=True)

    def chain(x):
        y = x * w
        for _ in range(25):
            y = ad.sin(ad.tanh(y * 0.9 + 0.1))
        (g,) = ad.grad(y.sum(), w)
        return y, g

    compiled = ad.compile(chain)
    for i in range(5):
        x = ad.tensor(RNG.standard_normal((4, 4)).astype(np.float32) + i)
        (y, g), (cy, cg) = chain(x), compiled(x)
        np.testing.assert_array_equal(y.numpy(), cy.numpy())
        np.testing.assert_array_equal(g.numpy(), cg.numpy())
        assert not cy.requires_grad
    assert compiled.replays == 4


def test_outputs_are_static_buffers_unless_copied():
    w = ad.tensor([1.0, 2.0])
    for copy in (False, True):
        f = ad.compile(lambda x: x * w, copy_outputs=copy)
        outs = [f(ad.tensor([float(i), 1.0])) for i in range(4)]
        assert outs[3].numpy().tolist() == [3.0, 2.0]
        # a replay writes into the buffer the previous replay returned, unless copied
        assert outs[2].numpy().tolist() == ([2.0, 2.0] if copy else [3.0, 2.0])


def test_dropout_draws_new_masks_on_each_replay_and_the_eager_ones_under_a_seed():
    drop = ad.nn.Dropout(0.5)
    x = ad.ones(64)

    def masks(f):
        ad.manual_seed(3)
        return [f(x).numpy() for _ in range(6)]

    eager, compiled = masks(drop), masks(ad.compile(lambda t: drop(t), copy_outputs=True))
    for a, b in zip(eager, compiled):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(compiled[4], compiled[5])  # (two replays, two masks)
    assert set(np.unique(compiled[5])) == {0.0, 2.0}


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: float(t), lambda t: t.numpy(), lambda t: bool(t > 0),
    lambda t: print(t), lambda t: t.tolist()], ids=["item", "float", "numpy", "if", "print",
                                                    "tolist"])
def test_a_host_read_is_refused_naming_the_users_line(read, capsys):
    def step(x):
        loss = (x * 2).sum()
        read(loss)
        return loss

    f = ad.compile(step)
    with pytest.raises(CompileError, match=r"reads a tensor's values on the host .* at "
                                           r".*test_compile\.py:\d+"):
        f(ad.tensor([1.0, 2.0]))


def test_fallback_eager_runs_such_a_function_eagerly_after_one_warning():
    seen = []
    f = ad.compile(lambda x: seen.append((x * 2).sum().item()) or x * 3, fallback="eager")
    with pytest.warns(CompileWarning, match=r"runs eagerly: .*\.item\(\)"):
        f(ad.tensor([1.0, 2.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = f(ad.tensor([2.0, 2.0]))
    assert seen == [6.0, 8.0] and out.numpy().tolist() == [6.0, 6.0]
    assert (f.traces, f.eager_calls) == (1, 1)


def test_a_replaced_parameter_is_noticed_and_traced_again():
    lin = ad.nn.Linear(3, 2)
    f = ad.compile(lambda x: lin(x))
    x = ad.ones((1, 3))
    for _ in range(3):
        f(x)
    lin.weight = ad.nn.Parameter(ad.zeros((2, 3)))  # a new tensor, not an in-place update
    np.testing.assert_array_equal(f(x).numpy(), lin(x).detach().numpy())
    assert f.traces == 2


def test_new_data_under_a_kept_tensor_is_noticed():
    w = ad.tensor([1.0, 2.0], requires_grad=True)
    f = ad.compile(lambda x: (x * w).sum())
    for _ in range(3):
        f(ad.ones(2))
    w._a = np.array([5.0, 5.0], np.float32)  # (what a data swap does underneath)
    with pytest.warns(CompileWarning, match="given new data"):
        assert f(ad.ones(2)).item() == 10.0


def test_shapes_trace_again_and_a_bound_on_signatures_warns():
    f = ad.compile(lambda x: x * 2, max_cache=2)
    for n in (1, 2, 1, 2):
        assert f(ad.ones(n)).numpy().tolist() == [2.0] * n
    assert (f.traces, f.replays) == (2, 2)
    with pytest.warns(CompileWarning, match="more than max_cache=2"):
        f(ad.ones(3))


def test_train_and_eval_modes_each_have_their_program():
    model = ad.nn.Sequential(ad.nn.Dropout(0.5))
    f = ad.compile(lambda x: model(x))
    x = ad.ones(1000)
    for _ in range(3):
        assert (f(x).numpy() == 0).any()
    model.eval()
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), np.ones(1000))
    model.train()
    assert (f(x).numpy() == 0).any()
    # one program per mode: back in training, the first program replays again
    assert (f.traces, f.replays) == (2, 5)


def test_gradients_land_in_grad_as_eager_with_zero_grad_outside():
    runs = []
    for compiled in (False, True):
        w = ad.tensor([1.0, -2.0, 3.0], requires_grad=True)

        def backward(x, w=w):
            (ad.tanh(w * x) ** 2).sum().backward()

        f = ad.compile(backward) if compiled else backward
        grads = []
        for i in range(5):
            w.grad = None
            f(ad.tensor([0.5, float(i), -1.0]))
            grads.append(w.grad.numpy())
        runs.append(grads)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_replay_writes_each_grad_where_its_rule_does_as_eager_adopts_it():
    """Eager backward adopts a rule's fresh result (a weight's transposed gradient too) as
    .grad; the trace must as well, or each replay would copy every gradient once more."""
    model, step = _demo_step("sgd", dropout=False)
    step = ad.compile(step)
    for i in range(3):
        step(ad.tensor(X[i]), ad.tensor(Y[i]))
    (entry,) = step._entries.values()
    (program,) = entry.programs
    grads = [p.grad._a for p in model.parameters()]
    copies = [args[0] for fn, args, _ in program.steps if fn is np.copyto]
    assert not [g.shape for g in grads if any(np.shares_memory(g, c) for c in copies)]
    written = [a for _, args, _ in program.steps for a in args if isinstance(a, np.ndarray)]
    assert all(any(np.shares_memory(g, w) for w in written) for g in grads)


def test_accumulating_gradients_across_calls_stays_right():
    """Without zero_grad, each call adds to .grad: what a replay cannot do, it traces again
    (and in the end runs eagerly), never replaying a stale .grad."""
    runs = []
    for compiled in (False, True):
        w = ad.tensor([1.0, 2.0], requires_grad=True)
        f = (lambda x, w=w: (w * x).sum().backward())
        f = ad.compile(f) if compiled else f
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CompileWarning)
            for i in range(8):
                f(ad.tensor([1.0, float(i)]))
        runs.append(w.grad.numpy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_value_that_steers_gpuad_is_a_guard_and_a_change_runs_eagerly():
    """arctan's derivative takes another form where x^2 overflows: when a replay meets such
    values, it stops before touching anything and the call runs eagerly."""
    w = ad.tensor([1.0, 1.0], requires_grad=True)

    def step(x):
        (g,) = ad.grad(ad.arctan(w * x).sum(), w)
        return g

    f = ad.compile(step, copy_outputs=True)
    xs = [ad.tensor([2.0, 3.0]), ad.tensor([1.0, 4.0]), ad.tensor([5.0, 1.0]),
          ad.tensor([1e30, 1.0]), ad.tensor([2.0, 2.0])]
    for x in xs:
        np.testing.assert_array_equal(f(x).numpy(), step(x).numpy())
    assert (f.replays, f.eager_calls) == (3, 1)


def test_arguments_and_results_in_structures():
    f = ad.compile(lambda pair, scale=2.0: {"sum": pair[0] + pair[1], "n": 2,
                                            "scaled": [pair[0] * scale]})
    for i in range(3):
        out = f((ad.tensor([1.0]), ad.tensor([float(i)])), scale=3.0)
        assert out["n"] == 2
        assert out["sum"].numpy().tolist() == [1.0 + i]
        assert out["scaled"][0].numpy().tolist() == [3.0]
    with pytest.raises(TypeError, match=r"an argument is a set"):
        f((ad.ones(1), ad.ones(1)), scale={1})


def test_bad_options_and_nesting_are_refused():
    with pytest.raises(ValueError, match="fallback is 'error' or 'eager'"):
        ad.compile(lambda x: x, fallback="ignore")
    with pytest.raises(ValueError, match="max_cache is a positive int"):
        ad.compile(lambda x: x, max_cache=0)
    with pytest.raises(TypeError, match="expected a function"):
        ad.compile(3)
    inner = ad.compile(lambda x: x + 1)
    outer = ad.compile(lambda x: inner(x) * 2)
    with pytest.raises(CompileError, match="while another compiled function traces"):
        outer(ad.ones(1))
    assert (inner(ad.ones(1)) * 1).numpy().tolist() == [2.0]  # (nothing left half-traced)


def test_numpy_work_on_a_tensors_raw_array_is_a_host_read():
    """``t.array`` hands user code the raw array, whose NumPy work no replay would repeat: it
    is refused as a host read naming the line, or run eagerly with fallback="eager"."""
    def f(x):
        return ad.as_tensor(np.ascontiguousarray(x.array.T)) * 2

    with pytest.raises(CompileError, match=r"\.array\) at .*test_compile\.py:\d+"):
        ad.compile(f)(ad.ones((3, 2)))
    compiled = ad.compile(f, fallback="eager")
    with pytest.warns(CompileWarning, match=r"runs eagerly: .*\.array"):
        for _ in range(4):
            x = ad.tensor(RNG.standard_normal((3, 2)).astype(np.float32))
            np.testing.assert_array_equal(compiled(x).numpy(), f(x).numpy())
    assert compiled.replays == 0


def test_a_constant_the_steps_write_into_starts_each_replay_afresh():
    def f(x):
        acc = ad.zeros(2)  # (made from nothing traced: a constant of the step)
        acc += x
        acc += x
        return acc

    compiled = ad.compile(f)
    for i in range(5):
        x = ad.tensor([1.0, float(i)])
        np.testing.assert_array_equal(compiled(x).numpy(), f(x).numpy())
    assert compiled.replays == 4


def test_gpuad_work_in_another_thread_during_a_trace_is_left_alone():
    import threading

    w = ad.tensor([1.0, 2.0])
    other = ad.tensor([3.0, 4.0], requires_grad=True)
    results = []

    def elsewhere():
        y = (other * 2).sum()
        y.backward()
        results.append((y.item(), other.grad.numpy().tolist()))

    def f(x):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        return x * w

    compiled = ad.compile(f)
    for i in range(4):
        other.grad = None
        assert compiled(ad.tensor([1.0, float(i)])).numpy().tolist() == [1.0, 2.0 * i]
    assert results == [(14.0, [2.0, 2.0])] and compiled.replays == 3


def test_importing_gpuad_makes_no_backend():
    """ad.compile's tracer finds the CPU backend when it traces, not at import (a backend
    brings its array libraries: import time)."""
    import subprocess
    import sys

    code = ("import sys, gpuad; "
            "assert 'gpuad.backends.numpy_backend' not in sys.modules, 'made at import'")
    subprocess.run([sys.executable, "-c", code], check=True)
