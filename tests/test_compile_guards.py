"""ad.compile against what changes between calls, found by adversarial review: each case runs
a sequence of calls eagerly and compiled, and the two must give the same bits (or the same
error). What a replay cannot follow makes the call trace again or run eagerly."""
import threading
import warnings
from collections import namedtuple

import numpy as np
import pytest

import gpuad as ad
from gpuad.capture import CompileWarning
from gpuad.capture.swaps import DATA
from gpuad.tensor import Tensor

pytestmark = [pytest.mark.usefixtures("cpu_default"),
              pytest.mark.filterwarnings("ignore::gpuad.capture.CompileWarning")]


def both(make, calls):
    """``make()`` -> a step function; the results of ``calls(step)`` eagerly and compiled,
    each from ``ad.manual_seed(0)``, as lists of arrays."""
    out = []
    for compiled in (False, True):
        ad.manual_seed(0)
        step = make()
        f = ad.compile(step, copy_outputs=True) if compiled else step
        out.append([np.asarray(v.numpy() if isinstance(v, Tensor) else v, dtype=object
                               if v is None else None) for v in calls(f)])
        if compiled:
            out.append(f)
    eager, compiled, f = out
    for a, b in zip(eager, compiled):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return f


def _training(optimizer):
    w = ad.tensor([1.0, -2.0, 0.5], requires_grad=True)
    opt = optimizer([w])

    def step(x):
        opt.zero_grad()
        ((w * x).sum() ** 2).backward()
        opt.step()
        return w * 1

    return w, opt, step


@pytest.mark.parametrize("optimizer", [lambda p: ad.optim.SGD(p, lr=0.01, momentum=0.9),
                                       lambda p: ad.optim.Adam(p, lr=0.01)])
def test_an_optimizer_state_loaded_between_calls_is_used(optimizer, tmp_path):
    path = tmp_path / "opt.safetensors"

    def run(f_of):
        w, opt, step = _training(optimizer)
        f = f_of(step)
        out = [f(ad.tensor([1.0, float(i), 2.0])).numpy() for i in range(3)]
        saved = ad.load(ad.save(opt.state_dict(), path) or path)
        out += [f(ad.tensor([1.0, 2.0, float(i)])).numpy() for i in range(3)]
        opt.load_state_dict(saved)
        out += [f(ad.tensor([0.5, float(i), 1.0])).numpy() for i in range(3)]
        return out + [w.numpy()]

    eager, compiled = run(lambda s: s), run(ad.compile)
    for a, b in zip(eager, compiled):
        np.testing.assert_array_equal(a, b)


def test_a_frozen_parameter_stops_the_replay_as_it_stops_eager():
    for wrap in (lambda s: s, ad.compile):
        w, opt, step = _training(lambda p: ad.optim.SGD(p, lr=0.1))
        f = wrap(step)
        for i in range(3):
            f(ad.tensor([1.0, float(i), 2.0]))
        w.requires_grad_(False)
        with pytest.raises(RuntimeError, match="does not require grad"):
            f(ad.tensor([1.0, 1.0, 1.0]))


def test_data_that_changes_passed_as_arguments_gives_the_eager_bits():
    """(Tensors read from outside the arguments are fixed by identity once the function
    replays, as documented: data that changes from call to call is an argument.)"""
    def make():
        w = ad.tensor([1.0, 2.0])
        return lambda x: x * w

    both(make, lambda f: [f(ad.tensor([float(i), 1.0])) for i in range(6)])


def test_copies_and_shapes_taken_from_traced_values_are_followed():
    def make():
        return lambda x, n: (ad.tensor(x, dtype=ad.float64) * 2, ad.fill(n, 2.0))

    def calls(f):
        xs = [[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 5.0], [1.0, 1.0]]
        ns = [[3], [3], [3], [2], [4]]
        out = []
        for x, n in zip(xs, ns):
            a, b = f(ad.tensor(x), ad.tensor(n))
            out += [a, b]
        return out

    both(make, calls)


