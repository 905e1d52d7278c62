"""Two stand-in GPUs with cuda:0 current, as on a multi-GPU machine: work on cuda:1 tensors
(the optimizers' buffers and state included) is made on cuda:1, an empty parameter group
launches nothing, and the per-launch overhead is what it should be: no device switch when
the device is already current, one ``get_function`` per row kernel, dtype and device.

The stand-in raises, as CuPy does without peer access, when an operation reads an array of
another device than the current one; its counters (``fake_cupy.stats``) count ``setDevice``
and ``RawModule.get_function`` calls."""
import numpy as np
import pytest
from fake_cupy import installed

import gpuad as ad


@pytest.fixture
def two_gpus(monkeypatch):
    with installed(monkeypatch, devices=2) as stats:
        yield stats


def _device_of(a):
    return a.device.id


def _current():
    import cupy

    return cupy.cuda.runtime.getDevice()


def _params(device, seed=0):
    rng = np.random.default_rng(seed)
    return [ad.tensor(rng.standard_normal(shape), dtype=ad.float32, device=device,
                      requires_grad=True) for shape in ((3, 4), (4,), (2, 3))]


def _loss(ps):
    return sum(((p * p) * (i + 1.0)).sum() for i, p in enumerate(ps))


OPTIMIZERS = [(ad.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
              (ad.optim.Adam, dict(lr=0.01)),
              (ad.optim.AdamW, dict(lr=0.01, weight_decay=0.1))]


def _run(make, options, device, steps, drop=None):
    """Parameters on ``device`` after ``steps`` steps of ``make``; at step ``drop`` (when
    given) the last parameter has no gradient, which sends the group one by one."""
    ps = _params(device)
    opt = make(ps, **options)
    for step in range(steps):
        opt.zero_grad()
        used = ps[:-1] if step == drop else ps
        _loss(used).backward()
        opt.step()
    return ps, opt


@pytest.mark.parametrize("make,options", OPTIMIZERS, ids=[m.__name__ for m, _ in OPTIMIZERS])
def test_fused_optimizer_on_cuda1_keeps_its_buffers_there(two_gpus, make, options):
    ps, opt = _run(make, options, "cuda:1", 3)
    assert _current() == 0
    (flat,) = opt._flat[0]
    buffers = [flat.data, flat.grad, flat.hyper, *flat.state.values()]
    assert [_device_of(b) for b in buffers] == [1] * len(buffers)
    assert all(_device_of(p._a) == 1 for p in ps)
    want, _ = _run(make, options, "cpu", 3)
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,options", OPTIMIZERS, ids=[m.__name__ for m, _ in OPTIMIZERS])
def test_one_by_one_optimizer_on_cuda1_keeps_its_state_there(two_gpus, make, options):
    """A step where a parameter has no gradient sends the group one by one: the state taken
    from the flat buffers, and the state made from then on, stay on cuda:1."""
    ps, opt = _run(make, options, "cuda:1", 4, drop=2)
    assert _current() == 0 and 0 not in opt._flat
    arrays = [v for p in ps for v in opt.state.get(id(p), {}).values() if hasattr(v, "device")]
    assert arrays and all(_device_of(a) == 1 for a in arrays)
    want, _ = _run(make, options, "cpu", 4, drop=2)
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_loaded_optimizer_state_lands_on_the_parameters_device(two_gpus):
    """State loaded one by one (parameters at different steps) is copied on cuda:1, not on
    the current device (CuPy copies to the current device)."""
    ps, opt = _run(ad.optim.Adam, dict(lr=0.01), "cuda:1", 2, drop=1)
    saved = opt.state_dict()
    fresh = ad.optim.Adam(ps, lr=0.01)
    fresh.load_state_dict(saved)
    arrays = [v for s in fresh.state.values() for v in s.values() if hasattr(v, "device")]
    assert arrays and all(_device_of(a) == 1 for a in arrays)
    _loss(ps).backward()
    fresh.step()  # reads the loaded state on cuda:1: no cross-device error


def test_zero_size_parameter_group_launches_nothing(two_gpus):
    """An empty grid is an invalid launch configuration on CUDA: the group of zero-size
    parameters is skipped, the other group still takes its (right) step."""
    empty = ad.zeros((0, 3), device="cuda:0", requires_grad=True)
    ps = _params("cuda:0")
    opt = ad.optim.SGD([{"params": [empty]}, {"params": ps}], lr=0.1, momentum=0.9)
    kernels = ps[0].device.backend.kernels
    for _ in range(2):
        opt.zero_grad()
        (_loss(ps) + empty.sum()).backward()
        before = kernels.launches
        opt.step()
        assert kernels.launches - before == 1  # the non-empty group's update only
    assert empty.shape == (0, 3)
    want = _params("cpu")
    ref = ad.optim.SGD(want, lr=0.1, momentum=0.9)
    for _ in range(2):
        ref.zero_grad()
        _loss(want).backward()
        ref.step()
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)


