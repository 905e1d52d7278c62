"""``ad.cuda.graph`` / ``ad.cuda.CUDAGraph``: capture by hand and replay (gpuad/cuda_graph.py).

The tests marked ``cuda`` run on real CUDA where a GPU is usable (benchmarks/gpu_checks.sh's
``cuda_graph`` step selects them) and on the strict CuPy stand-in (tests/fake_cupy) here; the
others check what only the stand-in can show (memory that no kernel wrote yet, how a shared
pool's memory is reused)."""
import doctest
import re
import sys

import numpy as np
import pytest
from fake_cupy import cuda_or_stand_in, installed

import gpuad as ad
import gpuad.cuda_graph as cuda_graph
from gpuad.backends import capture_blas
from gpuad.cuda_graph import CUDAGraph, CUDAGraphError

GPU = pytest.mark.cuda  # real CUDA where usable, else the stand-in


@pytest.fixture
def gpu(monkeypatch):
    """Real CUDA where it is usable, else the stand-in (its counters; None on real CUDA)."""
    with cuda_or_stand_in(monkeypatch) as counts:
        yield counts


@pytest.fixture
def stand_in(monkeypatch):
    with installed(monkeypatch) as counts:
        yield counts


def step(x, w):
    """An elementwise computation of ufuncs, fused kernels (sigmoid, tanh), a row-wise kernel
    (softmax), reductions and in-place ops."""
    h = ad.sigmoid(x * w + 0.5) - ad.tanh(x) * 0.25
    h = ad.relu(h - h.mean(axis=1, keepdims=True)) + ad.exp(-x * x)
    s = ad.softmax(h, axis=1)
    s += 1.0
    return s * h.sum(axis=1, keepdims=True), ad.abs(x).max()


def _inputs(seed, shape=(8, 16)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32)


def _captured(fn, *static, warmups=1):
    """``(graph, outputs)``: ``fn(*static)`` warmed up and captured into a new graph."""
    g = CUDAGraph()
    for _ in range(warmups):
        with ad.cuda.graph(g, warmup=True):
            out = fn(*static)
        del out
    with ad.cuda.graph(g):
        out = fn(*static)
    return g, out


@GPU
def test_a_replay_gives_what_eager_gives_for_new_inputs(gpu):
    x = ad.tensor(_inputs(0), device="cuda")
    w = ad.tensor(_inputs(1), device="cuda")
    g, (y, m) = _captured(step, x, w)
    assert g.captured and y.device == "cuda" and y.shape == (8, 16) and m.shape == ()
    for seed in (2, 3, 4):
        new = _inputs(seed)
        x.copy_(ad.tensor(new, device="cuda"))
        g.replay()
        want_y, want_m = step(ad.tensor(new, device="cuda"), w)
        np.testing.assert_allclose(y.numpy(), want_y.numpy(), rtol=1e-6, atol=1e-6)
        assert m.item() == pytest.approx(want_m.item())
        assert m.item() == pytest.approx(np.abs(new).max())
    # the weights are a static input too
    w.copy_(ad.zeros((8, 16), device="cuda"))
    g.replay()
    np.testing.assert_allclose(y.numpy(), step(x, w)[0].numpy(), rtol=1e-6, atol=1e-6)


@GPU
def test_outputs_are_static_and_the_next_replay_overwrites_them(gpu):
    x = ad.tensor(_inputs(0), device="cuda")
    g, (y, _) = _captured(lambda x: (ad.exp(x) * 2.0, None), x)
    address = y.array.data.ptr
    x.copy_(ad.zeros((8, 16), device="cuda"))
    g.replay()
    first = y.numpy()
    assert (first == 2.0).all()
    kept = y.clone()  # a copy outside the graph keeps its values
    x.copy_(ad.ones((8, 16), device="cuda"))
    g.replay()
    assert y.array.data.ptr == address and np.allclose(y.numpy(), 2 * np.e)
    assert (kept.numpy() == 2.0).all()


