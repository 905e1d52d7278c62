"""PyTorch habits (issue 15, section 7; README "Coming from PyTorch"): the spellings that mean
exactly what gpuad's do are accepted and agree with PyTorch; the others raise an error that
names gpuad's spelling."""
import json

import numpy as np
import pytest

import gpuad as ad

torch = pytest.importorskip("torch")

A = np.random.default_rng(0).standard_normal((2, 3, 4))


def _pair():
    return ad.tensor(A, requires_grad=True), torch.tensor(A, requires_grad=True)


def _check(ours, theirs, x, tx):
    """Values and gradients (of a fixed weighting) agree with PyTorch."""
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-14)
    if ours.dtype.kind == "f":
        w = np.cos(np.arange(ours.size)).reshape(ours.shape)
        (ours * ad.tensor(w, device=ours.device)).sum().backward()
        (theirs * torch.tensor(w)).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-10, atol=1e-14)


REDUCTIONS = {
    "sum": lambda m, x, **k: x.sum(**k),
    "mean": lambda m, x, **k: x.mean(**k),
    "prod": lambda m, x, **k: x.prod(**k),
    "logsumexp": lambda m, x, **k: m.logsumexp(x, **k),
    "norm": lambda m, x, **k: (x.norm(dim=k["dim"], keepdim=k["keepdim"])),
    "var": lambda m, x, **k: (x.var(**k, correction=1)),
    "std": lambda m, x, **k: (x.std(**k, correction=0)),
    "argmax": lambda m, x, **k: x.argmax(**k),
    "any": lambda m, x, **k: (x > 0).any(**k),
    "all": lambda m, x, **k: (x > -1).all(**k),
}


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [1, -1, (0, 2)])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_dim_and_keepdim_mean_axis_and_keepdims(name, dim, keepdim):
    if isinstance(dim, tuple) and name in ("prod", "argmax", "any", "all"):
        pytest.skip("PyTorch takes one dim here")
    x, tx = _pair()
    fn = REDUCTIONS[name]
    _check(fn(ad, x, dim=dim, keepdim=keepdim), fn(torch, tx, dim=dim, keepdim=keepdim), x, tx)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_takes_dim(name, dim):
    x, tx = _pair()
    _check(getattr(ad, name)(x, dim=dim), getattr(torch, name)(tx, dim=dim), x, tx)
    x, tx = _pair()
    _check(getattr(x, name)(dim=dim), getattr(tx, name)(dim=dim), x, tx)


def test_torch_style_positional_axis():
    x, tx = _pair()
    _check(x.mean(0), tx.mean(0), x, tx)
    x, tx = _pair()
    _check(x.sum(1, True), tx.sum(1, True), x, tx)


@pytest.mark.parametrize("call", [
    lambda x: x.sum(axis=1, dim=1), lambda x: ad.mean(x, 0, dim=1),
    lambda x: x.softmax(axis=-1, dim=0), lambda x: ad.log_softmax(x, 1, dim=1),
    lambda x: x.var(axis=0, dim=0, ddof=1), lambda x: x.norm(axis=0, dim=0),
    lambda x: ad.concatenate([x, x], 0, dim=0), lambda x: ad.stack([x], axis=0, dim=0),
    lambda x: x.squeeze(axis=0, dim=0), lambda x: ad.expand_dims(x, 0, dim=0),
    lambda x: x.argmax(axis=0, dim=0), lambda x: x.sum(keepdims=True, keepdim=True),
    lambda x: x.std(ddof=1, correction=1),
], ids=range(13))
def test_axis_and_dim_together_raise(call):
    with pytest.raises(TypeError, match="both"):
        call(ad.tensor(A))


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_with_dim_names_gpuads_spelling(name):
    """PyTorch's max(dim=) returns (values, indices): not the same thing, so refused."""
    with pytest.raises(TypeError, match=rf"{name}\(axis=\.\.\.\).*arg{name}"):
        getattr(ad.tensor(A), name)(dim=1)
    np.testing.assert_array_equal(getattr(ad.tensor(A), name)(1).numpy(),
                                  getattr(torch.tensor(A), f"a{name}")(1).numpy())


