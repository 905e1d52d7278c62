"""Every basic index (ints, slices, None, Ellipsis and their mixes) is a view, as in PyTorch,
also a full integer index that picks one element (a 0-d view): in-place changes through it
reach the base, its graph and its version counter. Checked against PyTorch (float64), on the
reproducers of issue 15, on chains of views, and on random in-place programs through views.
Advanced (integer-array, boolean) indexing stays a copy."""
import numpy as np
import pytest
from fake_cupy import installed
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gpuad as ad

SAVED = "modified by an in-place operation"


# ---- the reproducers of issue 15 ------------------------------------------------------------

def test_inplace_through_element_views_reaches_the_base():
    w = ad.zeros(2, 3)
    with ad.no_grad():
        w[0, 1].fill_(7.0)
        w[1][2].add_(5.0)
    assert w.tolist() == [[0.0, 7.0, 0.0], [0.0, 0.0, 5.0]]


def test_inplace_through_an_element_view_is_differentiated():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    y[1, 1].mul_(10)
    y.sum().backward()
    assert y.tolist() == [[1.0, 2.0], [3.0, 40.0]]
    assert x.grad.tolist() == [[1.0, 1.0], [1.0, 10.0]]


def test_element_views_share_storage_and_version():
    w = ad.zeros(2, 3)
    for v in (w[0, 1], w[1][2], w[-1, -1], w[0, 1, ...], w.T[2, 1], w[None, 1, None, 2],
              w.reshape(6)[4], w[0][1:][0]):
        assert v.shape[-1:] in ((), (1,)) and v.size == 1
        assert np.shares_memory(v.array, w.array)
        assert v._ver is w._ver
    s = ad.tensor(3.0)
    for v in (s[()], s[...], s[None]):
        assert np.shares_memory(v.array, s.array)


def test_setitem_through_views_and_reads_after_the_base_changed():
    w = ad.zeros(2, 3)
    e, row = w[1, 2], w[1]
    w[0, 1] = 5
    w[1][2] = 6
    row[0] = 7
    assert w.tolist() == [[0.0, 5.0, 0.0], [7.0, 0.0, 6.0]]
    assert e.item() == 6.0 and float(e) == 6.0 and int(e) == 6
    w.mul_(2)
    assert e.item() == 12.0 and float(w[0, 1]) == 10.0 and e.tolist() == 12.0
    assert f"{e:.1f}" == "12.0" and bool(e)


def test_integer_scalars_index_like_ints():
    """NumPy integers and 0-d integer tensors index as ints, giving views (PyTorch's rule)."""
    w = ad.zeros(2, 3)
    w[np.int64(1), ad.tensor(2)].fill_(4.0)
    w[ad.tensor(0)][np.int32(0)] += 1.0
    assert w.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 4.0]]


def test_advanced_indexing_stays_a_copy():
    w = ad.zeros(2, 3)
    for c in (w[[0, 1]], w[np.array([1])], w[w > -1], w[ad.tensor([0]), 1], w[np.array(1)],
              w[True], w[0, False]):
        c.fill_(9.0)
    assert w.tolist() == [[0.0] * 3] * 2


# ---- version counters, leaves, no_grad ------------------------------------------------------

def test_saved_tensor_changed_through_an_element_view_is_caught():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    z = (y * y).sum()  # saves y
    y[0, 1].add_(1.0)
    with pytest.raises(RuntimeError, match=SAVED):
        z.backward()
    x.grad = None
    y = x * 1
    e = y[1][0]
    z = e.sin()  # saves the element view
    y[1].mul_(2.0)  # changes it through another view
    with pytest.raises(RuntimeError, match=SAVED):
        z.backward()


def test_element_view_of_a_leaf_cannot_change_it():
    x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        x[0, 1].mul_(2)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        x[0][1] = 3.0
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with ad.no_grad():
        x[0, 1].mul_(2)
    assert x.tolist() == [[1.0, 4.0], [3.0, 4.0]]


def test_element_view_made_under_no_grad_is_refused_with_grad_on():
    y = ad.tensor([1.0, 2.0], requires_grad=True) * 1
    with ad.no_grad():
        e = y[1]
    with pytest.raises(RuntimeError, match="made under no_grad"):
        e.mul_(5)
    assert y.tolist() == [1.0, 2.0]


def test_empty_views_share_the_version_counter():
    """PyTorch counts an in-place change of an empty view (NumPy says nothing overlaps)."""
    y = ad.ones(3, dtype=ad.float64, requires_grad=True) * 1
    z = (y * y).sum()
    y[2:1].add_(1.0)
    with pytest.raises(RuntimeError, match=SAVED):
        z.backward()


