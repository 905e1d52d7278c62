"""Large CPU results on reused memory (gpuad/backends/cpu_pool.py) and glibc's malloc kept from
handing freed memory back (cpu_pool.keep_freed_memory): pooled memory goes back only when no
array sees it, within the pool's limit, and a gradient on pooled memory is adopted or copied
exactly as one on fresh memory."""
import gc
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import gpuad as ad
from gpuad.backends import cpu_parallel, cpu_pool


@pytest.fixture(autouse=True)
def _cpu_by_default(cpu_default):
    """These tests are about the CPU backend's memory."""


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.setattr(cpu_pool, "LIMIT", 64 << 20)
    cpu_pool.empty()
    yield cpu_pool
    cpu_pool.empty()


SHAPE = (256, 1024)


def _address(a):
    return a.__array_interface__["data"][0]


def test_take_gives_a_writable_c_contiguous_array_of_the_shape_and_dtype(pool):
    a = pool.take(SHAPE, np.float32)
    assert a.shape == SHAPE and a.dtype == np.float32 and a.flags.c_contiguous
    a[...] = 3
    assert a.sum() == 3 * a.size
    assert pool.base(a) is None  # counts as owning its memory, as np.empty's result
    assert pool.base(a[1:]) is a  # a view's base is the array itself (not the lease)


def test_memory_goes_back_when_the_array_goes_and_is_reused_for_the_same_bytes(pool):
    a = pool.take(SHAPE, np.float32)
    address = _address(a)
    del a
    assert pool.idle_bytes() == 4 * np.prod(SHAPE)
    b = pool.take((np.prod(SHAPE),), np.int32)  # another shape and dtype, the same bytes
    assert _address(b) == address and pool.idle_bytes() == 0
    c = pool.take(SHAPE, np.float64)  # other bytes: fresh memory
    assert _address(c) != address


@pytest.mark.parametrize("keep", [
    lambda a: a[1:, ::2],
    lambda a: a.T,
    lambda a: a.view(np.uint8),
    lambda a: memoryview(a),
    lambda a: np.lib.stride_tricks.as_strided(a, shape=(4,), strides=(4,)),
    lambda a: np.from_dlpack(a),
], ids=["slice", "transpose", "dtype-view", "memoryview", "as_strided", "dlpack"])
def test_memory_stays_lent_while_any_view_of_it_lives(pool, keep):
    a = pool.take(SHAPE, np.float32)
    a[...] = 7
    address = _address(a)
    view = keep(a)
    del a
    assert pool.idle_bytes() == 0
    b = pool.take(SHAPE, np.float32)
    assert _address(b) != address
    b[...] = -1
    assert np.asarray(view).tobytes() == np.asarray(keep(np.full(SHAPE, 7, np.float32))).tobytes()
    del view
    assert pool.idle_bytes() == 4 * np.prod(SHAPE)


def test_the_pool_keeps_no_more_than_its_limit_and_empty_lets_everything_go(pool,
                                                                             monkeypatch):
    nbytes = 4 * int(np.prod(SHAPE))
    monkeypatch.setattr(cpu_pool, "LIMIT", nbytes)
    a, b = pool.take(SHAPE, np.float32), pool.take(SHAPE, np.float32)
    del a, b  # the second pushes the first out
    assert pool.idle_bytes() == nbytes
    pool.empty()
    assert pool.idle_bytes() == 0


def test_sizes_no_longer_used_make_way_for_the_current_one(pool, monkeypatch):
    """A program whose sizes change (a last batch, a new phase) does not leave the pool full of
    sizes that never come back: the buffers that waited longest go first."""
    monkeypatch.setattr(cpu_pool, "LIMIT", 8 * 4096)
    for n in range(1, 9):  # eight old sizes fill the pool
        pool.take((n * 1024 - 1,), np.float32)
    assert pool.idle_bytes() > 7 * 4096
    a = pool.take((1024,), np.float32)
    address = _address(a)
    del a  # the current size is kept, an old one pushed out
    assert pool.idle_bytes() <= 8 * 4096
    assert _address(pool.take((1024,), np.float32)) == address


