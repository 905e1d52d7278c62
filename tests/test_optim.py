"""ad.optim against torch.optim: the same parameters after several steps (SGD with momentum,
dampening, Nesterov and weight decay; Adam; AdamW), the schedules, and state dicts."""
import numpy as np
import pytest

import gpuad as ad

torch = pytest.importorskip("torch")


def _run(make_ours, make_theirs, steps=6, schedule=None):
    rng = np.random.default_rng(0)
    wn, an = rng.standard_normal((4, 3)), rng.standard_normal((5, 4))
    w = ad.tensor(wn, dtype=ad.float64, requires_grad=True)
    tw = torch.tensor(wn, requires_grad=True)
    a, ta = ad.tensor(an, dtype=ad.float64), torch.tensor(an)
    opt, topt = make_ours([w]), make_theirs([tw])
    sched = schedule[0](opt) if schedule else None
    tsched = schedule[1](topt) if schedule else None
    for _ in range(steps):
        opt.zero_grad()
        topt.zero_grad()
        (ad.tanh(a @ w) ** 2).sum().backward()
        (torch.tanh(ta @ tw) ** 2).sum().backward()
        opt.step()
        topt.step()
        if sched:
            sched.step()
            tsched.step()
            assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-12, atol=1e-13)
    return opt


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3),
                                dict(momentum=0.9, nesterov=True, weight_decay=0.01),
                                dict(weight_decay=0.1)],
                         ids=["plain", "momentum", "dampening", "nesterov_wd", "wd"])
def test_sgd_matches_torch(kw):
    _run(lambda p: ad.optim.SGD(p, lr=0.05, **kw), lambda p: torch.optim.SGD(p, lr=0.05, **kw))


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_adam_and_adamw_match_torch(wd):
    _run(lambda p: ad.optim.Adam(p, lr=0.01, weight_decay=wd),
         lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=wd))
    _run(lambda p: ad.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), weight_decay=wd),
         lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.8, 0.99), weight_decay=wd))


def test_schedules_match_torch():
    _run(lambda p: ad.optim.SGD(p, lr=0.1, momentum=0.5),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5), steps=9,
         schedule=(lambda o: ad.optim.lr_scheduler.StepLR(o, 3, gamma=0.5),
                   lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5)))
    _run(lambda p: ad.optim.Adam(p, lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05), steps=9,
         schedule=(lambda o: ad.optim.lr_scheduler.CosineAnnealingLR(o, 5, eta_min=0.001),
                   lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 5, eta_min=0.001)))


def test_state_dict_round_trip_continues_identically():
    opt = _run(lambda p: ad.optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01))
    state = opt.state_dict()
    assert state["param_groups"][0]["params"] == [0] and state["state"][0]["step"] == 6
    (w,) = opt.param_groups[0]["params"]
    copy = ad.tensor(w.numpy(), requires_grad=True)
    other = ad.optim.Adam([copy], lr=0.5)
    other.load_state_dict(state)
    assert other.param_groups[0]["lr"] == 0.01
    for o, p in ((opt, w), (other, copy)):
        p.grad = ad.ones_like(p)
        o.step()
    np.testing.assert_array_equal(copy.numpy(), w.numpy())