def test_inplace_on_an_empty_tensor_in_the_graph():
    x = ad.ones(2, 0, requires_grad=True)
    y = x * 1  # NumPy gives this empty result zero strides: it is still writable
    y.add_(1.0)
    y[..., :] = 2.0
    y.sum().backward()
    assert x.grad.shape == (2, 0)


def test_copy_of_a_constant_keeps_requires_grad():
    """As in PyTorch: after ``y.copy_(c)`` y requires grad, and its old value gets zeros."""
    torch = pytest.importorskip("torch")
    grads = []
    for m in (ad, torch):
        x = m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)
        y = x * 1
        y.copy_(m.tensor(3.0, dtype=m.float64))
        assert y.requires_grad
        (y * x).sum().backward()
        grads.append(x.grad.tolist())
    assert grads[0] == grads[1] == [3.0, 3.0]


# ---- chains of views against PyTorch --------------------------------------------------------

def _chain_element(y, m, x):
    y[1][2].mul_(x[0, 0])
    return y


def _chain_slice_element(y, m, x):
    y[0][1:][0] += x[1, 2] * 3
    return y


def _chain_transposed(y, m, x):
    y.T[0, 1].sub_(x.sum())
    y.T[2][1] = x[0, 2] ** 2
    return y


def _chain_reshaped(y, m, x):
    y.reshape(6)[4].mul_(x[0, 1])
    y.reshape(3, 2)[2, 0].copy_(x[1, 1] * 2)
    return y


def _chain_none_ellipsis(y, m, x):
    y[None, 1, None, ..., 0].div_(4.0)
    y[..., 2][0].fill_(0.5)
    y[1, 1, ...][()].add_(x[0, 0] * x[1, 0])
    return y


def _chain_stale_view(y, m, x):
    e = y[0, 0]
    y.mul_(x)  # the base changes after the element view was taken
    return y * e


def _chain_sibling_views(y, m, x):
    a, b = y[1, 1], y[1][1]  # two element views of one position
    a.mul_(x[0, 0])
    return y + b * b


@pytest.mark.parametrize("f", [_chain_element, _chain_slice_element, _chain_transposed,
                               _chain_reshaped, _chain_none_ellipsis, _chain_stale_view,
                               _chain_sibling_views])
def test_chains_of_views_match_torch(f):
    torch = pytest.importorskip("torch")
    data = np.arange(1.0, 7.0).reshape(2, 3)
    x = ad.tensor(data, dtype=ad.float64, requires_grad=True)
    xt = torch.tensor(data, dtype=torch.float64, requires_grad=True)
    out, out_t = f(x * 1, ad, x), f(xt * 1, torch, xt)
    np.testing.assert_allclose(out.numpy(), out_t.detach().numpy(), rtol=1e-13)
    weights = np.linspace(-1.0, 2.0, out.size).reshape(out.shape)
    (out * ad.tensor(weights)).sum().backward()
    (out_t * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-13)


@pytest.mark.parametrize("grad_mode", [True, False])
def test_forward_mode_through_an_element_view(grad_mode):
    """The JVP of a program that changes views in place: the finite difference. Tangents
    flow whatever the grad mode (without it, the base's tangent is rebuilt in its shape)."""
    def f(x):
        with ad.set_grad_enabled(grad_mode):
            y = x * 1
            y[1][0].mul_(x[0, 1])
            y[0, 1] = y[1, 0] * 3
            y[1:].add_(x[0:1, :1])
            return y * 1

    x0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([[0.5, -1.0], [2.0, 0.25]])
    out, tan = ad.jvp(f, (ad.tensor(x0),), (ad.tensor(v),))
    np.testing.assert_array_equal(out.numpy(), [[1.0, 18.0], [7.0, 5.0]])
    eps = 1e-6
    fd = (f(ad.tensor(x0 + eps * v)).numpy() - f(ad.tensor(x0 - eps * v)).numpy()) / (2 * eps)
    np.testing.assert_allclose(tan.numpy(), fd, rtol=1e-7, atol=1e-8)


def test_gradient_tape_through_element_views():
    v = ad.Variable([[1.0, 2.0], [3.0, 4.0]])
    with ad.GradientTape() as tape:
        y = v * 1
        y[1][1].mul_(v[0, 0] * 3)  # y11 = 3 v00 v11
        y.T[1, 0] = v[1, 0] ** 2  # y01 = v10^2
        s = y.sum()
    assert tape.gradient(s, v).tolist() == [[13.0, 0.0], [7.0, 3.0]]


