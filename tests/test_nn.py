"""ad.nn modules against PyTorch (same weights: same outputs and gradients), state dicts,
moves, modes and initializers."""
import numpy as np
import pytest

import gpuad as ad

nn = ad.nn


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _copy_from_torch(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _mlp_pair(torch):
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.LayerNorm(16),
                            torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4),
                            torch.nn.Sigmoid(), torch.nn.Linear(4, 3), torch.nn.ReLU()).double()
    o = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 8),
                      nn.Tanh(), nn.Linear(8, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.ReLU())
    o.to(ad.float64)
    _copy_from_torch(o, t)
    return o, t


def test_mlp_matches_torch(torch):
    ours, theirs = _mlp_pair(torch)
    xn = np.random.default_rng(0).standard_normal((5, 6))
    y = ours(ad.tensor(xn, dtype=ad.float64))
    ty = theirs(torch.tensor(xn))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    y.sum().backward()
    ty.sum().backward()
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name].grad.numpy(), rtol=1e-11,
                                   atol=1e-12, err_msg=name)


def test_embedding_matches_torch(torch):
    t = torch.nn.Embedding(7, 3).double()
    o = nn.Embedding(7, 3).to(ad.float64)
    _copy_from_torch(o, t)
    idx = np.array([[1, 6], [1, 0]])
    y, ty = o(ad.tensor(idx)), t(torch.tensor(idx))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy())
    (y * 2).sum().backward()
    (ty * 2).sum().backward()
    np.testing.assert_allclose(o.weight.grad.numpy(), t.weight.grad.numpy())


def test_registration_traversal_and_repr():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
            self.head = nn.Linear(3, 1, bias=False)
            self.scale = 2.0

        def forward(self, x):
            return self.head(self.body(x)) * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["body.0.weight", "body.0.bias",
                                                      "head.weight"]
    assert sum(p.size for p in net.parameters()) == 2 * 3 + 3 + 3
    assert len(list(net.children())) == 2 and net.scale == 2.0
    text = repr(net)
    assert "(body): Sequential(" in text and "(0): Linear(in_features=2, out_features=3, " \
        "bias=True)" in text and "(head): Linear(in_features=3, out_features=1, bias=False)" \
        in text
    assert net(ad.ones((4, 2))).shape == (4, 1)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        _ = net.missing


def test_state_dict_strict_errors_load_nothing():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    before = a.weight.numpy().copy()
    state = b.state_dict()
    bad = dict(state, extra=ad.zeros(1))
    del bad["bias"]
    with pytest.raises(RuntimeError, match=r"missing keys: \['bias'\].*unexpected keys: "
                                           r"\['extra'\].*Nothing was loaded"):
        a.load_state_dict(bad)
    np.testing.assert_array_equal(a.weight.numpy(), before)
    wrong = dict(state, weight=ad.zeros((2, 4)))
    with pytest.raises(RuntimeError, match=r"weight: the checkpoint has shape \(2, 4\), the "
                                           r"model \(2, 3\)"):
        a.load_state_dict(wrong)
    np.testing.assert_array_equal(a.weight.numpy(), before)
    assert a.load_state_dict(dict(state, extra=ad.zeros(1)), strict=False) == ([], ["extra"])
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())


