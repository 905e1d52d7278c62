"""ad.compile on CUDA (gpuad/capture/graphed.py): two warm-ups, one capture into a CUDA graph,
then one launch per call; on the strict CuPy stand-in here (where a replay gives the eager
bits: its kernels are NumPy's), on a GPU by benchmarks/gpu_checks.sh (within tolerances)."""
import numpy as np
import pytest
from fake_cupy import installed

import gpuad as ad
from gpuad.capture import CompileError, CompileWarning

GPU = pytest.mark.cuda
QUIET = pytest.mark.filterwarnings("ignore::gpuad.capture.compiled.CompileWarning")
RNG = np.random.default_rng(0)
X = RNG.standard_normal((40, 32, 64)).astype(np.float32)
Y = np.argmax(X @ RNG.standard_normal((64, 10)), axis=-1)
STEPS = 40


def _demo(optimizer, dropout, schedule=False):
    ad.manual_seed(0)
    nn = ad.nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(),
                          *([nn.Dropout(0.2)] if dropout else []), nn.Linear(128, 10)).to("cuda")
    opt = (ad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
           else ad.optim.Adam(model.parameters(), lr=1e-3))
    sched = ad.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7) if schedule else None

    def step(x, y):
        loss = ad.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        return loss

    return model, step


def _train(optimizer, dropout, compiled, schedule=False):
    model, step = _demo(optimizer, dropout, schedule)
    if compiled:
        step = ad.compile(step)
    losses = [step(ad.tensor(X[i], device="cuda"), ad.tensor(Y[i], device="cuda")).item()
              for i in range(STEPS)]
    return [p.numpy() for p in model.parameters()], losses, step


def _close(a, b, exact):
    if exact:
        np.testing.assert_array_equal(a, b)
    else:  # (real CUDA: cuBLAS's algorithms for CuPy's handle and gpuad's may differ)
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@GPU
@pytest.mark.parametrize("schedule", [False, True], ids=["", "StepLR"])
@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_compiled_training_on_cuda_is_eager_training(gpu_capture, optimizer, dropout, schedule):
    params, losses, _ = _train(optimizer, dropout, False, schedule)
    cparams, closses, step = _train(optimizer, dropout, True, schedule)
    assert (step.traces, step.replays, step.eager_calls) == (3, STEPS - 3, 0)
    if gpu_capture is not None:  # the stand-in counts: the capturing call launched too
        assert gpu_capture.graph_launches == STEPS - 2 and gpu_capture.captured > 0
    for a, b in zip(params, cparams):
        _close(a, b, exact=gpu_capture is not None)
    _close(np.array(losses), np.array(closses), exact=gpu_capture is not None)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


@GPU
def test_two_replays_draw_different_dropout_masks(gpu_capture):
    ad.manual_seed(1)
    drop = ad.nn.Dropout(0.5)
    f = ad.compile(lambda x: drop(x))
    x = ad.ones(256, device="cuda")
    masks = [f(x).numpy().copy() for _ in range(5)]
    assert f.replays == 2
    assert not np.array_equal(masks[3], masks[4])
    ad.manual_seed(1)
    eager = [drop(x).numpy() for _ in range(5)]
    _close(np.array(masks), np.array(eager), exact=True)  # (the same draws, in order)


@GPU
def test_a_host_read_is_refused_naming_the_line_or_runs_eagerly(gpu_capture):
    w = ad.ones(3, device="cuda")

    def f(x):
        return x * w if (x.sum() > 0).item() else x

    with pytest.raises(CompileError, match=r"test_compile_cuda\.py:\d+"):
        ad.compile(f)(ad.ones(3, device="cuda"))
    g = ad.compile(f, fallback="eager")
    with pytest.warns(CompileWarning, match="runs eagerly"):
        assert g(ad.ones(3, device="cuda")).numpy().tolist() == [1.0, 1.0, 1.0]
    assert g(-ad.ones(3, device="cuda")).numpy().tolist() == [-1.0, -1.0, -1.0]


@GPU
def test_replaced_parameter_and_new_seed_capture_again(gpu_capture):
    w = ad.nn.Parameter(ad.ones(4, device="cuda"))
    holder = ad.nn.Module()
    holder.w = w
    f = ad.compile(lambda x: (x * holder.w + ad.rand(4, device="cuda")).sum())
    for _ in range(4):
        f(ad.ones(4, device="cuda"))
    assert f.replays == 1
    holder.w = ad.nn.Parameter(ad.full((4,), 2.0, device="cuda"))
    ad.manual_seed(5)
    got = f(ad.ones(4, device="cuda")).item()
    ad.manual_seed(5)
    assert got == pytest.approx((2.0 + ad.rand(4, device="cuda")).sum().item())