def test_element_views_on_the_cuda_path(monkeypatch):
    """The CuPy backend (NumPy standing in for CuPy) gives the same views and gradients."""
    with installed(monkeypatch):
        w = ad.zeros(2, 3, device="cuda")
        with ad.no_grad():
            w[0, 1].fill_(7.0)
            w[1][2].add_(5.0)
            w.T[0, 1] = 2.0
        assert w.tolist() == [[0.0, 7.0, 0.0], [2.0, 0.0, 5.0]]
        assert w[0, 1].item() == 7.0 and float(w[1][2]) == 5.0
        x = ad.tensor([[1.0, 2.0], [3.0, 4.0]], device="cuda", requires_grad=True)
        y = x * 1
        y[1, 1].mul_(10)
        y.sum().backward()
        assert y.tolist() == [[1.0, 2.0], [3.0, 40.0]]
        assert x.grad.tolist() == [[1.0, 1.0], [1.0, 10.0]]
        z = (y * y).sum()
        y[0][0].add_(1.0)
        with pytest.raises(RuntimeError, match=SAVED):
            z.backward()


# ---- random in-place programs through views, against PyTorch --------------------------------

def _index(data, shape):
    """A random basic index for ``shape``: per axis an int, a slice or the whole axis, the
    whole axes of a random run replaced by an Ellipsis (or trailing ones left out), and Nones
    inserted anywhere."""
    n = len(shape)
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    ellipsis = data.draw(st.booleans())
    items = []
    for d, size in enumerate(shape):
        if ellipsis and lo <= d < hi:
            if d == lo:
                items.append(Ellipsis)
            continue
        kind = data.draw(st.sampled_from(("int", "int", "slice", "all") if size else ("slice",)))
        if kind == "int":
            items.append(data.draw(st.integers(-size, size - 1)))
        elif kind == "all":
            items.append(slice(None))
        else:
            bound = st.none() | st.integers(-size - 1, size + 1)
            items.append(slice(data.draw(bound), data.draw(bound),
                               data.draw(st.none() | st.integers(1, 3))))
    if ellipsis and lo == n:
        items.append(Ellipsis)
    if not ellipsis:
        while items and items[-1] == slice(None) and data.draw(st.booleans()):
            items.pop()
    for _ in range(data.draw(st.integers(0, 2))):
        items.insert(data.draw(st.integers(0, len(items))), None)
    return tuple(items)