@pytest.mark.parametrize("name", ["var", "std"])
def test_var_with_dim_must_say_its_correction(name):
    """gpuad's ddof defaults to 0 (NumPy), PyTorch's correction to 1: a PyTorch call without
    one would silently differ, so it is refused with both spellings named."""
    with pytest.raises(TypeError, match="ddof=1 .*correction=1"):
        getattr(ad.tensor(A), name)(dim=1)
    with pytest.raises(TypeError, match="ddof=1"):
        getattr(ad.tensor(A), name)(keepdim=True)
    ours = getattr(ad.tensor(A), name)(dim=1, ddof=1).numpy()
    np.testing.assert_allclose(ours, getattr(torch.tensor(A), name)(dim=1).numpy(), rtol=1e-12)


def test_size_is_the_element_count_and_size_call_is_the_shape():
    x, tx = ad.tensor(A), torch.tensor(A)
    assert x.size == A.size and isinstance(x.size, int)  # SPEC: size is the number of elements
    assert x.size + 1 == 25 and json.dumps(x.size) == "24" and np.zeros(x.size).shape == (24,)
    assert x.size() == tuple(tx.size()) == (2, 3, 4)
    assert x.size(1) == tx.size(1) and x.size(-1) == tx.size(-1)
    assert x.numel() == tx.numel() and x.dim() == tx.dim() == 3
    assert ad.tensor(1.0).size() == () and ad.tensor(1.0).numel() == 1
    with pytest.raises(IndexError, match="size: axis 3"):
        x.size(3)


def test_view_is_a_reshape_that_shares_memory():
    x, tx = _pair()
    v, tv = x.view(6, 4), tx.view(6, 4)
    _check(v, tv, x, tx)
    x = ad.tensor(A)
    assert x.view((4, -1)).shape == tuple(torch.tensor(A).view((4, -1)).shape)
    with ad.no_grad():
        x.view(-1)[0] = 100.0
    assert x[0, 0, 0].item() == 100.0  # a view: the write shows in x


def test_view_that_needs_a_copy_raises_like_pytorch():
    x, tx = ad.tensor(A), torch.tensor(A)
    with pytest.raises(RuntimeError):
        tx.transpose(0, 2).view(24)
    with pytest.raises(RuntimeError, match="reshape"):
        x.transpose((2, 1, 0)).view(24)
    np.testing.assert_array_equal(x.transpose((2, 1, 0)).reshape(24).numpy(),
                                  tx.permute(2, 1, 0).reshape(24).numpy())
    with pytest.raises(TypeError, match="astype"):
        x.view(ad.float32)


def test_cat_and_dim_on_joins():
    x, tx = ad.tensor(A), torch.tensor(A)
    for dim in (0, 1, -1):
        np.testing.assert_array_equal(ad.cat([x, x], dim=dim).numpy(),
                                      torch.cat([tx, tx], dim=dim).numpy())
        np.testing.assert_array_equal(ad.stack([x, x], dim=dim).numpy(),
                                      torch.stack([tx, tx], dim=dim).numpy())
    np.testing.assert_array_equal(ad.cat([x, x]).numpy(), torch.cat([tx, tx]).numpy())
    np.testing.assert_array_equal(x[:, :1].squeeze(dim=1).numpy(),
                                  tx[:, :1].squeeze(dim=1).numpy())
    np.testing.assert_array_equal(x.unsqueeze(1).numpy(), tx.unsqueeze(1).numpy())
    np.testing.assert_array_equal(ad.expand_dims(x, dim=-1).numpy(), tx.unsqueeze(-1).numpy())