def test_only_zero_size_parameters(two_gpus):
    empty = ad.zeros((0,), device="cuda:0", requires_grad=True)
    opt = ad.optim.Adam([empty], lr=0.1)
    empty.sum().backward()
    before = empty.device.backend.kernels.launches
    opt.step()
    assert empty.device.backend.kernels.launches == before


def test_no_device_switch_when_the_device_is_current(two_gpus):
    """Every backend call makes its device current; where it already is, that costs no
    ``setDevice`` (``with Device(i)`` would cost one, or two)."""
    stats = two_gpus
    x = ad.tensor(np.linspace(-1, 1, 12).reshape(3, 4), device="cuda:0", requires_grad=True)
    stats.reset()
    y = ad.softmax(ad.sigmoid(x * 2.0), dim=1).sum()
    y.backward()
    assert stats.set_device == 0 and stats.launches > 0


def test_work_on_the_other_device_switches_and_restores(two_gpus):
    stats = two_gpus
    x = ad.tensor(np.linspace(-1, 1, 12).reshape(3, 4), device="cuda:1", requires_grad=True)
    stats.reset()
    y = ad.softmax(ad.sigmoid(x * 2.0), dim=1).sum()
    y.backward()
    assert stats.set_device > 0 and _current() == 0
    assert _device_of(x.grad._a) == 1 and _device_of(y._a) == 1
    want = ad.tensor(x.numpy(), requires_grad=True)
    ad.softmax(ad.sigmoid(want * 2.0), dim=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), want.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_row_kernel_function_is_looked_up_once_per_dtype_and_device(two_gpus):
    stats = two_gpus
    rng = np.random.default_rng(1)
    for device in ("cuda:0", "cuda:1"):
        x = ad.tensor(rng.standard_normal((8, 5)), dtype=ad.float32, device=device)
        stats.reset()
        ad.softmax(x, dim=1)
        assert stats.get_function == 1  # the first launch on this device
        for _ in range(3):
            ad.softmax(x, dim=1)
        assert stats.get_function == 1 and stats.launches == 4
        ad.softmax(x.double(), dim=1)
        assert stats.get_function == 2  # another dtype: its own function


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_every_op_case_on_cuda1_runs_there_and_matches_the_cpu(two_gpus, dtype):
    """Each op of tests/op_cases.py, forward and backward, on cuda:1 while cuda:0 is current:
    nothing reaches for cuda:0 (float16's float32 reductions included), and the values and
    gradients are the CPU's."""
    from op_cases import CASES

    tol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-10}[dtype]
    rng = np.random.default_rng(0)
    for case in CASES:
        inputs = [np.asarray(a).astype(dtype) for a in case.inputs(rng)]
        results = {}
        for device in ("cpu", "cuda:1"):
            xs = [ad.tensor(a, device=device, requires_grad=case.grad) for a in inputs]
            y = case.fn(*xs, **case.extra)
            if case.grad:
                y.backward(ad.ones(y.shape, dtype=y.dtype, device=device))
            results[device] = [y.numpy()] + [x.grad.numpy() for x in xs if case.grad]
            assert _current() == 0, case.name
        for want, got in zip(results["cpu"], results["cuda:1"]):
            np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                       rtol=tol, atol=tol, err_msg=f"{case.name} {dtype}")


@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_optimizer_state_loaded_from_numpy_moves_to_the_parameters_device(two_gpus, device):
    """A state dict of NumPy arrays (``ad.load`` of a checkpoint, a CPU optimizer's) loaded
    into a CUDA optimizer that goes on one parameter at a time (parameters at different steps):
    the state becomes arrays on the parameters' device, and the step is the CPU's."""
    def run(dev):
        ps = [ad.tensor(np.ones(3), dtype=ad.float32, device=dev, requires_grad=True),
              ad.tensor(np.ones(2), dtype=ad.float32, device=dev, requires_grad=True)]
        opt = ad.optim.Adam(ps, lr=0.1)
        opt.load_state_dict({
            "state": {0: {"step": 1, "exp_avg": np.full(3, 0.1, np.float32),
                          "exp_avg_sq": np.full(3, 0.01, np.float32)},
                      1: {"step": 2, "exp_avg": np.full(2, 0.1, np.float32),
                          "exp_avg_sq": np.full(2, 0.01, np.float32)}},
            "param_groups": opt.state_dict()["param_groups"]})
        sum((p * p).sum() for p in ps).backward()
        opt.step()
        return [p.numpy() for p in ps]

    for got, want in zip(run(device), run("cpu")):
        np.testing.assert_allclose(got, want, rtol=1e-6)