class _Program:
    """One random program run side by side on gpuad and PyTorch (float64)."""

    def __init__(self, data, torch, shape, device):
        self.data, self.torch, self.device = data, torch, device
        rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
        x0 = rng.uniform(0.5, 2.0, shape)
        self.x = (ad.tensor(x0, dtype=ad.float64, device=device, requires_grad=True),
                  torch.tensor(x0, dtype=torch.float64, requires_grad=True))
        self.w = rng.uniform(-1.0, 1.0, shape)
        self.pool = [(self.x[0] * 1, self.x[1] * 1)]  # y, then views of y and of its views
        self.reads = ([], [])
        self.log = []

    def draw(self, strategy):
        return self.data.draw(strategy)

    def pick(self):
        return self.pool[self.draw(st.integers(0, len(self.pool) - 1))]

    def source(self):
        """A value for an in-place op: a constant, or a 0-d tensor that depends on x: a sum
        over x, an element view of x, or a sum over a view (read now, maybe after changes)."""
        kind = self.draw(st.sampled_from(("constant", "sum", "element", "view")))
        if kind == "constant":
            return (self.draw(st.sampled_from((0.5, -2.0, 3.0))),) * 2
        k = self.draw(st.sampled_from((0.25, -0.5)))
        if kind == "element" and 0 not in self.x[1].shape:
            index = tuple(self.draw(st.integers(-n, n - 1)) for n in self.x[1].shape)
            return tuple(x[index] for x in self.x)
        if kind == "view":
            return tuple(v.sum() * k for v in self.pick())
        return tuple((x * self.weights(side)).sum() * k for side, x in enumerate(self.x))

    def weights(self, side):
        if side == 0:
            return ad.tensor(self.w, device=self.device)
        return self.torch.tensor(self.w)

    # -- steps: each returns ``run(side)`` (side 0: gpuad, 1: PyTorch): a new view or None --
    def step(self):
        kind = self.draw(st.sampled_from(
            ("element", "inplace", "view", "element", "setitem", "read", "inplace", "element",
             "augmented", "transpose", "view", "reshape", "inplace", "read", "element")
            + ("leaf",) * (self.draw(st.integers(0, 15)) == 15)))
        return getattr(self, "_" + kind)()

    def _view(self, v=None, index=None):
        v = self.pick() if v is None else v
        index = _index(self.data, tuple(v[1].shape)) if index is None else index
        self.log.append(f"view {index}")
        return lambda i: v[i][index]

    def _element(self):
        v = self.pick()
        if 0 in v[1].shape:
            return self._view(v, ())
        index = tuple(self.draw(st.integers(-n, n - 1)) for n in v[1].shape)
        if not self.draw(st.booleans()):
            return self._view(v, index)
        self.log.append(f"element chain {index}")  # one axis at a time: v[i][j]...

        def chain(i):
            t = v[i]
            for k in index:
                t = t[k]
            return t
        return chain

    def _transpose(self):
        v = self.pick()
        self.log.append("transpose")
        # (PyTorch's .T warns below 2-d; permute reverses the axes as gpuad's .T does)
        return lambda i: v[0].T if i == 0 else v[1].permute(tuple(range(v[1].ndim - 1, -1, -1)))

    def _reshape(self):
        v = self.pick()
        shape = self.draw(st.sampled_from(((-1,), (1, -1), (-1, 1))))
        if not v[1].is_contiguous():  # then PyTorch's reshape and NumPy's may differ
            return lambda i: None
        self.log.append(f"reshape {shape}")
        return lambda i: v[i].reshape(shape)

    def _inplace(self):
        v = self.pick()
        name = self.draw(st.sampled_from(("add_", "sub_", "mul_", "div_", "fill_", "zero_",
                                          "copy_")))
        if name == "zero_":
            args = ((), ())
        elif name in ("div_", "fill_"):
            c = self.draw(st.sampled_from((0.5, -4.0)))
            args = ((c,), (c,))
        else:
            args = tuple((s,) for s in self.source())
        self.log.append(name)

        def run(i):
            getattr(v[i], name)(*args[i])
        return run

    def _setitem(self):
        v = self.pick()
        index = _index(self.data, tuple(v[1].shape))
        values = self.source()
        self.log.append(f"setitem {index}")

        def run(i):
            v[i][index] = values[i]
        return run

    def _augmented(self):
        v = self.pick()
        index = _index(self.data, tuple(v[1].shape))
        values = self.source()
        self.log.append(f"augmented {index}")

        def run(i):
            v[i][index] *= values[i]
        return run

    def _read(self):
        v = self.pick()
        how = self.draw(st.sampled_from(("square", "sin", "scaled")))
        self.log.append(f"read {how}")

        def run(i):
            t = v[i]
            r = t * t if how == "square" else t.sin() if how == "sin" else t * 1.5
            self.reads[i].append(r.sum())
        return run

    def _leaf(self):
        shape = self.x[1].shape
        index = () if 0 in shape else tuple(self.draw(st.integers(-n, n - 1)) for n in shape)
        self.log.append(f"leaf element {index}")

        def run(i):
            self.x[i][index].mul_(2.0)
        return run

    # -- running and comparing ---------------------------------------------------------------
    def run(self, step):
        """Run a step on each side: both raise a RuntimeError (True), or neither does."""
        out, failed = [], []
        for side in (1, 0):
            try:
                out.append(step(side))
                failed.append(False)
            except RuntimeError:
                out.append(None)
                failed.append(True)
        assert failed[0] == failed[1], (failed, self.log)
        if out[0] is not None:
            self.pool.append((out[1], out[0]))
        return failed[0]

    def compare(self):
        for a, b in self.pool:
            np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=str(self.log))

    def backward(self, side):
        """The loss's backward pass on one side: None, or the error message."""
        y = self.pool[0][side]
        total = (y * self.weights(side)).sum()
        for r in self.reads[side]:
            total = total + r
        try:
            total.backward()
        except RuntimeError as exc:
            return str(exc)
        return None


def _random_program(data, device):
    torch = pytest.importorskip("torch")
    shape = data.draw(st.sampled_from(((2, 3), (3,), (2, 1, 3), (), (2, 0))))
    p = _Program(data, torch, shape, device)
    assert p.x[0].device == device
    for _ in range(data.draw(st.integers(2, 12))):
        if p.run(p.step()):
            event(f"refused: {p.log[-1].split()[0]}")
            return
        p.compare()
    event(f"{sum(1 for v, _ in p.pool if v.ndim == 0 and v._base is not None)} 0-d views")
    torch_error, ad_error = p.backward(1), p.backward(0)
    event("backward refused on both sides" if ad_error else "gradients compared")
    assert (torch_error is None) == (ad_error is None), (torch_error, ad_error, p.log)
    if ad_error is not None:
        assert SAVED in ad_error, ad_error
        return
    np.testing.assert_allclose(p.x[0].grad.numpy(), p.x[1].grad.numpy(), rtol=1e-10,
                               atol=1e-12, err_msg=str(p.log))
    p.compare()


_FUZZ = dict(derandomize=True, deadline=None, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=500, **_FUZZ)
@given(st.data())
def test_random_inplace_programs_through_views_match_torch(data):
    _random_program(data, "cpu")


@settings(max_examples=100, **_FUZZ)
@given(st.data())
def test_random_inplace_programs_through_views_on_the_cuda_path(data):
    """The same programs on the CuPy backend, NumPy standing in for CuPy."""
    with pytest.MonkeyPatch.context() as mp, installed(mp):
        _random_program(data, "cuda")