def test_nothing_runs_at_capture_and_replays_are_recorded_launches(stand_in):
    x = ad.tensor(_inputs(0), device="cuda")
    w = ad.tensor(_inputs(1), device="cuda")
    launches = stand_in.launches
    g, (y, m) = _captured(step, x, w)
    assert stand_in.launches > launches  # the warm-up ran kernels
    assert stand_in.captured > 0  # the capture recorded them
    assert np.isnan(y.array._a).all() and np.isnan(m.array._a)  # no kernel wrote them yet
    launches = stand_in.launches
    g.replay()
    assert stand_in.graph_launches == 1 and stand_in.launches == launches
    assert not np.isnan(y.numpy()).any()


@GPU
def test_a_private_pool_serves_the_capture_and_nothing_is_allocated_without_warmup(gpu):
    x = ad.tensor(_inputs(0), device="cuda")
    w = ad.tensor(_inputs(1), device="cuda")
    g = CUDAGraph()
    with pytest.raises(CUDAGraphError, match=r"(?s)test_cuda_graph\.py:\d+.*needs [\d,]+ bytes "
                                             r"of new GPU memory.*warm up first"):
        with ad.cuda.graph(g):
            step(x, w)
    assert not g.captured and not cuda_graph.capturing()
    with ad.cuda.graph(g, warmup=True):
        y = step(x, w)
    del y
    pool = g.pool()
    held = pool.total_bytes()
    assert held > 0 and pool.used_bytes() == 0
    with ad.cuda.graph(g):
        y, m = step(x, w)
    assert pool.total_bytes() == held  # served from what the warm-up left
    assert pool.used_bytes() >= y.array.nbytes  # the outputs live in the graph's pool
    z = ad.exp(x) + 1.0  # eager work after the block: never from the graph's pool
    used = pool.used_bytes()
    del z, y, m
    assert pool.used_bytes() < used  # (the outputs went back to it)
    ad.exp(x).numpy()
    assert pool.total_bytes() == held


def test_a_new_allocation_is_refused_where_cuda_would_allow_it(stand_in, monkeypatch):
    """Real CuPy captures in relaxed mode, where a cudaMalloc passes: gpuad's allocator
    refuses it itself (the pool grew), as the stand-in's stricter CUDA does."""
    import fake_cupy.capture

    monkeypatch.setattr(fake_cupy.capture, "refuse_cuda_malloc", lambda **kw: None)
    x = ad.ones(3, device="cuda")
    g = CUDAGraph()
    with pytest.raises(CUDAGraphError, match=r"needs 12 bytes of new GPU memory"):
        with ad.cuda.graph(g):
            x * 2.0
    assert not g.captured and g.pool().total_bytes() == 512  # (it was allocated, and kept)


@GPU
def test_random_draws_inside_a_capture_are_new_at_each_replay(gpu):
    x = ad.zeros((4, 64), device="cuda")
    g, noise = _captured(lambda x: x + ad.rand(4, 64, device="cuda"), x)
    g.replay()
    first = noise.numpy().copy()
    g.replay()
    second = noise.numpy()
    assert ((first >= 0) & (first < 1)).all() and not np.array_equal(first, second)


def _host_read(x):
    return float(x.sum())


_REFUSED = {
    "item": (lambda x: x.sum().item(), "read of a CUDA tensor's values on the host"),
    "float": (_host_read, "read of a CUDA tensor's values on the host"),
    "bool": (lambda x: bool((x > 0).all()), "read of a CUDA tensor's values on the host"),
    "numpy": (lambda x: (x * 2).numpy(), "read of a CUDA tensor's values on the host"),
    "mask": (lambda x: x[x > 0] * 2, "read of a CUDA tensor's values on the host"),
    "tensor from host data": (lambda x: x + ad.tensor(np.ones(16, np.float32), device="cuda"),
                              "copy of host data to the GPU"),
    "einsum": (lambda x: ad.einsum("ij,kj->ik", x, x), r"CuPy's cuBLAS \(einsum of floats"),
    "matmul without the capture extra": (lambda x: x @ x.T, r"gpuad's own cuBLAS handle.*"
                                         r"install the capture extra \(nvmath-python\)"),
}


