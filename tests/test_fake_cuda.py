"""The CUDA code path on a machine without a GPU, with NumPy standing in for CuPy
(tests/fake_cupy): every op runs on "cuda" and must agree with "cpu" in value and gradient,
and the device rules of SPEC section 2 hold."""
import numpy as np
import pytest
from fake_cupy import installed
from op_cases import CASES

import gpuad as ad


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_op_on_cuda_matches_cpu(case, fake_cuda):
    xs = case.inputs(np.random.default_rng(4))
    results = {}
    for dev in ("cpu", "cuda"):
        ts = [ad.tensor(x, dtype=ad.float64, device=dev, requires_grad=case.grad) for x in xs]
        out = case.fn(*ts)
        assert out.device == dev
        grads = ()
        if case.grad:
            u = ad.tensor(np.linspace(-1, 1, out.size).reshape(out.shape), device=dev,
                          dtype=ad.float64)
            grads = ad.grad(out, ts, u, allow_unused=True)
            for g in grads:
                assert g is None or g.device == dev
        results[dev] = (out.numpy(), [None if g is None else g.numpy() for g in grads])
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-12)
    for a, b in zip(results["cuda"][1], results["cpu"][1]):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_default_device_is_cuda_when_usable(fake_cuda):
    ad.set_default_device("auto")
    assert ad.get_default_device() == "cuda:0"
    assert ad.zeros(2).device == "cuda"
    assert ad.cuda.is_available() and ad.cuda.device_count() == 1
    ad.cuda.synchronize()


def test_device_rules_on_cuda(fake_cuda):
    c = ad.ones(3, device="cuda", requires_grad=True)
    p = ad.ones(3, device="cpu")
    with pytest.raises(ad.DeviceMismatchError, match="cuda:0 and cpu"):
        c + p
    with pytest.raises(ad.DeviceMismatchError, match="NumPy array"):
        c * np.ones(3)
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        np.asarray(c)
    assert repr(c) == "tensor([1., 1., 1.], device='cuda:0', requires_grad=True)"
    assert c.sum().item() == 3.0
    assert c.numpy().tolist() == [1.0, 1.0, 1.0]


def test_moves_between_devices_are_explicit_and_differentiable(fake_cuda):
    x = ad.tensor([1.0, 2.0], device="cpu", requires_grad=True)
    y = (x.cuda() * 3).to("cpu")
    assert y.device == "cpu"
    y.sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
    w = ad.zeros(2, device="cuda")
    w.copy_(ad.tensor([5.0, 6.0]))
    assert w.tolist() == [5.0, 6.0]


def test_random_and_creation_on_cuda(fake_cuda):
    ad.manual_seed(7)
    a = ad.randn(3, device="cuda")
    ad.manual_seed(7)
    b = ad.randn(3, device="cuda")
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == ad.float32
    for t in (ad.eye(2, device="cuda"), ad.arange(3, device="cuda"),
              ad.full((2,), 1.5, device="cuda"), ad.linspace(0, 1, 3, device="cuda")):
        assert t.device == "cuda"

