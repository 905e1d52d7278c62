"""The CuPy stand-in's stream capture (tests/fake_cupy/capture.py) and memory pools
(tests/fake_cupy/pool.py): the API has CuPy 14.2's signatures; a capture records the launches
of every kind of kernel and a graph replays them on the arrays' current memory; each thing
CuPy or CUDA refuses while a stream captures is refused, with CuPy's exception; a pool's
memory is real, reused and released as CuPy's pool does."""
import contextlib
import inspect
import subprocess
import sys

import numpy as np
import pytest
from fake_cupy import installed
from test_cupy_stand_in import needs_real_cupy

from gpuad.backends.kernel_sources import inlined
from gpuad.backends.kernel_table import elementwise_spec


@pytest.fixture
def cupy():
    with installed() as counts:
        import cupy

        cupy.counts = counts
        yield cupy


_POOLS = []  # the pools of the captures below: the graphs' memory


def _capture(cupy, fn, pool=None, stream=None, warm=True):
    """``(graph, result)``: ``fn()`` warmed up once (its result dropped; or ``warm()`` run
    instead) and captured, on a non-blocking ``stream`` with ``pool`` (new ones by default) as
    the allocator."""
    pool = pool or cupy.cuda.MemoryPool()
    _POOLS.append(pool)  # (its memory lives only while the pool does, as CuPy's)
    stream = stream or cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(pool.malloc), stream:
        if warm:
            (fn if warm is True else warm)()
        stream.begin_capture()
        try:
            out = fn()
        finally:
            g = stream.end_capture()
    return g, out


# ---- the API ----------------------------------------------------------------------------------
_SIGNATURES = {"Stream": "(self, null=False, non_blocking=False, ptds=False, priority=None)",
               "Stream.begin_capture": "(self, mode=None)", "Stream.end_capture": "(self)",
               "Stream.is_capturing": "(self)", "Graph.launch": "(self, stream=None)",
               "Graph.upload": "(self, stream=None)", "using_allocator": "(allocator=None)"}


def _signature(cuda, name):
    obj = cuda
    for part in name.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, type):
        obj = obj.__init__
    try:
        return str(inspect.signature(obj))
    except ValueError:  # a Cython method: its docstring's first line is its signature
        first = obj.__doc__.strip().splitlines()[0]
        return first[first.index("("):first.rindex(")") + 1]


def test_the_capture_api_has_cupys_signatures(cupy):
    for name, want in _SIGNATURES.items():
        assert _signature(cupy.cuda, name) == want, name
    rt = cupy.cuda.runtime
    assert (rt.streamCaptureModeGlobal, rt.streamCaptureModeThreadLocal,
            rt.streamCaptureModeRelaxed) == (0, 1, 2)
    with pytest.raises(NotImplementedError, match="must be created via stream capture"):
        cupy.cuda.Graph()


@needs_real_cupy
def test_the_signatures_are_real_cupys():
    code = ("import sys, json; sys.path.insert(0, 'tests'); import cupy; "
            "from test_cupy_stand_in_capture import _signature, _SIGNATURES; "
            "print(json.dumps({n: _signature(cupy.cuda, n) for n in _SIGNATURES}))")
    import json
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True).stdout
    assert json.loads(out) == _SIGNATURES