@pytest.mark.parametrize("dim", [0, 1, 2, -1, (0, 1), (1, 2), (0, 2)], ids=str)
def test_squeeze_dim_keeps_an_axis_of_another_length_as_pytorch(dim):
    """PyTorch's squeeze(dim=) skips an axis whose length is not 1; NumPy's squeeze(axis)
    (gpuad's, positional too) refuses it, with a message pointing to dim=."""
    x = ad.ones(1, 3, 1, requires_grad=True)
    tx = torch.ones(1, 3, 1, requires_grad=True)
    y, ty = x.squeeze(dim=dim), tx.squeeze(dim=dim)
    assert y.shape == tuple(ty.shape)
    (y * ad.tensor(np.arange(3.0, dtype=np.float32)).reshape(ty.shape)).sum().backward()
    (ty * torch.arange(3.0).reshape(ty.shape)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())
    if 1 in np.atleast_1d(dim) or -2 in np.atleast_1d(dim):
        with pytest.raises(ValueError, match=r"^gpuad\.squeeze: cannot remove axis 1 .*dim="):
            x.squeeze(dim)


def test_contiguous_copies_only_a_transposed_layout_as_pytorch():
    """x.contiguous() is x itself when its memory is in row-major order, else a copy that
    is (so the idiom x.transpose(0, 1).contiguous().view(-1) works); gradients flow."""
    x = ad.tensor(A, requires_grad=True)
    tx = torch.tensor(A, requires_grad=True)
    assert x.contiguous() is x and x.is_contiguous()
    t = x.transpose(0, 1)
    assert not t.is_contiguous() and not tx.transpose(0, 1).is_contiguous()
    flat = t.contiguous().view(-1)
    tflat = tx.transpose(0, 1).contiguous().view(-1)
    np.testing.assert_array_equal(flat.numpy(), tflat.detach().numpy())
    w = np.arange(flat.size, dtype=A.dtype)
    (flat * ad.tensor(w)).sum().backward()
    (tflat * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_split_with_dim_names_gpuads_meaning():
    """torch.split's int is a chunk size, numpy.split's (gpuad's) a number of sections."""
    with pytest.raises(TypeError, match="number of equal sections"):
        ad.tensor(A).split(2, dim=2)


def test_casts_clamp_permute():
    x, tx = _pair()
    for name in ("float", "double", "half", "int", "long", "bool"):
        assert getattr(x, name)().numpy().dtype == getattr(tx, name)().detach().numpy().dtype
    _check(x.float().double(), tx.float().double(), x, tx)
    x, tx = _pair()
    _check(x.clamp(-0.5, 0.5), tx.clamp(-0.5, 0.5), x, tx)
    x, tx = _pair()
    _check(ad.clamp(x, min=0.1), torch.clamp(tx, min=0.1), x, tx)
    x, tx = _pair()
    _check(x.permute(2, 0, 1), tx.permute(2, 0, 1), x, tx)


def test_transpose_of_two_axes_and_flip_dims():
    x, tx = _pair()
    _check(ad.transpose(x, 0, 2), torch.transpose(tx, 0, 2), x, tx)
    x, tx = _pair()
    _check(ad.flip(x, dims=[0, 2]), torch.flip(tx, dims=[0, 2]), x, tx)
    with pytest.raises(TypeError, match="both"):
        ad.flip(x, 0, dims=[0])
    with pytest.raises(IndexError, match="transpose: axis 3"):  # (the op called)
        ad.transpose(x, 0, 3)
    x, tx = _pair()  # torch.transpose's keywords
    _check(ad.transpose(x, dim0=-1, dim1=0), torch.transpose(tx, dim0=-1, dim1=0), x, tx)
    for kw in (dict(dim0=0), dict(dim1=1), dict(axes=0, dim0=1, dim1=2)):
        with pytest.raises(TypeError, match="^gpuad.transpose: swapping takes two axes"):
            ad.transpose(x, **kw)


def test_spellings_and_checks_on_the_cuda_path(monkeypatch):
    """The same on "cuda" (NumPy standing in for CuPy): the checks run before the backend,
    which would wrap axes or store None as nan."""
    from fake_cupy import installed

    with installed(monkeypatch):
        x = ad.tensor(A, device="cuda", requires_grad=True)
        tx = torch.tensor(A, requires_grad=True)
        _check(x.softmax(dim=1), tx.softmax(dim=1), x, tx)
        x.grad = None
        tx.grad = None
        _check((x * 2).view(6, 4), (tx * 2).view(6, 4), x, tx)
        assert x.size() == (2, 3, 4) and x.size == 24
        np.testing.assert_array_equal(x.argmax(dim=-1).numpy(), tx.argmax(dim=-1).numpy())
        with pytest.raises(IndexError, match="moveaxis: axis 5"):
            ad.moveaxis(x, 0, 5)
        with pytest.raises(RuntimeError, match="reshape"):
            x.permute(2, 1, 0).view(24)
        y = ad.zeros(2, device="cuda")
        with pytest.raises(TypeError, match="setitem"):
            y[0] = None
        assert ad.isnan([1.0, float("nan")]).tolist() == [False, True]


# ---- transpose of two axes, permute, unsqueeze, mT (issue 15 follow-up) ----------------------

TRANSPOSE_CASES = [((4,), (0, 0)), ((4,), (0, -1)), ((4,), (-1, 0)), ((2, 3), (0, 1)),
                   ((2, 3), (1, 0)), ((2, 3), (1, 1)), ((2, 3), (-1, -2)), ((2, 3), (0, -1)),
                   ((2, 3, 4), (0, 2)), ((2, 3, 4), (2, 0)), ((2, 3, 4), (-1, 1)),
                   ((2, 3, 4), (1, 1))]


@pytest.mark.parametrize("shape,dims", TRANSPOSE_CASES, ids=str)
def test_method_transpose_of_two_axes_swaps_them_as_pytorch(shape, dims):
    """x.transpose(0, 1) of a matrix is its transpose (it was a no-op: NumPy's identity
    permutation); x.transpose(1, 1) is x (it was refused); any ndim, negative axes."""
    a = np.random.default_rng(1).standard_normal(shape)
    for call in (lambda t: t.transpose(*dims), lambda t: ad.transpose(t, *dims),
                 lambda t: t.transpose(dim0=dims[0], dim1=dims[1]),
                 lambda t: t.transpose(dims[0], dim1=dims[1])):
        x, tx = ad.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        ours, theirs = call(x), torch.transpose(tx, *dims)
        assert ours.shape == tuple(theirs.shape)
        _check(ours, theirs, x, tx)


def test_method_transpose_keeps_numpys_meaning_otherwise():
    x, tx = ad.tensor(A), torch.tensor(A)
    np.testing.assert_array_equal(x.transpose().numpy(), A.transpose())
    np.testing.assert_array_equal(x.transpose(1, 0, 2).numpy(), A.transpose(1, 0, 2))
    np.testing.assert_array_equal(x.transpose((2, 0, 1)).numpy(), A.transpose((2, 0, 1)))
    np.testing.assert_array_equal(x.transpose([2, 0, 1]).numpy(), tx.permute(2, 0, 1).numpy())
    m = A[0]
    np.testing.assert_array_equal(ad.tensor(m).transpose((0, 1)).numpy(), m)  # a permutation
    np.testing.assert_array_equal(ad.tensor(m).T.numpy(), torch.tensor(m).T.numpy())
    np.testing.assert_array_equal(x.mT.numpy(), tx.mT.numpy())
    with pytest.raises(IndexError, match="transpose: axis 3"):
        x.transpose(0, 3)
    with pytest.raises(ValueError, match=r"mT .*shape \(4,\)"):
        _ = ad.tensor(A[0, 0]).mT


def test_permute_and_unsqueeze_errors_name_the_op_called():
    x = ad.tensor(A)
    with pytest.raises(IndexError, match=r"gpuad\.permute: axis 5"):
        x.permute(0, 5, 1)
    with pytest.raises(ValueError, match=r"gpuad\.permute: axes \(0, 0, 1\)"):
        x.permute(0, 0, 1)
    with pytest.raises(TypeError, match=r"gpuad\.permute: "):
        x.permute("a")
    with pytest.raises(IndexError, match=r"gpuad\.unsqueeze: axis 5"):
        x.unsqueeze(5)
    with pytest.raises(TypeError, match=r"gpuad\.unsqueeze: say where the new axis goes"):
        x.unsqueeze()
    with pytest.raises(TypeError, match=r"gpuad\.unsqueeze: got both"):
        x.unsqueeze(0, axis=0)
    assert x.unsqueeze(axis=1).shape == x.unsqueeze(dim=1).shape == (2, 1, 3, 4)
    with pytest.raises(IndexError, match=r"gpuad\.expand_dims: axis 5"):
        ad.expand_dims(x, 5)
    with pytest.raises(IndexError, match=r"gpuad\.swapaxes: axis 5"):
        ad.swapaxes(x, 0, 5)
    for d in (0, 3, -1, -4):  # [-ndim - 1, ndim]: PyTorch's range
        np.testing.assert_array_equal(x.unsqueeze(d).numpy(), torch.tensor(A).unsqueeze(d))
    np.testing.assert_array_equal(x.permute((1, 2, 0)).numpy(), A.transpose(1, 2, 0))


# ---- dim=None, unbiased= -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["var", "std"])
def test_var_with_dim_none_must_say_its_correction_too(name):
    """PyTorch's x.var(dim=None) is over all axes with correction 1; gpuad's default is ddof=0,
    so, like dim=1, it is refused unless the correction is given (it was silently ddof=0)."""
    x, tx = ad.tensor(A), torch.tensor(A)
    with pytest.raises(TypeError, match="ddof=1 .*correction=1"):
        getattr(x, name)(dim=None)
    with pytest.raises(TypeError, match="ddof=1"):
        getattr(ad, name)(x, dim=None, keepdim=True)
    for kwargs in ({"correction": 1}, {"correction": 0}, {"unbiased": True},
                   {"unbiased": False}):
        ours = getattr(x, name)(dim=None, **kwargs)
        theirs = getattr(tx, name)(dim=None, **kwargs)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)
    np.testing.assert_allclose(getattr(x, name)().numpy(), getattr(A, name)(), rtol=1e-12)