def test_memory_info_without_nvml_reads_the_runtime(fake_cuda, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # import fails
    assert ad.cuda.memory_info("cuda:0") == (1 << 30, 2 << 30)


def test_every_op_refuses_host_arrays_as_values_on_cuda(fake_cuda):
    c = ad.ones(3, device="cuda", requires_grad=True)
    host = np.ones(3)
    for f in (lambda: ad.where(host > 0, c, 0.0), lambda: ad.clip(c, host, None),
              lambda: ad.maximum(c, host), lambda: (c * 2).backward(gradient=host)):
        with pytest.raises(ad.DeviceMismatchError):
            f()
    with pytest.raises(ad.DeviceMismatchError, match="gather_nd"):
        ad.gather_nd(ad.ones(2, 2, device="cuda"), ad.tensor([[0, 1]], device="cpu"))
    # Index data may come from the host: it says where to read, it is not a value.
    assert ad.take_along_axis(ad.ones(2, 2, device="cuda"), [[0], [1]], 1).shape == (2, 1)


def test_cuda_specific_differences_are_handled(fake_cuda):
    c = ad.tensor([0.5, 1.0, 2.0], device="cuda")
    assert (c * np.float64(2)).dtype == ad.float64  # NumPy scalars are values, not host arrays
    assert ad.erf(c.astype(ad.float16)).dtype == ad.float16
    assert ad.erf(ad.tensor([1, 2], device="cuda")).dtype == ad.float64
    assert ad.flip(ad.tensor(3.0, device="cuda")).item() == 3.0
    assert ad.clip(c, min=1.0).tolist() == [1.0, 1.0, 2.0]  # (one bound None: CuPy's clip)
    assert ad.clip(c, max=1.0).tolist() == [0.5, 1.0, 1.0]
    with pytest.raises(TypeError, match="at least one of min and max"):
        ad.clip(c)  # (PyTorch refuses clamp without bounds too)
    # CuPy (and the stand-in) wrap out-of-range indices around; gpuad's check raises at the
    # next host read
    picked = c[[0, 3]]
    with pytest.raises(IndexError, match="axis 0 of size 3"):
        picked.numpy()
    picked = ad.ones(2, 2, device="cuda")[..., [2]]
    with pytest.raises(IndexError, match="axis 1 of size 2"):
        picked.numpy()


def test_tapes_variables_and_custom_gradients_on_cuda(fake_cuda):
    """The TensorFlow-style API keeps every tensor it makes on the source's device."""
    results = {}
    for dev in ("cpu", "cuda"):
        v = ad.Variable([[0.5, -1.0], [2.0, 0.25]], dtype=ad.float64, device=dev)
        x = ad.constant([[1.0, 2.0], [3.0, 4.0]], dtype=ad.float64, device=dev)
        u = ad.constant([7.0], device=dev)

        @ad.custom_gradient
        def softsign(z):
            return z / (1 + abs(z)), lambda g: g / (1 + abs(z)) ** 2

        with ad.GradientTape(persistent=True) as tape:
            tape.watch([x, u])
            y = softsign(x @ v) * ad.reduce_sum(x, axis=1, keepdims=True)
            s = ad.reduce_sum(y)
        grads = tape.gradient(s, {"v": v, "x": x, "u": u}, unconnected_gradients="zero")
        jac = tape.jacobian(y, x)
        bjac = tape.batch_jacobian(y, x)
        v.assign_sub(0.1 * grads["v"])
        for t in (*grads.values(), jac, bjac, v):
            assert t.device == dev
        results[dev] = [t.numpy() for t in (*grads.values(), jac, bjac, v)]
    for a, b in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_custom_outputs_keep_their_own_devices(fake_cuda):
    class SumOnHost(ad.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum().to("cpu"), x * 2.0

        @staticmethod
        def backward(ctx, g_sum, g_twice):
            return g_sum.to("cuda") + g_twice * 2.0

    x = ad.tensor([1.0, 2.0], device="cuda", requires_grad=True)
    total, twice = SumOnHost.apply(x)
    assert total.device == "cpu" and twice.device == "cuda"
    (total * 3.0).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


@pytest.mark.parametrize("case", [c for c in CASES if c.grad],
                         ids=[c.name for c in CASES if c.grad])
def test_forward_mode_on_cuda_matches_cpu(case, fake_cuda):
    """jvp and both Jacobian modes route their tangents through the CUDA backend."""
    rng = np.random.default_rng(5)
    xs = case.inputs(rng)
    vs = [rng.standard_normal(x.shape) for x in xs]
    results = {}
    for dev in ("cpu", "cuda"):
        ts = [ad.tensor(x, dtype=ad.float64, device=dev) for x in xs]
        _, t = ad.jvp(case.fn, ts, [ad.tensor(v, dtype=ad.float64, device=dev) for v in vs])
        jac = ad.jacobian(case.fn, ts[0] if len(ts) == 1 else tuple(ts), mode="reverse")
        jac = jac if isinstance(jac, tuple) else (jac,)
        assert t.device == dev and all(j.device == dev for j in jac)
        results[dev] = [t.numpy()] + [j.numpy() for j in jac]
    for a, b in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