def test_signatures_tell_minus_zero_and_layouts_apart():
    both(lambda: (lambda x, s: 1 / (x * s)),
         lambda f: [f(ad.ones(2), s) for s in (0.0, 0.0, 0.0, -0.0, 0.0)])
    big = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    both(lambda: (lambda x: x.sum(axis=1)),
         lambda f: [f(ad.tensor(a)) for a in (big, big * 2, big.T, big.T * 2, big)])


def test_draws_stay_in_step_with_eager_when_a_replay_runs_eagerly():
    def make():
        return lambda x: (ad.rand(3), x[x > 0].sum())

    def calls(f):
        out = []
        for x in ([1.0, 2.0], [2.0, 3.0], [1.0, 1.0], [1.0, -1.0], [1.0, 2.0], [3.0, 3.0]):
            out += list(f(ad.tensor(x)))
        return out

    both(make, calls)


def test_a_seed_set_inside_the_function_is_replayed():
    f = both(lambda: (lambda x: x + ad.rand(4) if not ad.manual_seed(123) else None),
             lambda f: [f(ad.zeros(4)) for _ in range(5)])
    assert f.replays == 4


def test_anomaly_mode_turned_on_later_is_honoured():
    for wrap in (lambda s: s, ad.compile):
        w = ad.tensor([1.0, 4.0], requires_grad=True)
        f = wrap(lambda x, w=w: ad.grad(ad.sqrt(w * x).sum(), w)[0])
        for _ in range(3):
            f(ad.ones(2))
        with ad.autograd.detect_anomaly(), pytest.raises(RuntimeError, match="SqrtBackward"):
            f(ad.zeros(2))


def test_derivatives_of_a_compiled_function_are_taken_eagerly():
    f = ad.compile(lambda x: (ad.sin(x) * 2).sum())
    x = ad.tensor([0.5, 1.0])
    with pytest.warns(CompileWarning, match="carry gradients back"):
        _, tangent = ad.jvp(f, (x,), (ad.ones(2),))
    assert tangent.item() == pytest.approx(2 * (np.cos(0.5) + np.cos(1.0)))
    np.testing.assert_allclose(ad.jacobian(f, x).numpy(), 2 * np.cos([0.5, 1.0]), rtol=1e-6)
    with ad.GradientTape() as tape:
        v = ad.Variable([0.5, 1.0])
        y = f(v)
    np.testing.assert_allclose(tape.gradient(y, v).numpy(), 2 * np.cos([0.5, 1.0]), rtol=1e-6)


def test_in_place_changes_to_arguments_reach_the_caller():
    def calls(f):
        out = []
        for i in range(4):
            t = ad.tensor([1.0, float(i)])
            out += [f(t, t), t]
        return out

    both(lambda: (lambda x, y: x.mul_(2) + y), calls)
    both(lambda: (lambda x: x.add_(1) * 1), lambda f: [
        v for i in range(4) for t in [ad.tensor([float(i)])] for v in (f(t), t)])


def test_a_course_decided_after_the_update_runs_eagerly():
    def make():
        w = ad.tensor([1.0, 2.0], requires_grad=True)
        opt = ad.optim.SGD([w], lr=0.1)

        def step(x):
            opt.zero_grad()
            (w * x).sum().backward()
            opt.step()
            return ad.std(x, axis=1), w * 1

        return step

    rows = [[[1.0, 2.0]], [[2.0, 5.0]], [[3.0, 1.0]], [[4.0, 4.0]], [[1.0, 0.0]]]
    both(make, lambda f: [v for r in rows for v in f(ad.tensor(r))])


def test_grads_zeroed_in_place_replay():
    w, opt, _ = _training(lambda p: ad.optim.SGD(p, lr=0.01))

    def step(x):
        opt.zero_grad(set_to_none=False)
        ((w * x).sum() ** 2).backward()
        opt.step()

    f = ad.compile(step)
    for i in range(5):
        f(ad.tensor([1.0, float(i), 2.0]))
    assert f.replays == 3  # (the first call makes .grad, the later ones zero it in place)