@GPU
@pytest.mark.parametrize("what", list(_REFUSED))
def test_each_refusal_names_the_op_its_line_and_the_fix(gpu, what, monkeypatch):
    body, phrase = _REFUSED[what]
    x = ad.tensor(_inputs(0), device="cuda")
    g = CUDAGraph()
    if what == "matmul without the capture extra":
        for name in ("nvmath", "nvmath.bindings", "nvmath.bindings.cublas"):
            monkeypatch.setitem(sys.modules, name, None)  # (an import of it fails)
        monkeypatch.setattr(capture_blas, "_handles", {})
    with ad.cuda.graph(g, warmup=True):
        out = body(x)
    del out
    with pytest.raises(CUDAGraphError, match=rf"(?s)inside ad\.cuda\.graph at .*"
                                             rf"test_cuda_graph\.py:\d+(?=.*{phrase})"
                                             r"(?=.*Fix: )") as err:
        with ad.cuda.graph(g):
            body(x)
    assert type(err.value.__cause__).__name__ in ("RuntimeError", "NotImplementedError")
    # nothing is left behind: the graph is empty, and the next capture works
    assert not g.captured and not cuda_graph.capturing()
    import cupy

    assert cupy.cuda.get_current_stream() == cupy.cuda.Stream.null
    g2, y = _captured(lambda x: x * 3.0, x)
    g2.replay()
    np.testing.assert_allclose(y.numpy(), 3 * _inputs(0))


@GPU
def test_synchronize_inside_a_capture_is_refused_before_cuda_sees_it(gpu):
    x = ad.ones(3, device="cuda")
    g = CUDAGraph()
    with pytest.raises(CUDAGraphError, match=r"ad\.cuda\.synchronize\(\) inside an "
                                             r"ad\.cuda\.graph block"):
        with ad.cuda.graph(g):
            ad.cuda.synchronize()
    with ad.cuda.graph(g, warmup=True):
        ad.cuda.synchronize()  # (a warm-up runs eagerly: allowed)
        del x


def test_what_the_block_refuses_itself(gpu, monkeypatch):
    """A CPU device, a nested block, a replay before any capture, a second capture into a
    graph, a warm-up after the capture, a pool that is not a graph's."""
    g = CUDAGraph()
    with pytest.raises(CUDAGraphError, match="nothing has been captured"):
        g.replay()
    with pytest.raises(CUDAGraphError, match="cpu is not a CUDA device"):
        with ad.cuda.graph(g, device="cpu"):
            pass
    with pytest.raises(TypeError, match="takes an ad.cuda.CUDAGraph"):
        ad.cuda.graph(object())
    with pytest.raises(TypeError, match="another graph's pool"):
        ad.cuda.graph(g, pool=object())
    x = ad.ones(3, device="cuda")
    with ad.cuda.graph(g, warmup=True):
        y = x * 2.0
    del y
    with pytest.raises(CUDAGraphError, match="captures do not nest"):
        with ad.cuda.graph(g):
            with ad.cuda.graph(CUDAGraph()):
                pass
    with ad.cuda.graph(g):
        y = x * 2.0
    for warmup in (False, True):
        with pytest.raises(CUDAGraphError, match=r"already holds a capture.*g\.reset\(\)"):
            with ad.cuda.graph(g, warmup=warmup):
                pass
    g.replay()
    assert y.tolist() == [2.0, 2.0, 2.0]
    g.reset()
    assert not g.captured and repr(g) == "CUDAGraph(not captured)"
    with pytest.raises(CUDAGraphError, match="nothing has been captured"):
        g.replay()


def test_without_a_gpu_the_block_says_why(cpu_default, monkeypatch):
    """No usable GPU: the default device is the CPU, and cuda is refused with gpuad's reason;
    with CPU fallback on, cuda falls back to the CPU, which the block refuses."""
    from gpuad import devices

    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(ad.DeviceUnavailableError, match="cannot use cuda:0"):
        with ad.cuda.graph(CUDAGraph()):
            pass
    monkeypatch.setattr(devices._Policy, "fallback", True)
    monkeypatch.setattr(devices._Policy, "warned", False)
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        with pytest.raises(CUDAGraphError, match="cpu is not a CUDA device: work on the CPU "
                                                 "runs at once and is never replayed"):
            with ad.cuda.graph(CUDAGraph()):
                pass