def test_to_keeps_parameter_objects_and_zero_grad():
    m = nn.Linear(3, 2)
    w = m.weight
    m(ad.ones((1, 3))).sum().backward()
    m.to(ad.float64)
    assert m.weight is w and w.dtype == ad.float64 and w.grad.dtype == ad.float64
    assert w.requires_grad and w.is_leaf
    m.zero_grad()
    assert w.grad is None
    m(ad.ones((1, 3), dtype=ad.float64)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert not w.grad.numpy().any()


def test_train_eval_and_dropout():
    ad.manual_seed(1)
    d = nn.Dropout(0.5)
    x = ad.ones(20000)
    y = d(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and abs((y == 0).mean() - 0.5) < 0.02
    m = nn.Sequential(nn.Linear(2, 2), d)
    m.eval()
    assert not d.training and not m.training
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    m.train()
    assert d.training
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)


def test_initializers():
    ad.manual_seed(2)
    w = nn.Parameter(ad.empty((400, 300)))
    nn.init.kaiming_uniform_(w, a=np.sqrt(5))
    bound = np.sqrt(2.0 / 6) * np.sqrt(3.0 / 300)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.99 * bound
    nn.init.xavier_uniform_(w)
    assert np.abs(w.numpy()).max() <= np.sqrt(6.0 / 700)
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert abs(w.numpy().std() - np.sqrt(2.0 / 300)) < 0.002
    nn.init.xavier_normal_(w)
    assert abs(w.numpy().std() - np.sqrt(2.0 / 700)) < 0.002
    nn.init.normal_(w, 1.0, 0.5)
    assert abs(w.numpy().mean() - 1.0) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    nn.init.zeros_(w)
    assert not w.numpy().any() and w.requires_grad and w.is_leaf
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(nn.Parameter(ad.empty(3)))


# ---- found in review ---------------------------------------------------------------------------

def test_layernorm_init_is_exact_and_checks_shapes():
    garbage = ad.full((1000,), float("nan"))
    del garbage  # (empty() may reuse its memory)
    ln = nn.LayerNorm(1000)
    assert (ln.weight.numpy() == 1).all() and (ln.bias.numpy() == 0).all()
    with pytest.raises(ValueError, match="do not match normalized_shape"):
        nn.LayerNorm(4)(ad.ones((2, 1)))
    h = ad.tensor(np.linspace(-3, 3, 16).reshape(2, 8), dtype=ad.float16)
    out = nn.LayerNorm(8)(h)
    x = np.linspace(-3, 3, 16).reshape(2, 8).astype(np.float16).astype(np.float64)
    want = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    assert out.dtype == ad.float16 and np.abs(out.numpy() - want).max() < 5e-3


def test_setattr_keeps_buffers_and_guards_parameters():
    m = nn.Linear(2, 2)
    m.register_buffer("running", ad.zeros(2))
    m.running = m.running * 0.9 + 1
    assert "running" in m.state_dict()
    with pytest.raises(TypeError, match="as parameter 'weight'"):
        m.weight = ad.zeros((2, 2))
    m.bias = None
    assert [n for n, _ in m.named_parameters()] == ["weight"]


def test_load_state_dict_converts_everything_first():
    m = nn.Linear(2, 2)
    before = m.weight.numpy().copy()
    with pytest.raises(RuntimeError, match="Nothing was loaded"):
        m.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.array(["a", "b"])})
    with pytest.raises(RuntimeError, match="complex128 value cannot be loaded"):
        m.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(2, dtype=complex)})
    np.testing.assert_array_equal(m.weight.numpy(), before)


def test_deepcopy_keeps_parameters():
    import copy

    a = nn.Linear(2, 3)
    b = copy.deepcopy(a)
    assert isinstance(b.weight, nn.Parameter) and b.weight.requires_grad
    assert b.weight is not a.weight
    np.testing.assert_array_equal(b.weight.numpy(), a.weight.numpy())


@pytest.mark.usefixtures("cpu_default")  # the check raises at the op on the CPU
def test_embedding_refuses_indices_out_of_range():
    e = nn.Embedding(5, 3)
    for bad in ([-1], [5]):
        with pytest.raises(IndexError, match=r"in \[0, 5\)"):
            e(ad.tensor(bad))


def test_zero_grad_without_none_clears_nan_and_graph():
    m = nn.Linear(2, 1)
    m.weight.grad = ad.tensor([[np.nan, np.inf]])
    m.zero_grad(set_to_none=False)
    assert (m.weight.grad.numpy() == 0).all() and m.weight.grad.grad_fn is None