def test_threads_each_with_its_own_compiled_function_and_one_shared():
    w = ad.tensor([1.0, 2.0], requires_grad=True)
    errors, results = [], {}

    def worker(k, f):
        try:
            for i in range(20):
                x = ad.tensor([float(k), float(i)])
                results.setdefault(k, []).append((f(x).numpy().tolist(),
                                                  (x * w).sum().item()))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    shared = ad.compile(lambda x: (x * w).sum() * 1)
    threads = [threading.Thread(target=worker, args=(k, f)) for k, f in enumerate(
        [ad.compile(lambda x: (x * w).sum() * 1) for _ in range(3)] + [shared, shared])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(got == want for rs in results.values() for got, want in rs)
    assert type(DATA.__get__(w)) is np.ndarray and Tensor._a is DATA


def test_namedtuple_arguments_replay_and_new_optimizers_do_not_retrace():
    Pair = namedtuple("Pair", "a b")
    f = ad.compile(lambda p: p.a * p.b)
    for i in range(4):
        assert f(Pair(ad.tensor([float(i)]), ad.tensor([2.0]))).numpy().tolist() == [2.0 * i]
        ad.optim.SGD([ad.tensor([1.0], requires_grad=True)], lr=0.1)
    assert f.replays == 3


def test_an_exception_inside_restores_everything():
    w = ad.tensor([1.0, 2.0], requires_grad=True)

    def f(x, fail):
        y = (x * w).sum()
        if fail:
            raise KeyError("inside")
        return y

    compiled = ad.compile(f)
    with pytest.raises(KeyError, match="inside"):
        compiled(ad.ones(2), True)
    assert Tensor._a is DATA and type(DATA.__get__(w)) is np.ndarray
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            assert compiled(ad.ones(2), False).item() == 3.0
    assert compiled.replays == 2


def test_a_value_gpuad_reads_through_numpy_is_a_guard():
    """ad.full reads its fill value on the host (NumPy converts the tensor): inside gpuad, so
    a guard, not the user's host read; a new value runs eagerly."""
    f = both(lambda: (lambda x: ad.full((2,), x.sum()) * 1),
             lambda f: [f(ad.tensor(v)) for v in ([1.0, 2.0], [1.0, 2.0], [1.0, 2.0],
                                                  [3.0, 2.0], [1.0, 2.0])])
    assert (f.replays, f.eager_calls) == (3, 1)


def test_arguments_reached_from_outside_or_sharing_memory_stay_eager_correct():
    glob = {}

    def make():
        glob["w"] = ad.zeros(3)

        def f(x, n):
            glob["w"].add_(1)
            return x * 1 + n

        return f

    both(make, lambda f: [v for i in range(4) for v in (f(glob["w"], float(i)), glob["w"])])
    both(lambda: (lambda a, b: a.add_(1)[:2] * 0 + b * 1),
         lambda f: [v for i in range(4) for a in [ad.tensor([0.0, 0.0, float(i)])]
                    for v in (f(a, a[:2]), a)])
    ro = np.arange(3.0, dtype=np.float32)
    ro.setflags(write=False)
    both(lambda: (lambda x: x * 2), lambda f: [f(ad.from_numpy(ro)) for _ in range(4)])


def test_an_argument_requiring_grad_runs_eagerly_under_no_grad_too():
    w = ad.tensor([1.0, 2.0], requires_grad=True)

    def f(x):
        with ad.enable_grad():
            (x * x * 3).sum().backward()

    compiled = ad.compile(f)
    with ad.no_grad(), pytest.warns(CompileWarning, match="carry gradients back"):
        compiled(w)
    assert w.grad.numpy().tolist() == [6.0, 12.0]


def _within(seconds, fn):
    """``fn()`` in a thread; its exception or result, or a failure if it hangs."""
    out = []
    thread = threading.Thread(target=lambda: out.append(_catch(fn)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung"
    return out[0]


def _catch(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 (returned to the test)
        return exc


def test_recursion_and_waiting_on_a_tracing_thread_do_not_hang():
    @ad.compile
    def f(x, n):
        return x if n == 0 else f(x * 2, n - 1)

    result = _within(20, lambda: f(ad.ones(1), 2))
    assert "while another compiled function traces" in str(result)
    inner = ad.compile(lambda x: x + 1)

    def outer(x):
        box = []
        t = threading.Thread(target=lambda: box.append(inner(ad.ones(1)).numpy()))
        t.start()
        t.join()
        return x * box[0][0]

    compiled = ad.compile(outer)
    assert [_within(20, lambda: compiled(ad.ones(1))).numpy().tolist() for _ in range(3)] == \
        [[2.0]] * 3


def test_strided_arguments_keep_their_strides_and_the_eager_bits():
    base = np.random.default_rng(0).standard_normal((64, 600)).astype(np.float32)
    for view in (lambda b: b[:, ::3], lambda b: b[::-1], lambda b: ad.transpose(b)[::2, ::-1]):
        both(lambda: (lambda x: x.sum() * 1),
             lambda f, view=view: [f(view(ad.tensor(base * (k + 1)))) for k in range(4)])


def test_reordered_parameter_groups_trace_again():
    def make():
        a = ad.tensor([1.0], requires_grad=True)
        b = ad.tensor([1.0], requires_grad=True)
        opt = ad.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0}])

        def step():
            opt.zero_grad()
            (a * a + b * b).sum().backward()
            opt.step()
            return a * 1, b * 1

        step.opt = opt
        return step

    def calls(f):
        out = [v for _ in range(3) for v in f()]
        (f.__wrapped__ if hasattr(f, "__wrapped__") else f).opt.param_groups.reverse()
        return out + [v for _ in range(3) for v in f()]

    both(make, calls)


def test_zeroing_a_grad_that_a_graph_saved_is_refused_as_in_pytorch():
    w = ad.tensor([1.0, 2.0], requires_grad=True)
    opt = ad.optim.SGD([w], lr=0.1)
    (w ** 3).sum().backward(create_graph=True)
    penalty = (w.grad ** 2).sum()
    opt.zero_grad(set_to_none=False)
    assert w.grad.grad_fn is None and w.grad.numpy().tolist() == [0.0, 0.0]
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        penalty.backward()


def test_tensors_kept_in_python_state_between_calls_run_eagerly():
    """A buffer made on the first call and updated later, or rebound (an average): Python
    holds tensors the run made, which a replay would neither make nor update."""
    def accumulating():
        state = {}
        m = ad.nn.Linear(3, 2)

        def step(x):
            with ad.no_grad():
                out = m(x)
                if "buf" not in state:
                    state["buf"] = ad.zeros_like(out)
                state["buf"] += out
            return state["buf"].sum() * 1

        return step

    def averaging():
        state = {}

        def step(x):
            state["avg"] = state["avg"] * 0.9 + x if "avg" in state else x * 1
            return state["avg"] * 1

        return step

    for make in (accumulating, averaging):
        f = both(make, lambda f: [f(ad.tensor([[1.0, float(i), 2.0]])) for i in range(5)])
        assert f.replays == 0


def test_a_scheduler_stepped_inside_the_step_is_replayed():
    def make():
        w = ad.tensor([1.0, 2.0], requires_grad=True)
        opt = ad.optim.SGD([w], lr=0.1, momentum=0.9)
        sched = ad.optim.lr_scheduler.StepLR(opt, 2, 0.5)

        def step(x):
            opt.zero_grad()
            ((w * x).sum() ** 2).backward()
            opt.step()
            sched.step()
            return w * 1

        return step

    f = both(make, lambda f: [f(ad.tensor([1.0, float(i)])) for i in range(6)])
    assert f.replays == 5