# ---- recording and replaying ------------------------------------------------------------------
def test_a_graph_replays_every_kind_of_launch_on_new_input_values(cupy):
    ins, outs, op, name = elementwise_spec("sigmoid_fwd", np.float32, 1)
    sigmoid = cupy.ElementwiseKernel(ins, outs, op, name=name, preamble="namespace gpuad {}")
    finite = cupy.ReductionKernel("T x", "bool y", "isfinite((double)x)", "a && b", "y = a",
                                  "true")
    names = ["gpuad::sgd_update<float, float>"]
    sgd = cupy.RawModule(code=inlined("optim.cu"), options=("-std=c++17",),
                         name_expressions=names).get_function(names[0])
    x = cupy.asarray([-1.0, 0.0, 2.0], dtype=cupy.float32)
    p, buf = cupy.zeros(3, dtype=cupy.float32), cupy.zeros(3, dtype=cupy.float32)
    hyper = cupy.asarray([0.5, 0, 0, 0, 0, 0, 0, 0], dtype=cupy.float64)  # lr 0.5
    rng = cupy.random.default_rng(0)

    def fn():
        y = sigmoid(x) * 2.0 + cupy.exp(x)  # a kernel, a ufunc, an operator
        y += x.sum()  # a reduction, in place
        sgd((1,), (32,), (p, x, buf, hyper, np.int64(3)))  # p -= lr * x, in place
        return y, finite(y), rng.random(3), y[1:].copy(), cupy.maximum(y, 0)[::-1]

    launches = cupy.counts.launches
    g, (y, ok, noise, tail, rev) = _capture(cupy, fn)
    assert cupy.counts.launches == launches + 3  # only the warm-up launched kernels
    assert cupy.counts.captured >= 9 and cupy.counts.graph_launches == 0
    assert np.isnan(y._a).all() and np.isnan(noise._a).all()  # nothing ran
    assert (p.get() == [0.5, 0.0, -1.0]).all()  # (the warm-up's step only)
    for values in ([-1.0, 0.0, 2.0], [3.0, -4.0, 0.5]):
        x[...] = cupy.asarray(values, dtype=cupy.float32)  # new values in the input's memory
        before = p.get()
        g.launch()
        v = np.asarray(values, np.float32)
        want = 2 / (1 + np.exp(-v)) + np.exp(v) + v.sum()
        np.testing.assert_allclose(y.get(), want, rtol=1e-6)
        np.testing.assert_allclose(tail.get(), want[1:], rtol=1e-6)
        np.testing.assert_allclose(rev.get(), np.maximum(want, 0)[::-1], rtol=1e-6)
        np.testing.assert_allclose(p.get(), before - 0.5 * v)
        assert ok.item() and ((noise.get() >= 0) & (noise.get() < 1)).all()
    first = noise.get()
    g.launch()
    assert not (noise.get() == first).all()  # the generator's state advanced
    assert cupy.counts.graph_launches == 3 and cupy.counts.launches == launches + 3


def test_a_captured_draw_takes_the_generators_next_numbers_at_each_replay(cupy):
    """Nothing is drawn at capture: the first replay gives what the first eager draw of the
    same seed gives, the second the next ones."""
    rng = cupy.random.default_rng(7)
    g, noise = _capture(cupy, lambda: rng.standard_normal(5), warm=lambda: cupy.empty(5))
    want = cupy.random.default_rng(7)
    for _ in range(2):
        g.launch()
        assert (noise.get() == want.standard_normal(5).get()).all()


def test_a_graph_launched_into_a_capture_is_recorded_and_upload_is_accepted(cupy):
    x = cupy.ones(4)
    g, y = _capture(cupy, lambda: x * 2.0)
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture()
        g.launch()
        g.upload()
        outer = s.end_capture()
    assert np.isnan(y.get()).all()
    outer.launch(stream=s)
    assert (y.get() == 2.0).all()
    assert "digraph" in g.debug_dot_str()


# ---- refusals ------------------------------------------------------------------------------------
_D2H = "the current stream is capturing, so D2H transfers are disallowed"
_H2D = "the current stream is capturing, so H2D transfers are disallowed"
_CUBLAS = "calling cuBLAS API during stream capture is currently unsupported"
_CURAND = "calling cuRAND API during stream capture is currently unsupported"


def _refused(cupy, a, b):
    return {
        "get": (lambda: a.get(), RuntimeError, _D2H),
        "item": (lambda: a[0].item(), RuntimeError, _D2H),
        "float": (lambda: float(a[0]), RuntimeError, _D2H),
        "bool": (lambda: bool(a[0] > 0), RuntimeError, _D2H),
        "tolist": (lambda: a.tolist(), RuntimeError, _D2H),
        "repr": (lambda: repr(a), RuntimeError, _D2H),
        "asnumpy": (lambda: cupy.asnumpy(a), RuntimeError, _D2H),
        "mask": (lambda: a[a > 0], RuntimeError, _D2H),
        "nonzero": (lambda: cupy.nonzero(a), RuntimeError, _D2H),
        "asarray": (lambda: cupy.asarray([1.0, 2.0]), RuntimeError, _H2D),
        "asarray numpy": (lambda: cupy.asarray(np.ones(3)), RuntimeError, _H2D),
        "set": (lambda: a.set(np.ones(3)), RuntimeError, _H2D),
        "host index": (lambda: a[np.array([0, 1])], RuntimeError, _H2D),
        "matmul": (lambda: cupy.matmul(b, b), NotImplementedError, _CUBLAS),
        "@": (lambda: b @ b, NotImplementedError, _CUBLAS),
        "dot": (lambda: cupy.dot(a, a), NotImplementedError, _CUBLAS),
        "tensordot": (lambda: cupy.tensordot(b, b, 1), NotImplementedError, _CUBLAS),
        "rand": (lambda: cupy.random.rand(3), NotImplementedError, _CURAND),
        "RandomState": (lambda: cupy.random.RandomState(0).standard_normal(3),
                        NotImplementedError, _CURAND),
        "uniform": (lambda: cupy.random.default_rng(0).uniform(0, 1, 3), RuntimeError, _H2D),
    }