@GPU
def test_graphs_sharing_a_pool_replay_in_capture_order(gpu):
    x = ad.tensor(_inputs(0), device="cuda")
    g1, g2 = CUDAGraph(), CUDAGraph()

    def first(x):
        return ad.exp(x * 0.5 + 1.0)

    def second(y):
        return ad.tanh(y * 0.25 - 1.0)

    with ad.cuda.graph(g1, warmup=True):
        y = first(x)
    del y
    with ad.cuda.graph(g1):
        y = first(x)
    with ad.cuda.graph(g2, pool=g1.pool(), warmup=True):
        z = second(y)
    del z
    with ad.cuda.graph(g2, pool=g1.pool()):
        z = second(y)
    assert g2.pool() is g1.pool()
    for seed in (5, 6):
        new = _inputs(seed)
        x.copy_(ad.tensor(new, device="cuda"))
        g1.replay()
        g2.replay()
        want = np.tanh(np.exp(new * 0.5 + 1.0) * 0.25 - 1.0)
        np.testing.assert_allclose(z.numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_shared_pool_reuses_what_an_earlier_capture_freed(stand_in):
    """The second graph needs no warm-up of its own: the first one's freed temporaries serve
    it (the stand-in's pool is real memory: the same bytes). And the hazard PyTorch documents:
    a static output dropped gives its memory back to the shared pool, where the next capture
    may put its own output; replays of the earlier graphs, which write those bytes, then
    overwrite it."""
    x = ad.tensor(_inputs(0), device="cuda")
    g1 = CUDAGraph()

    def first(x):  # three arrays alive at its peak: two are free after it
        return ad.exp(x * 0.5) + ad.tanh(x)

    with ad.cuda.graph(g1, warmup=True):
        y = first(x)
    del y
    with ad.cuda.graph(g1):
        y = first(x)
    held = g1.pool().total_bytes()
    g2 = CUDAGraph()
    with ad.cuda.graph(g2, pool=g1.pool()):  # no warm-up: g1's temporaries are free
        z = ad.tanh(y * 0.25 - 1.0)
    assert g1.pool().total_bytes() == held
    g1.replay()
    g2.replay()
    want = np.tanh((np.exp(_inputs(0) * 0.5) + np.tanh(_inputs(0))) * 0.25 - 1)
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-5)
    del y  # a static output dropped
    g3 = CUDAGraph()
    with ad.cuda.graph(g3, pool=g1.pool()):
        w = x * 3.0
    assert g1.pool().total_bytes() == held
    x.copy_(ad.ones((8, 16), device="cuda"))
    g3.replay()
    assert (w.numpy() == 3.0).all()
    g1.replay()
    g2.replay()  # their writes land in w's memory
    assert not (w.numpy() == 3.0).any()


def test_the_docstring_example_runs_on_the_stand_in(stand_in):
    text = re.sub(r"\s*# doctest: \+SKIP", "", cuda_graph.graph.__doc__)
    test = doctest.DocTestParser().get_doctest(text, {}, "gpuad.cuda_graph", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 8


def test_ad_cuda_names_the_graph_api_without_importing_cupy():
    import subprocess
    import sys

    code = ("import sys, gpuad as ad; g = ad.cuda.CUDAGraph(); p = g.pool(); "
            "assert ad.cuda.graph is ad.cuda_graph.graph and p.total_bytes() == 0; "
            "assert not g.captured and 'cupy' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


@GPU
def test_outputs_outlive_their_graph_and_its_pool(gpu):
    """CuPy's pooled memory holds its pool weakly: dropping the graph must not free the
    memory its outputs still use (the stand-in frees a dropped pool's memory, as CuPy)."""
    import gc

    x = ad.tensor(_inputs(0), device="cuda")
    g, (y, _) = _captured(lambda x: (ad.exp(x) * 2.0, None), x)
    g.replay()
    want = y.numpy()
    g.reset()
    del g
    gc.collect()
    np.testing.assert_array_equal(y.numpy(), want)
    later = CUDAGraph()  # (a new pool: the kept one is let go once nothing uses it)
    del y
    gc.collect()
    assert later.pool().used_bytes() == 0