@GPU
def test_arguments_written_in_place_reach_the_caller_and_outputs_are_static(gpu_capture):
    f = ad.compile(lambda x: (x.mul_(2.0) + 1.0))
    outs = []
    for i in range(5):
        x = ad.full((3,), float(i), device="cuda")
        outs.append(f(x))
        assert x.numpy().tolist() == [2.0 * i] * 3
    assert f.replays == 2
    assert outs[3] is not outs[4] and outs[3].numpy().tolist() == [9.0] * 3  # overwritten
    g = ad.compile(lambda x: x + 1.0, copy_outputs=True)
    kept = [g(ad.full((2,), float(i), device="cuda")) for i in range(5)]
    assert [k.numpy()[0] for k in kept] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_what_a_graph_cannot_repeat_runs_eagerly_with_the_reason(monkeypatch):
    with installed(monkeypatch):
        w = ad.ones(3, device="cuda", requires_grad=True)
        opt = ad.optim.SGD([w], lr=0.1)

        def host_data(x):  # a tensor from host data: the capture refuses the copy
            return x + ad.tensor([1.0, 2.0, 3.0], device="cuda")

        def seeded(x):  # Python that computes per call
            ad.manual_seed(0)
            return x * ad.rand(3, device="cuda")

        def trains(x):  # the capture-refused call puts the grads back and runs eagerly
            opt.zero_grad()
            (w * x + ad.tensor([0.0, 0.0, 1.0], device="cuda")).sum().backward()
            opt.step()
            return w.grad

        for fn, reason in ((host_data, "capture was refused.*host data"),
                           (seeded, "numbers of its own"), (trains, "capture was refused")):
            f = ad.compile(fn)
            with pytest.warns(CompileWarning, match=f"runs eagerly: (?s:.*){reason}"):
                for _ in range(4):
                    out = f(ad.ones(3, device="cuda"))
            assert f.replays == 0 and f.eager_calls >= 1
        assert out.numpy().tolist() == [1.0, 1.0, 1.0]
        np.testing.assert_allclose(w.numpy(), 1 - 0.4 * np.ones(3), rtol=1e-6)
        mixed = ad.compile(lambda x, y: x + y.to("cuda"))
        with pytest.warns(CompileWarning, match="both CPU and CUDA"):
            mixed(ad.ones(2, device="cuda"), ad.ones(2, device="cpu"))


def test_without_the_capture_extra_matmul_steps_run_eagerly(monkeypatch):
    import sys

    from gpuad.backends import capture_blas

    with installed(monkeypatch):
        for name in ("nvmath", "nvmath.bindings", "nvmath.bindings.cublas"):
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setattr(capture_blas, "_handles", {})
        lin = ad.nn.Linear(4, 2).to("cuda")
        f = ad.compile(lambda x: lin(x).sum())
        with pytest.warns(CompileWarning, match=r"install the capture extra \(nvmath-python\)"):
            got = [f(ad.ones((3, 4), device="cuda")).item() for _ in range(4)]
        assert got == [pytest.approx(lin(ad.ones((3, 4), device="cuda")).sum().item())] * 4


def test_a_function_of_no_tensor_arguments_on_gpu_data_is_captured(monkeypatch):
    """The first call traces on the CPU, finds CUDA tensors and runs eagerly; the next
    calls warm up and capture."""
    with installed(monkeypatch):
        w = ad.full((3,), 2.0, device="cuda")
        acc = ad.zeros(3, device="cuda")

        def f():
            acc.add_(w)
            return acc * 1.0

        step = ad.compile(f)
        for _ in range(6):
            out = step()
        assert step.eager_calls == 0 and step.replays >= 2
        assert out.numpy().tolist() == [12.0] * 3 and acc.numpy().tolist() == [12.0] * 3


def _two_params(kind):
    a = ad.nn.Parameter(ad.full((4,), 1.0, device="cuda"))
    b = ad.nn.Parameter(ad.full((4,), 2.0, device="cuda"))
    opt = (ad.optim.SGD([a, b], lr=0.1, momentum=0.9) if kind == "sgd"
           else ad.optim.Adam([a, b], lr=0.1))
    return a, b, opt