@pytest.mark.parametrize("name", ["var", "std"])
def test_unbiased_is_pytorchs_name_for_ddof_1_or_0(name):
    x, tx = _pair()
    fn = getattr(ad, name)
    _check(fn(x, dim=1, unbiased=True), getattr(torch, name)(tx, dim=1, unbiased=True), x, tx)
    x, tx = _pair()
    _check(fn(x, unbiased=False, dim=(0, 2), keepdim=True),
           getattr(torch, name)(tx, dim=(0, 2), unbiased=False, keepdim=True), x, tx)
    np.testing.assert_allclose(fn(x, unbiased=True).numpy(), getattr(A, name)(ddof=1))
    for kwargs in ({"ddof": 1, "unbiased": True}, {"correction": 1, "unbiased": True}):
        with pytest.raises(TypeError, match="both"):
            fn(x, **kwargs)


@pytest.mark.parametrize("name", ["sum", "mean", "norm", "argmax", "any", "all"])
def test_dim_none_means_all_axes_as_in_pytorch(name):
    x, tx = ad.tensor(A), torch.tensor(A)
    if name in ("any", "all"):
        x, tx = x > 0, tx > 0
    ours, theirs = getattr(x, name)(dim=None), getattr(tx, name)(dim=None)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_none_is_refused(name):
    """PyTorch's functional softmax(dim=None) picks an axis by ndim (deprecated; dim 0 of a
    3-D tensor), torch.softmax refuses it: not silently the last axis."""
    x = ad.tensor(A)
    with pytest.raises(TypeError, match=rf"gpuad\.{name}: dim=None .*dim=-1"):
        getattr(x, name)(dim=None)
    with pytest.raises(TypeError, match="dim=None"):
        getattr(ad, name)(x, dim=None)
    with pytest.raises(TypeError):
        getattr(torch, name)(torch.tensor(A), dim=None)


