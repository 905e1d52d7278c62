"""The fused CUDA optimizer path on the CuPy stand-in (which runs kernels/optim.cuh through its
host build): parameters become views of one flat buffer per dtype, a step is one launch, the
results equal the CPU path (which equals PyTorch), and the edge cases (a parameter without a
gradient, set_to_none, schedules changing the learning rate, state dicts) stay exact."""
import numpy as np
import pytest
from fake_cupy import installed

import gpuad as ad

OPTIMIZERS = {
    "sgd": lambda p: ad.optim.SGD(p, lr=0.05),
    "sgd_momentum": lambda p: ad.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1,
                                           weight_decay=0.01),
    "nesterov": lambda p: ad.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: ad.optim.Adam(p, lr=0.01, weight_decay=0.01),
    "adamw": lambda p: ad.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99)),
    "adam_decoupled": lambda p: ad.optim.Adam(p, lr=0.01, weight_decay=0.1,
                                              decoupled_weight_decay=True),
    "adam_betas_0_tensor_lr": lambda p: ad.optim.Adam(p, lr=ad.tensor(0.01), betas=(0, 0.0)),
}


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


def _model(device):
    ad.manual_seed(0)
    rng = np.random.default_rng(0)
    m = ad.nn.Sequential(ad.nn.Linear(5, 7), ad.nn.Tanh(), ad.nn.Linear(7, 3))
    m.load_state_dict({k: rng.standard_normal(v.shape) for k, v in m.state_dict().items()})
    return m.to(ad.float64).to(device)


def _train(device, make, steps=5, set_to_none=True, schedule=None, skip=None):
    m = _model(device)
    opt = make(list(m.parameters()))
    sched = schedule(opt) if schedule else None
    x = ad.tensor(np.random.default_rng(1).standard_normal((8, 5)), dtype=ad.float64,
                  device=device)
    launches = []
    for step in range(steps):
        opt.zero_grad(set_to_none=set_to_none)
        out = m(x)
        if skip is not None and step >= skip:
            out = m[2](x @ ad.zeros((5, 7), dtype=ad.float64, device=device))  # m[0] unused
        (out ** 2).sum().backward()
        kernels = getattr(x.device.backend, "kernels", None)
        before = kernels.launches if kernels else 0
        opt.step()
        launches.append((kernels.launches - before) if kernels else None)
        if sched:
            sched.step()
    return [p.numpy() for p in m.parameters()], launches, opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("set_to_none", [True, False])
def test_fused_step_equals_the_cpu_path(name, set_to_none, fake_cuda):
    want, _, _ = _train("cpu", OPTIMIZERS[name], set_to_none=set_to_none)
    got, launches, opt = _train("cuda", OPTIMIZERS[name], set_to_none=set_to_none)
    assert launches == [1] * 5, "one launch per step for all parameters"
    (flat,) = opt._flat[0]
    for p in opt.param_groups[0]["params"]:  # parameters are views of the flat buffer
        assert p.array.base is flat.data or p.array.base is flat.data.base
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_schedule_changes_reach_the_device(fake_cuda):
    def make(p):
        return ad.optim.Adam(p, lr=0.05)

    def sched(o):
        return ad.optim.lr_scheduler.StepLR(o, 2, gamma=0.5)

    want, _, _ = _train("cpu", make, steps=6, schedule=sched)
    got, _, _ = _train("cuda", make, steps=6, schedule=sched)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_a_parameter_without_gradient_is_skipped_exactly(fake_cuda):
    want, _, _ = _train("cpu", OPTIMIZERS["adam"], steps=5, skip=2)
    got, launches, opt = _train("cuda", OPTIMIZERS["adam"], steps=5, skip=2)
    assert launches[:2] == [1, 1] and not opt._flat  # one by one once a gradient is missing
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_state_dict_of_the_fused_path(fake_cuda):
    _, _, cpu_opt = _train("cpu", OPTIMIZERS["adam"], steps=3)
    _, _, opt = _train("cuda", OPTIMIZERS["adam"], steps=3)
    ours, theirs = opt.state_dict(), cpu_opt.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for i, s in theirs["state"].items():
        assert ours["state"][i]["step"] == s["step"] == 3
        for k in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(ours["state"][i][k].get(), s[k], rtol=1e-13)
    m = _model("cuda")
    fresh = ad.optim.Adam(list(m.parameters()), lr=0.01, weight_decay=0.01)
    fresh.load_state_dict(ours)
    assert fresh.state_dict()["state"][0]["step"] == 3


def test_module_to_after_the_optimizer_keeps_training(fake_cuda):
    m = ad.nn.Linear(3, 4).to("cuda")
    opt = ad.optim.SGD(m.parameters(), lr=0.1)
    m.to(ad.float64)
    before = m.weight.numpy().copy()
    opt.zero_grad()
    m(ad.ones((2, 3), dtype=ad.float64, device="cuda")).sum().backward()
    opt.step()
    np.testing.assert_allclose(before - m.weight.numpy(), 0.2, rtol=1e-12)


def test_unused_parameter_keeps_no_gradient(fake_cuda):
    def run(device):
        m = _model(device)
        opt = ad.optim.AdamW(list(m.parameters()), lr=0.1, weight_decay=0.5)
        x = ad.ones((2, 7), dtype=ad.float64, device=device)
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            (m[2](x) ** 2).sum().backward()  # m[0] never used
            opt.step()
        return m[0].weight.grad, [p.numpy() for p in m.parameters()]

    (g_cpu, want), (g_cuda, got) = run("cpu"), run("cuda")
    assert g_cpu is None and g_cuda is None
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_loading_a_fresh_state_resets_the_moments(fake_cuda):
    for device in ("cpu", "cuda"):
        m = _model(device)
        opt = ad.optim.Adam(list(m.parameters()), lr=0.1)
        x = ad.ones((2, 5), dtype=ad.float64, device=device)
        for _ in range(2):
            opt.zero_grad()
            (m(x) ** 2).sum().backward()
            opt.step()
        opt.load_state_dict(ad.optim.Adam(list(_model(device).parameters()), lr=0.1)
                            .state_dict())
        opt.zero_grad()
        (m(x) ** 2).sum().backward()
        opt.step()
        if device == "cpu":
            want = [p.numpy() for p in m.parameters()]
    for a, b in zip([p.numpy() for p in m.parameters()], want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