def test_a_pooled_array_is_writable_and_its_flag_can_be_set_again(pool):
    a = pool.take(SHAPE, np.float32)
    a.setflags(write=False)
    a.setflags(write=True)  # (as on np.empty's arrays: the lease exports a writable buffer)
    a[0, 0] = 1.0
    assert a[0, 0] == 1.0


def test_object_arrays_never_take_old_bytes(pool):
    a = pool.take((1024,), np.float64)
    a[...] = 1e300
    del a
    b = pool.take((1024,), object)  # old floats read as pointers would crash
    assert b.base is None and all(v is None for v in b)


def test_threads_dropping_and_taking_never_see_each_others_memory(pool):
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for i in range(200):
            value = float(rng.integers(1000))
            a = pool.take(SHAPE, np.float32)
            a[...] = value
            views = [a[::3], a.reshape(-1, 64)[5:]]
            del a
            for _ in range(3):
                pool.take(SHAPE, np.float32)[...] = -value
            if not all((v == value).all() for v in views):
                errors.append((seed, i))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert not errors
    assert 0 <= pool.idle_bytes() <= cpu_pool.LIMIT
    assert pool.idle_bytes() == sum(b.nbytes for b in cpu_pool._idle)


def test_the_default_limit_follows_a_containers_memory(tmp_path):
    """Inside a container the machine's memory is not the process's: a cgroup limit below it
    is what an eighth is taken of."""
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text("max\n")
    assert cpu_pool.usable_memory((str(v2),)) == cpu_pool.usable_memory(())
    v1.write_text(f"{2 << 30}\n")
    assert cpu_pool.usable_memory((str(v2), str(v1))) == min(2 << 30,
                                                              cpu_pool.usable_memory(()))


def test_a_finalizer_that_finds_the_lock_held_lets_the_memory_go_without_waiting(pool):
    a = pool.take(SHAPE, np.float32)
    with cpu_pool._lock:  # as a collection inside the pool's own code would find it
        del a
    assert pool.idle_bytes() == 0


def test_a_take_while_this_thread_holds_the_lock_takes_fresh_memory(pool):
    """(A signal handler or a finalizer computing inside the pool's own code: no deadlock.)"""
    a = pool.take(SHAPE, np.float32)
    address = _address(a)
    del a
    with cpu_pool._lock:
        b = pool.take(SHAPE, np.float32)
    assert _address(b) != address and pool.idle_bytes() == 4 * np.prod(SHAPE)


def test_a_buffer_something_still_sees_is_not_lent_again(pool):
    """A memoryview kept from a lease's insides (or a lease brought back to life after its
    finalizer ran) still sees the buffer: the pool lets it go instead of lending it."""
    a = pool.take(SHAPE, np.float32)
    a[...] = 7
    kept = a.base._objects  # (ctypes keeps the buffer's memoryview here)
    del a
    b = pool.take(SHAPE, np.float32)
    b[...] = -1
    assert all(np.frombuffer(v, np.float32).min() == 7 for v in
               (kept.values() if isinstance(kept, dict) else [kept]))


def test_large_op_results_reuse_the_memory_of_results_gone(pool):
    x = ad.tensor(np.linspace(-3, 3, cpu_parallel.MIN_SIZE, dtype=np.float32))
    y = ad.sigmoid(x)
    address = _address(y.array)
    del y
    z = ad.tanh(x)
    assert _address(z.array) == address
    np.testing.assert_array_equal(z.numpy(), np.tanh(x.numpy()))