# ---- view(dtype), clamp() ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,name", [(np.int32, "int32"), (ad.float32, "float32"),
                                        ("int64", "int64"), (float, "float64"),
                                        (np.dtype("float16"), "float16")])
def test_view_of_a_dtype_names_view_the_dtype_and_astype(dtype, name):
    x = ad.tensor(A)
    with pytest.raises(TypeError, match=rf"gpuad\.view: .*dtype {name}.*astype\(ad\.{name}\)"):
        x.view(dtype)
    with pytest.raises(TypeError, match=rf"gpuad\.view: .*dtype {name}"):
        x.view(dtype=dtype)
    assert x.view(np.int64(24)).shape == (24,)  # a NumPy integer is a length, not a dtype
    with pytest.raises(TypeError, match="a shape is ints"):
        x.view(None)


def test_clamp_and_clip_need_a_bound():
    x, tx = ad.tensor(A), torch.tensor(A)
    with pytest.raises(RuntimeError, match="At least one"):
        torch.clamp(tx)
    for call in (lambda: ad.clamp(x), lambda: x.clamp(), lambda: ad.clip(x, None, None),
                 lambda: x.clip(min=None, max=None), lambda: ad.clip(x, a_min=None)):
        with pytest.raises(TypeError, match=r"gpuad\.clip \(clamp\): at least one of min and"):
            call()
    np.testing.assert_array_equal(x.clamp(max=0.0).numpy(), tx.clamp(max=0.0).numpy())