@QUIET
@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_a_parameter_first_without_gradient_at_the_capture_runs_eagerly_from_clean_state(
        monkeypatch, kind):
    """The fused group leaves the flat buffers at the capturing call: the capture stops before
    that changes anything, and the call runs eagerly (as do the later ones)."""
    results = []
    with installed(monkeypatch):
        for compiled in (False, True):
            a, b, opt = _two_params(kind)
            calls = [0]

            def step(x, a=a, b=b, opt=opt, calls=calls):
                calls[0] += 1
                opt.zero_grad()
                ((a * x).sum() if calls[0] >= 3 else (a * x + b * x).sum()).backward()
                opt.step()

            f = ad.compile(step) if compiled else step
            for i in range(6):
                f(ad.full((4,), float(i + 1), device="cuda"))
            results.append((a.numpy(), b.numpy()))
    for x, y in zip(*results):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    assert np.isfinite(results[1][0]).all()


@QUIET
def test_two_optimizer_steps_in_one_call_with_new_settings_between_run_eagerly(monkeypatch):
    results = []
    with installed(monkeypatch):
        for compiled in (False, True):
            a, _, opt = _two_params("sgd")
            sched = ad.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

            def step(x, a=a, opt=opt, sched=sched):
                for _ in range(2):
                    opt.zero_grad()
                    (a * a * x).sum().backward()
                    opt.step()
                    sched.step()

            f = ad.compile(step) if compiled else step
            for _ in range(5):
                f(ad.ones(4, device="cuda"))
            results.append(a.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)


@QUIET
def test_a_loaded_state_dict_that_leaves_the_fused_path_is_noticed(monkeypatch):
    def saved():
        a, b, opt = _two_params("adam")
        a.grad = ad.full((4,), 0.5, device="cuda")
        for _ in range(3):
            opt.step()  # (b has no gradient: the group goes one by one)
        return opt.state_dict()

    results = []
    with installed(monkeypatch):
        for compiled in (False, True):
            a, b, opt = _two_params("adam")

            def step(x, a=a, b=b, opt=opt):
                opt.zero_grad()
                (a * x + b * x).sum().backward()
                opt.step()

            f = ad.compile(step) if compiled else step
            for i in range(5):
                f(ad.full((4,), float(i + 1), device="cuda"))
            opt.load_state_dict(saved())
            for _ in range(3):
                f(ad.ones(4, device="cuda"))
            results.append((a.numpy(), b.numpy()))
    for x, y in zip(*results):
        np.testing.assert_allclose(x, y, rtol=1e-6)


@QUIET
def test_a_tensor_and_its_detach_as_two_arguments_share_memory_as_eager(monkeypatch):
    with installed(monkeypatch):
        f = ad.compile(lambda a, b: (a.add_(1.0), b * 1.0)[1])
        x = ad.zeros(2, device="cuda")
        got = [f(x, x.detach()).numpy().tolist() for _ in range(4)]
    assert got == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]



def test_a_step_on_the_second_gpu_is_captured_there(monkeypatch):
    """A compiled step on cuda:1 while cuda:0 is current (as on a data-parallel rank 1): the
    static inputs' copies and the write-backs run on cuda:1 (the stand-in refuses an array
    written from another device, as CuPy does without peer access)."""
    with installed(monkeypatch, devices=2):
        results = []
        for compiled in (False, True):
            ad.manual_seed(0)
            net = ad.nn.Linear(4, 3).to("cuda:1")
            opt = ad.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

            def step(x, y, net=net, opt=opt):
                loss = (net(x) - y).square().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                x.add_(1.0)  # (an argument written in place: copied back on cuda:1)
                return loss

            run = ad.compile(step) if compiled else step
            losses = []
            for i in range(5):
                x = ad.tensor(X[i, :2, :4], device="cuda:1")
                losses.append(run(x, ad.zeros(2, 3, device="cuda:1")).item())
                assert np.array_equal(x.numpy(), X[i, :2, :4] + 1)
            results.append((losses, net.weight.numpy()))
            if compiled:
                assert (run.traces, run.replays, run.eager_calls) == (3, 2, 0)
        assert results[0][0] == results[1][0]
        assert np.array_equal(results[0][1], results[1][1])