@pytest.mark.parametrize("what", list(_refused(None, None, None)))
def test_each_refusal_raises_cupys_exception_and_leaves_the_capture_valid(cupy, what):
    a = cupy.asarray([1.0, -2.0, 3.0])
    b = cupy.ones((3, 3))
    fn, kind, message = _refused(cupy, a, b)[what]
    fn()  # eagerly it works
    want = (a.get() * 2).tolist()
    pool, s = cupy.cuda.MemoryPool(), cupy.cuda.Stream(non_blocking=True)
    with cupy.cuda.using_allocator(pool.malloc), s:
        y, z = a * 2, a * 3  # warm the pool (the refused op's temporary is held by its error)
        del y, z
        s.begin_capture()
        with pytest.raises(kind) as err:
            fn()
        assert str(err.value) == message
        y = a * 2  # the capture goes on
        g = s.end_capture()
    g.launch()
    assert y.get().tolist() == want and not s.is_capturing()


def test_integer_products_need_no_cublas(cupy):
    i = cupy.arange(4).reshape(2, 2)
    g, out = _capture(cupy, lambda: i @ i)
    g.launch()
    assert out.get().tolist() == [[2, 3], [6, 11]]


def _error(cupy, fn):
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError) as err:
        fn()
    return str(err.value).partition(":")[0]


def test_synchronize_and_stream_queries_invalidate_the_capture(cupy):
    z = cupy.ones(2)
    for spoil in ("stream", "device", "runtime", "query"):
        s = cupy.cuda.Stream(non_blocking=True)
        with s:
            s.begin_capture()
            assert s.is_capturing() and not cupy.cuda.Stream.null.is_capturing()
            if spoil == "query":
                assert s.done is False
            else:
                fn = {"stream": s.synchronize, "device": cupy.cuda.Device().synchronize,
                      "runtime": cupy.cuda.runtime.deviceSynchronize}[spoil]
                assert _error(cupy, fn) == "cudaErrorStreamCaptureUnsupported"
            with pytest.raises(RuntimeError, match="an error has invalidated the capture"):
                s.is_capturing()
            with pytest.raises(RuntimeError, match="an error has invalidated the capture"):
                z.get()
            assert _error(cupy, lambda: cupy.ones(2) + 1) == "cudaErrorStreamCaptureInvalidated"
            assert _error(cupy, s.end_capture) == "cudaErrorStreamCaptureInvalidated"
        assert not s.is_capturing()
        s.synchronize()  # usable again


def test_capture_states_and_streams_as_cuda_has_them(cupy):
    with pytest.raises(RuntimeError, match="cannot capture on the default"):
        cupy.cuda.Stream.null.begin_capture()
    s = cupy.cuda.Stream(non_blocking=True)
    assert _error(cupy, s.end_capture) == "cudaErrorIllegalState"  # not capturing
    assert _error(cupy, lambda: s.begin_capture(mode=7)) == "cudaErrorInvalidValue"
    s.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeGlobal)
    assert _error(cupy, s.begin_capture) == "cudaErrorIllegalState"
    s.end_capture()
    blocking = cupy.cuda.Stream()
    assert not blocking.is_non_blocking and s.is_non_blocking
    with blocking:
        blocking.begin_capture()
        assert _error(cupy, cupy.cuda.Stream.null.is_capturing) == \
            "cudaErrorStreamCaptureImplicit"
        with cupy.cuda.Stream.null:  # a launch on the legacy stream joins the capture: refused
            assert _error(cupy, lambda: cupy.ones(2) + 1) == "cudaErrorStreamCaptureImplicit"
        assert _error(cupy, blocking.end_capture) == "cudaErrorStreamCaptureInvalidated"
    x = cupy.ones(2)
    other = cupy.cuda.Stream(non_blocking=True)
    with s:  # work on a stream that does not capture runs at once
        s.begin_capture()
        with other:
            assert (x + 1).get().tolist() == [2.0, 2.0]
        s.end_capture()