@pytest.mark.parametrize("empty", [(), []], ids=str)
@pytest.mark.parametrize("op, ours, theirs", [
    ("sum", lambda x, d: x.sum(dim=d), lambda t, d: t.sum(dim=d)),
    ("mean", lambda x, d: x.mean(dim=d, keepdim=True), lambda t, d: t.mean(dim=d, keepdim=True)),
    ("var", lambda x, d: x.var(dim=d, correction=0), lambda t, d: t.var(dim=d, correction=0)),
    ("std", lambda x, d: x.std(dim=d, unbiased=True), lambda t, d: t.std(dim=d, unbiased=True)),
    ("norm", lambda x, d: ad.norm(x, dim=d), lambda t, d: torch.linalg.vector_norm(t, dim=d)),
    ("any", lambda x, d: (x > 0).any(dim=d), lambda t, d: (t > 0).any(dim=d)),
    ("squeeze", lambda x, d: x[:1].squeeze(dim=d), lambda t, d: t[:1].squeeze(dim=d)),
])
def test_an_empty_dim_means_what_it_does_in_pytorch(op, ours, theirs, empty):
    """PyTorch's sum/mean/var/std/vector_norm read dim=() as every axis (NumPy's axis=() is
    none: gpuad reduced nothing, a silently different result); any and squeeze as none."""
    x, tx = ad.tensor(A), torch.tensor(A)
    y, ty = ours(x, empty), theirs(tx, empty)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.numpy(), rtol=1e-12)


@pytest.mark.parametrize("op", ["prod", "logsumexp", "argmax", "unsqueeze", "expand_dims"])
def test_an_empty_dim_is_refused_where_pytorch_refuses_it(op):
    """PyTorch refuses dim=() for prod, argmax and unsqueeze, and its logsumexp reduces every
    axis with keepdim=True but fails without: refused (unsqueeze(()) was a silent no-op)."""
    with pytest.raises(TypeError, match=rf"^gpuad\.{op}: dim=\(\) names no axis"):
        getattr(ad.tensor(A), op)(dim=())
    if op == "unsqueeze":
        with pytest.raises(TypeError, match=r"^gpuad\.unsqueeze: dim=\[\] names no axis"):
            ad.tensor(A).unsqueeze([])