def test_bad_parameters():
    with pytest.raises(ValueError, match="empty parameter list"):
        ad.optim.SGD([], lr=0.1)
    w = ad.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="floating leaf tensors"):
        ad.optim.SGD([w * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than once"):
        ad.optim.SGD([{"params": [w]}, {"params": [w], "lr": 0.5}], lr=0.1)
    frozen = ad.ones(2)  # frozen parameters are accepted (and never move), as in PyTorch
    opt = ad.optim.SGD([w, frozen], lr=0.1)
    w.grad = ad.ones(2)
    opt.step()
    assert frozen.numpy().tolist() == [1.0, 1.0] and np.allclose(w.numpy(), 0.9)
    ad.optim.SGD(w, lr=0.1).step()  # one tensor as the parameters
    with pytest.raises(ValueError, match="Nesterov momentum needs"):
        ad.optim.SGD([ad.ones(2, requires_grad=True)], nesterov=True)


# ---- PyTorch's settings: tensor learning rates, betas of 0, options gpuad lacks --------------

@pytest.mark.parametrize("lr", ["tensor", "tensor32", "array", "np32"])
def test_a_tensor_learning_rate_is_accepted_as_in_pytorch(lr):
    """PyTorch takes a 0-d tensor lr; gpuad takes it (and a 0-d array) as its float."""
    ours = {"tensor": ad.tensor(0.05, dtype=ad.float64), "tensor32": ad.tensor(0.05),
            "array": np.array(0.05), "np32": np.float32(0.05)}[lr]
    theirs = float(np.float32(0.05)) if lr.endswith("32") else torch.tensor(0.05,
                                                                            dtype=torch.float64)
    opt = _run(lambda p: ad.optim.SGD(p, lr=ours, momentum=0.9),
               lambda p: torch.optim.SGD(p, lr=theirs, momentum=0.9))
    assert opt.param_groups[0]["lr"].__class__ is float
    _run(lambda p: ad.optim.Adam(p, lr=ours, betas=(ad.tensor(0.8), np.array(0.9))),
         lambda p: torch.optim.Adam(p, lr=theirs, betas=(0.800000011920929, 0.9)))


def test_a_tensor_learning_rate_of_several_numbers_is_refused():
    with pytest.raises(ValueError, match=r"gpuad\.optim\.SGD: lr is a number .*shape \(2,\)"):
        ad.optim.SGD([ad.ones(2, requires_grad=True)], lr=ad.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=r"gpuad\.optim\.Adam: invalid lr=-0\.5"):
        ad.optim.Adam([ad.ones(2, requires_grad=True)], lr=ad.tensor(-0.5))


@pytest.mark.parametrize("betas", [(0, 0), (0.0, 0.999), (0.9, 0.0)])
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_betas_of_zero_train_as_in_pytorch(name, betas):
    """(PyTorch refuses betas of two ints; gpuad takes them as the numbers they are.)"""
    _run(lambda p: getattr(ad.optim, name)(p, lr=0.01, betas=betas),
         lambda p: getattr(torch.optim, name)(p, lr=0.01, betas=tuple(map(float, betas))))


@pytest.mark.parametrize("betas", [(1, 0.9), (0.9, 1.0), (-0.1, 0.9), (0.9, 2)])
def test_betas_outside_0_1_are_refused_naming_the_beta(betas):
    i = 0 if not 0 <= betas[0] < 1 else 1
    with pytest.raises(ValueError, match=rf"gpuad\.optim\.Adam: invalid betas\[{i}\]=.*\[0, 1\)"):
        ad.optim.Adam([ad.ones(2, requires_grad=True)], betas=betas)
    with pytest.raises(ValueError):
        torch.optim.Adam([torch.ones(2, requires_grad=True)], betas=betas)


def test_decoupled_weight_decay_is_adamw():
    _run(lambda p: ad.optim.Adam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
         lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True))


def test_foreach_and_fused_pick_an_implementation_and_are_accepted():
    _run(lambda p: ad.optim.SGD(p, lr=0.05, momentum=0.9, foreach=True, fused=False),
         lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, foreach=True))
    _run(lambda p: ad.optim.AdamW(p, lr=0.01, foreach=False, fused=True),
         lambda p: torch.optim.AdamW(p, lr=0.01, foreach=False))


@pytest.mark.parametrize("name,option", [
    ("SGD", "maximize"), ("SGD", "differentiable"), ("Adam", "amsgrad"), ("Adam", "maximize"),
    ("Adam", "capturable"), ("Adam", "differentiable"), ("AdamW", "amsgrad"),
    ("AdamW", "maximize"), ("AdamW", "capturable")])
def test_pytorch_options_gpuad_lacks_are_refused_clearly(name, option):
    """Not a bare TypeError from the constructor: the optimizer, the option, and that it is
    not supported; also as a parameter group's key. Off (False) is accepted."""
    p = ad.ones(2, requires_grad=True)
    make = getattr(ad.optim, name)
    msg = rf"gpuad\.optim\.{name}: {option}=True is not supported"
    with pytest.raises(ValueError, match=msg):
        make([p], **{option: True})
    with pytest.raises(ValueError, match=msg):
        make([{"params": [p], option: True}])
    opt = make([p], **{option: False})
    with pytest.raises(ValueError, match=msg):
        opt.add_param_group({"params": [ad.ones(1, requires_grad=True)], option: True})
    getattr(torch.optim, name)([torch.ones(2, requires_grad=True)], **{option: False})