# ---- memory --------------------------------------------------------------------------------------
def test_allocation_during_capture_needs_a_warm_pool_on_that_stream(cupy):
    x = cupy.ones(100)
    s = cupy.cuda.Stream(non_blocking=True)
    cases = {"default pool": (None, None), "cold pool": (cupy.cuda.MemoryPool(), None),
             "warmed on another stream": (cupy.cuda.MemoryPool(), cupy.cuda.Stream())}
    for name, (pool, warm_stream) in cases.items():
        if warm_stream is not None:
            with cupy.cuda.using_allocator(pool.malloc), warm_stream:
                y = x * 2
                del y
        allocator = (cupy.cuda.using_allocator(pool.malloc) if pool
                     else contextlib.nullcontext())
        with allocator, s:
            s.begin_capture()
            assert _error(cupy, lambda: x * 2) == "cudaErrorStreamCaptureUnsupported", name
            assert _error(cupy, s.end_capture) == "cudaErrorStreamCaptureInvalidated"
    pool = cupy.cuda.MemoryPool()
    g, y = _capture(cupy, lambda: x * 2, pool=pool, stream=s)
    assert pool.total_bytes() == 1024 and pool.used_bytes() == 1024  # 800 bytes, rounded
    with cupy.cuda.using_allocator(pool.malloc), s:
        s.begin_capture()
        assert _error(cupy, pool.free_all_blocks) == "cudaErrorStreamCaptureUnsupported"
        assert _error(cupy, s.end_capture) == "cudaErrorStreamCaptureInvalidated"


def test_a_pool_rounds_splits_merges_and_releases_as_cupys(cupy):
    pool = cupy.cuda.MemoryPool()
    with cupy.cuda.using_allocator(pool.malloc):
        a = cupy.empty(1000, dtype=cupy.uint8)  # 1024 bytes
        assert (pool.total_bytes(), pool.used_bytes(), pool.n_free_blocks()) == (1024, 1024, 0)
        address = a.data.ptr
        del a
        b = cupy.empty(100, dtype=cupy.uint8)  # 512 of the 1024: split
        assert b.data.ptr == address and pool.n_free_blocks() == 1
        c = cupy.empty(512, dtype=cupy.uint8)  # the other half
        assert c.data.ptr == address + 512 and pool.total_bytes() == 1024
        c[...] = 7
        d = cupy.empty(2048, dtype=cupy.uint8)  # a new segment
        assert pool.total_bytes() == 3072
        del b, c  # the halves merge again
        assert pool.n_free_blocks() == 1
        e = cupy.empty(1024, dtype=cupy.uint8)  # the same memory, as it was left
        assert e.data.ptr == address and (e[512:].get() == 7).all()
        v = e[10:20]
        del e
        assert pool.used_bytes() == 3072  # a view keeps its memory in use
        del v, d
        assert pool.used_bytes() == 0 and pool.free_bytes() == 3072
        pool.free_all_blocks()
    assert pool.total_bytes() == 0 and cupy.get_default_memory_pool().total_bytes() == 5 << 20


def test_a_graph_whose_memory_went_back_to_the_driver_refuses_to_launch(cupy):
    pool = cupy.cuda.MemoryPool()
    x = cupy.ones(4)
    g, y = _capture(cupy, lambda: x * 2.0, pool=pool)
    g.launch()
    del y
    pool.free_all_blocks()  # against CuPy's rule for captured pools
    with pytest.raises(cupy.cuda.runtime.CUDARuntimeError, match="cudaErrorIllegalAddress"):
        g.launch()


def test_allocators_are_set_as_in_cupy(cupy):
    pool = cupy.cuda.MemoryPool()
    assert cupy.cuda.get_allocator() is None  # (the default pool's, untracked here)
    with cupy.cuda.using_allocator(pool.malloc):
        assert cupy.cuda.get_allocator() == pool.malloc
        with pytest.raises(ValueError, match="Can't change the global allocator"):
            cupy.cuda.set_allocator(pool.malloc)
        with cupy.cuda.using_allocator():  # None: no pool (cudaMalloc)
            assert cupy.ones(3).sum().item() == 3.0 and pool.total_bytes() == 0
    assert cupy.cuda.memory.MemoryPool is cupy.cuda.MemoryPool