def test_a_pooled_gradient_is_adopted_whole_and_a_shared_one_copied(pool):
    n = 1024  # n * n values: the rules run on the chunked path, results pooled
    w = ad.tensor(np.ones((n, n), np.float32), requires_grad=True)
    two = ad.tensor(np.full((n, n), 2, np.float32))
    (w.T * two).sum().backward()  # the rule's pooled result, transposed back: a whole view
    whole = w.grad.array.base
    assert whole is not None and id(whole.base) in cpu_pool._leases  # pooled, not copied
    np.testing.assert_array_equal(w.grad.numpy(), 2)

    a = ad.tensor(np.ones((n, n), np.float32), requires_grad=True)
    b = ad.tensor(np.ones((n, n), np.float32), requires_grad=True)
    ((a + b) * (two + 1)).sum().backward()  # add hands one pooled gradient to both inputs
    assert not np.shares_memory(a.grad.array, b.grad.array)
    a.grad.array[...] = 0
    np.testing.assert_array_equal(b.grad.numpy(), 3)


def test_a_compiled_step_on_pooled_arrays_matches_eager(pool):
    x = ad.tensor(np.linspace(-4, 4, cpu_parallel.MIN_SIZE, dtype=np.float32),
                  requires_grad=True)

    def step():
        x.grad = None
        (ad.sigmoid(x) * ad.tanh(x)).sum().backward()
        return x.grad

    eager = step().numpy().copy()
    compiled = ad.compile(step)
    for _ in range(3):
        np.testing.assert_array_equal(compiled().numpy(), eager)


def _run(code, *args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")
               and k not in ("GLIBC_TUNABLES", "GPUAD_MALLOC", "GPUAD_CPU_POOL_MB")}
    # (a pool of 1 GiB whatever the machine: an eighth of a small one would not hold a step)
    environ.update({"GPUAD_CPU_POOL_MB": "1024", **env}, GPUAD_DEVICE="cpu")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


_FAULTS = """
    import resource
    import sys
    import numpy as np
    import gpuad as ad
    from gpuad.backends import cpu_pool
    n = int(sys.argv[1])
    x = ad.tensor(np.random.default_rng(0).standard_normal(n).astype(np.float32),
                  requires_grad=True)

    def step():  # the scaling benchmark's chain: results and temporaries of several sizes
        y = x
        for _ in range(5):
            y = (y * 0.9 + 0.1).tanh().sin()
        return ad.grad(y.sum(), x)

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    print(cpu_pool.keep_freed_memory(), faults, x.array.nbytes // 4096)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux")
@pytest.mark.parametrize("n", [10**6, 10**7], ids=["heap", "split-and-pooled"])
def test_a_chain_run_again_faults_in_almost_no_memory(n):
    kept, faults, pages = _run(_FAULTS, str(n))
    if kept == "None":
        pytest.skip("malloc is not glibc's here")
    assert kept == "True"
    # (glibc left alone: some 7 and 3 faults per page of x, here)
    assert float(faults) < 0.05 * int(pages)


@pytest.mark.parametrize("env", [{"GPUAD_MALLOC": "system"}, {"MALLOC_ARENA_MAX": "2"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}])
def test_malloc_is_left_alone_where_the_program_tunes_it_or_asks(env):
    kept, _, _ = _run(_FAULTS, "1000", **env)
    assert kept == "None"


@pytest.mark.parametrize("setting, message", [
    ({"GPUAD_MALLOC": "off"}, "GPUAD_MALLOC must be 'keep'"),
    ({"GPUAD_CPU_POOL_MB": "lots"}, "GPUAD_CPU_POOL_MB must be a whole number"),
])
def test_a_setting_that_is_not_known_is_refused_clearly(setting, message):
    environ = dict(os.environ, GPUAD_DEVICE="cpu", **setting)
    done = subprocess.run([sys.executable, "-c", "import gpuad; gpuad.tensor([1.0]) + 1"],
                          env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and message in done.stderr


def test_no_pool_gives_plain_arrays():
    (base,) = _run("""
        from gpuad.backends import cpu_pool
        print(cpu_pool.take((1 << 20,), "float32").base)
    """, GPUAD_CPU_POOL_MB="0")
    assert base == "None"
