"""Bad input is refused with a clear error (issue 15, section 4): out-of-range, repeated and
non-integer axes; non-numeric data; invalid optimizer and schedule settings; array-likes in
isnan/isinf/isfinite; checkpoints written where they cannot be. References: NumPy's own
AxisError rules and PyTorch's torch.optim constructors."""
import math
import os

import numpy as np
import pytest

import gpuad as ad

try:
    from numpy.exceptions import AxisError
except ImportError:  # NumPy 1.26
    from numpy import AxisError


# ---- axes -------------------------------------------------------------------------------------

X3 = np.arange(24.0).reshape(2, 3, 4)

OUT_OF_RANGE = {
    "transpose": lambda x: ad.transpose(x, (3, 2, 0)),
    "transpose_negative": lambda x: ad.transpose(x, (0, 1, -4)),
    "permute": lambda x: x.permute(0, 5, 1),
    "moveaxis_destination": lambda x: ad.moveaxis(x, 0, 5),
    "moveaxis_source": lambda x: ad.moveaxis(x, -4, 0),
    "swapaxes": lambda x: ad.swapaxes(x, 0, 3),
    "method_transpose_pair": lambda x: x.transpose(0, 3),
    "tensordot": lambda x: ad.tensordot(x, x, axes=([0], [5])),
    "sum": lambda x: x.sum(axis=3),
    "mean": lambda x: ad.mean(x, axis=(0, 3)),
    "var": lambda x: x.var(axis=-4),
    "std": lambda x: x.std(axis=3),
    "max": lambda x: x.max(axis=3),
    "min": lambda x: x.min(axis=3),
    "prod": lambda x: x.prod(axis=3),
    "argmax": lambda x: x.argmax(axis=3),
    "argmin": lambda x: ad.argmin(x, axis=-4),
    "logsumexp": lambda x: ad.logsumexp(x, axis=3),
    "norm": lambda x: ad.norm(x, axis=3),
    "norm_inf": lambda x: ad.norm(x, ord=math.inf, axis=3),
    "softmax": lambda x: ad.softmax(x, axis=3),
    "log_softmax": lambda x: x.log_softmax(axis=-4),
    "squeeze": lambda x: ad.squeeze(x, 3),
    "expand_dims": lambda x: ad.expand_dims(x, 4),
    "unsqueeze": lambda x: x.unsqueeze(-5),
    "concatenate": lambda x: ad.concatenate([x, x], axis=3),
    "stack": lambda x: ad.stack([x, x], axis=4),
    "split": lambda x: ad.split(x, 2, axis=3),
    "flip": lambda x: ad.flip(x, 3),
    "take_along_axis": lambda x: ad.take_along_axis(x, np.zeros((2, 3, 4), int), 3),
    "reduce_sum": lambda x: ad.reduce_sum(x, axis=3),
    "size": lambda x: x.size(3),
}


@pytest.mark.parametrize("op", OUT_OF_RANGE, ids=str)
def test_out_of_range_axes_raise_numpys_axis_error(op):
    """NumPy raises AxisError for each of these; gpuad must too, never wrap modulo ndim."""
    with pytest.raises(AxisError, match=r"out of range for a tensor with [34] dimensions"):
        OUT_OF_RANGE[op](ad.tensor(X3))


def test_axis_error_is_a_value_and_index_error_naming_op_axis_ndim():
    with pytest.raises(ValueError, match=r"gpuad.transpose: axis 3 .* 3 dimensions"):
        ad.transpose(ad.tensor(X3), (3, 2, 1))
    with pytest.raises(IndexError, match=r"gpuad.moveaxis: axis 5"):
        ad.moveaxis(ad.tensor(X3), 0, 5)


def test_in_range_axes_match_numpy():
    x = ad.tensor(X3)
    np.testing.assert_array_equal(ad.transpose(x, (-1, 0, 1)).numpy(),
                                  np.transpose(X3, (-1, 0, 1)))
    np.testing.assert_array_equal(x.permute(2, -3, 1).numpy(), X3.transpose(2, 0, 1))
    np.testing.assert_array_equal(ad.moveaxis(x, -1, 0).numpy(), np.moveaxis(X3, -1, 0))
    np.testing.assert_array_equal(ad.swapaxes(x, -1, 0).numpy(), np.swapaxes(X3, -1, 0))
    np.testing.assert_array_equal(ad.tensordot(x, x, axes=([-1, 0], [2, 0])).numpy(),
                                  np.tensordot(X3, X3, axes=([-1, 0], [2, 0])))
    np.testing.assert_array_equal(x.argmax(axis=np.int64(-1)).numpy(), X3.argmax(axis=-1))


@pytest.mark.parametrize("op", ["moveaxis", "tensordot"])
def test_zero_d_tensors_have_no_axes_to_name(op):
    """These raised ZeroDivisionError (x % 0)."""
    s = ad.tensor(2.0)
    with pytest.raises(AxisError, match="0 dimensions"):
        if op == "moveaxis":
            ad.moveaxis(s, 0, 0)
        else:
            ad.tensordot(s, s, axes=([0], [0]))
    assert ad.tensordot(s, s, axes=0).item() == 4.0  # no contraction: the product


def test_tensordot_int_axes_out_of_range():
    x = ad.tensor(X3)
    with pytest.raises(ValueError, match="tensordot: axes=4"):
        ad.tensordot(x, x, axes=4)
    with pytest.raises(ValueError, match="tensordot: axes=-1"):
        ad.tensordot(x, x, axes=-1)


@pytest.mark.parametrize("perm", [(0, 0, 1), (0, 1, -3), (0, 1), (0, 1, 2, 0)])
def test_a_permutation_names_each_axis_once(perm):
    with pytest.raises(ValueError, match="not a permutation"):
        ad.transpose(ad.tensor(X3), perm)
    with pytest.raises(ValueError, match="not a permutation"):
        ad.tensor(X3).permute(*perm)


def test_repeated_axes_in_reductions_and_tensordot():
    x = ad.tensor(X3)
    with pytest.raises(ValueError, match="repeated axis"):
        x.sum(axis=(0, -3))
    with pytest.raises(ValueError, match="repeated axis"):
        ad.tensordot(x, x, axes=([0, 0], [0, 1]))


@pytest.mark.parametrize("axis", ["0", 1.0, 1.5, (0, "1"), True, None])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "argmax", "softmax", "transpose",
                                "moveaxis", "squeeze", "stack", "concatenate", "flip"])
def test_non_integer_axes_are_a_type_error(op, axis):
    x = ad.tensor(X3)
    calls = {
        "sum": lambda: x.sum(axis=axis), "mean": lambda: ad.mean(x, axis),
        "max": lambda: x.max(axis=axis), "argmax": lambda: x.argmax(axis=axis),
        "softmax": lambda: ad.softmax(x, axis), "transpose": lambda: ad.transpose(x, (0, axis, 2)),
        "moveaxis": lambda: ad.moveaxis(x, axis, 0), "squeeze": lambda: ad.squeeze(x, axis),
        "stack": lambda: ad.stack([x, x], axis), "concatenate": lambda: ad.concatenate([x], axis),
        "flip": lambda: ad.flip(x, axis),
    }
    if axis is None and op in ("sum", "mean", "max", "argmax", "squeeze", "concatenate",
                               "flip"):
        pytest.skip("None means all axes here, as in NumPy")
    with pytest.raises(TypeError, match=f"gpuad.{op}: .*(axis|int)"):
        calls[op]()


def test_zero_d_tensors_take_axis_0_or_minus_1_only():
    """As PyTorch: axis 0 or -1 of a 0-d tensor is the whole of it; others are out of range."""
    s = ad.tensor(3.0)
    assert ad.flip(s, 0).item() == 3.0 and s.sum(axis=-1).item() == 3.0
    for call in (lambda: ad.flip(s, 5), lambda: s.sum(axis=1), lambda: s.argmax(axis=2),
                 lambda: ad.softmax(s, 1)):
        with pytest.raises(AxisError):
            call()


def test_concatenate_of_0d_tensors_says_to_stack():
    with pytest.raises(ValueError, match="use stack"):
        ad.concatenate([ad.tensor(1.0), ad.tensor(2.0)])


# ---- non-numeric data ---------------------------------------------------------------------------

NON_NUMERIC = {
    "full_str": lambda: ad.full((2,), "x"),
    "full_none": lambda: ad.full((2,), None),
    "full_str_float": lambda: ad.full((2,), "x", dtype=ad.float32),
    "full_like": lambda: ad.full_like(ad.ones(2), "x"),
    "fill": lambda: ad.fill([2, 2], "x"),
    "arange_none": lambda: ad.arange(None),
    "from_numpy_str": lambda: ad.from_numpy(np.array(["a", "b"])),
    "from_numpy_object": lambda: ad.from_numpy(np.array([1, None], dtype=object)),
    "from_numpy_datetime": lambda: ad.from_numpy(np.array(["2020-01-01"], "datetime64[D]")),
    "from_numpy_timedelta": lambda: ad.from_numpy(np.array([1], "timedelta64[s]")),
    "from_numpy_structured": lambda: ad.from_numpy(np.zeros(2, [("a", "f4"), ("b", "i4")])),
    "from_numpy_bytes": lambda: ad.from_numpy(np.array([b"a"])),
    "astype_str": lambda: ad.ones(2).astype(str),
    "astype_object": lambda: ad.ones(2).astype(object),
    "cast_str": lambda: ad.cast(ad.ones(2), "U3"),
    "to_object": lambda: ad.ones(2).to(dtype=object),
    "zeros_str": lambda: ad.zeros(2, dtype=str),
    "linspace_none": lambda: ad.linspace(None, 1),
    "fill__none": lambda: ad.zeros(2).fill_(None),
    "fill__str": lambda: ad.zeros(2).fill_("x"),
    "eye_str": lambda: ad.eye(2, dtype=str),
    "zeros_like_object": lambda: ad.zeros_like(ad.ones(2), dtype=object),
    "variable_str": lambda: ad.Variable("x"),
    "tensor_dtype_object": lambda: ad.tensor([1.0], dtype=object),
}


@pytest.mark.parametrize("case", NON_NUMERIC, ids=str)
def test_non_numeric_tensors_are_refused(case):
    with pytest.raises(TypeError, match=r"gpuad\.\w+: .*not a number type.*ad\.float32"):
        NON_NUMERIC[case]()


@pytest.mark.parametrize("value", [None, "x", [None, 1.0], np.array(["a"])])
def test_setitem_refuses_non_numbers(value):
    """NumPy stores None into a float array as nan; gpuad refuses it."""
    x = ad.zeros(3)
    with pytest.raises(TypeError, match="gpuad.setitem: .*not a number type"):
        x[0] = value
    np.testing.assert_array_equal(x.numpy(), np.zeros(3))


def test_numeric_creation_still_works():
    np.testing.assert_array_equal(ad.full((2,), 3).numpy(), np.full((2,), 3))
    assert ad.full((2,), 3).dtype == ad.int64 and ad.full((2,), 1.5).dtype == ad.float32
    assert ad.full((2,), np.float64(2)).dtype == ad.float64
    np.testing.assert_array_equal(ad.arange(1, 7, 2).numpy(), np.arange(1, 7, 2))
    assert ad.from_numpy(np.array([1 + 2j])).dtype.kind == "c"
    x = ad.zeros(3)
    x[0], x[1:] = np.float32(2), [4, 5]
    np.testing.assert_array_equal(x.numpy(), [2, 4, 5])


# ---- array-likes --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["isnan", "isinf", "isfinite"])
@pytest.mark.parametrize("value", [[1.0, math.nan, math.inf, -math.inf], math.nan, 2.0, [1, 2]])
def test_isnan_isinf_isfinite_take_array_likes(name, value):
    out = getattr(ad, name)(value)
    np.testing.assert_array_equal(out.numpy(), getattr(np, name)(np.asarray(value)))
    method = getattr(ad.tensor(value), name)()
    np.testing.assert_array_equal(method.numpy(), out.numpy())


@pytest.mark.parametrize("name", ["isnan", "isinf", "isfinite", "exp", "sigmoid", "clip",
                                  "sum", "var", "logsumexp", "softmax", "any", "argmax",
                                  "add"])
@pytest.mark.parametrize("value", ["a", None, [[1.0], [2.0, 3.0]]])
def test_an_argument_that_cannot_be_a_tensor_names_the_op(name, value):
    """The message names the op called, not "tensor" (the conversion inside it)."""
    args = {"clip": (0.0,), "add": (1.0,)}.get(name, ())
    with pytest.raises(TypeError, match=rf"^gpuad\.{name}: cannot make a tensor from"):
        getattr(ad, name)(value, *args)


# ---- optimizers and schedules -------------------------------------------------------------------

def _param():
    return ad.ones(2, requires_grad=True)


# (optimizer, settings, the setting named, whether PyTorch refuses it too: nan and inf rates,
# which PyTorch's SGD lets through, a string and a lone beta are gpuad's stricter rules)
BAD_SETTINGS = [
    ("SGD", dict(lr=-0.1), "lr", True), ("SGD", dict(lr=math.nan), "lr", False),
    ("SGD", dict(lr=math.inf), "lr", False), ("SGD", dict(momentum=-0.9), "momentum", True),
    ("SGD", dict(weight_decay=-1e-4), "weight_decay", True),
    ("SGD", dict(nesterov=True), "Nesterov", True),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov", True),
    ("SGD", dict(lr="0.1"), "lr", False),
    ("Adam", dict(lr=-1e-3), "lr", True), ("Adam", dict(lr=math.nan), "lr", True),
    ("Adam", dict(eps=-1e-8), "eps", True), ("Adam", dict(weight_decay=-0.1), "weight_decay", True),
    ("Adam", dict(betas=(1.0, 0.999)), r"betas\[0\]", True),
    ("Adam", dict(betas=(0.9, -0.1)), r"betas\[1\]", True),
    ("Adam", dict(betas=(0.9, math.nan)), r"betas\[1\]", True),
    ("Adam", dict(betas=(0.9,)), "betas", False),
    ("AdamW", dict(lr=math.nan), "lr", True),
    ("AdamW", dict(betas=(-0.1, 0.9)), r"betas\[0\]", True),
    ("AdamW", dict(weight_decay=-0.01), "weight_decay", True),
]


@pytest.mark.parametrize("name,kwargs,what,torch_refuses", BAD_SETTINGS, ids=str)
def test_invalid_optimizer_settings_raise_at_construction(name, kwargs, what, torch_refuses):
    with pytest.raises(ValueError, match=f"gpuad.optim.{name}: .*{what}"):
        getattr(ad.optim, name)([_param()], **kwargs)
    if torch_refuses:  # the reference: PyTorch's constructor refuses it too
        torch = pytest.importorskip("torch")
        with pytest.raises(ValueError):
            getattr(torch.optim, name)([torch.ones(2, requires_grad=True)], **kwargs)


def test_valid_edge_settings_are_accepted_as_in_pytorch():
    ad.optim.SGD([_param()], lr=0.0)
    ad.optim.SGD([_param()], lr=0.1, momentum=0.9, nesterov=True)
    ad.optim.Adam([_param()], lr=np.float32(1e-3), betas=[0.0, 0.0], eps=0.0)
    ad.optim.AdamW([_param()], lr=1, weight_decay=0)


def test_group_settings_and_add_param_group_are_checked():
    with pytest.raises(ValueError, match="gpuad.optim.SGD: invalid lr=-1"):
        ad.optim.SGD([{"params": [_param()], "lr": -1}], lr=0.1)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        ad.optim.Adam([{"params": [_param()]}, {"params": [_param()], "betas": (0.9, 1.0)}])
    opt = ad.optim.SGD([_param()], lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group({"params": [_param()], "momentum": -1})
    assert len(opt.param_groups) == 1
    q = _param()
    opt.add_param_group({"params": q, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.5
    with pytest.raises(ValueError, match="more than once"):
        opt.add_param_group({"params": [q]})
    with pytest.raises(TypeError, match="'params'"):
        opt.add_param_group([q])


def test_add_param_group_trains_like_pytorch():
    torch = pytest.importorskip("torch")
    w0, v0 = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    w, v = ad.tensor(w0, requires_grad=True), ad.tensor(v0, requires_grad=True)
    tw, tv = torch.tensor(w0, requires_grad=True), torch.tensor(v0, requires_grad=True)
    opt, topt = ad.optim.SGD([w], lr=0.1, momentum=0.9), torch.optim.SGD([tw], lr=0.1,
                                                                        momentum=0.9)
    opt.add_param_group({"params": [v], "lr": 0.01})
    topt.add_param_group({"params": [tv], "lr": 0.01})
    for _ in range(3):
        opt.zero_grad()
        topt.zero_grad()
        ((w * v) ** 2).sum().backward()
        ((tw * tv) ** 2).sum().backward()
        opt.step()
        topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(v.numpy(), tv.detach().numpy(), rtol=1e-12)


def test_load_state_dict_checks_the_settings_it_loads():
    opt = ad.optim.Adam([_param()])
    state = opt.state_dict()
    state["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(state)
    assert opt.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("make,what", [
    (lambda o: ad.optim.lr_scheduler.StepLR(o, step_size=0), "step_size"),
    (lambda o: ad.optim.lr_scheduler.StepLR(o, step_size=-2), "step_size"),
    (lambda o: ad.optim.lr_scheduler.StepLR(o, step_size=1.5), "step_size"),
    (lambda o: ad.optim.lr_scheduler.StepLR(o, step_size=2, gamma=math.nan), "gamma"),
    (lambda o: ad.optim.lr_scheduler.CosineAnnealingLR(o, T_max=0), "T_max"),
    (lambda o: ad.optim.lr_scheduler.CosineAnnealingLR(o, T_max=-5), "T_max"),
    (lambda o: ad.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=math.nan),
     "eta_min"),
], ids=["step0", "step-2", "step1.5", "gamma_nan", "tmax0", "tmax-5", "eta_nan"])
def test_invalid_schedules_raise_at_construction(make, what):
    """PyTorch fails later (ZeroDivisionError at the first step) or never; gpuad says why at
    once."""
    opt = ad.optim.SGD([_param()], lr=0.1)
    with pytest.raises(ValueError, match=f"lr_scheduler.*{what}"):
        make(opt)
    assert opt.param_groups[0]["lr"] == 0.1


# ---- checkpoints --------------------------------------------------------------------------------

def test_save_to_a_missing_directory_is_a_file_not_found_error(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "no" / "such" / "ckpt.safetensors"
    with pytest.raises(FileNotFoundError, match=f"gpuad.save: .*{path.name}"):
        ad.save({"w": ad.ones(2)}, path)
    assert not path.parent.exists()


def test_save_to_a_directory_is_an_os_error(tmp_path):
    pytest.importorskip("safetensors")
    with pytest.raises(IsADirectoryError, match=f"gpuad.save: .*{tmp_path.name}"):
        ad.save({"w": ad.ones(2)}, tmp_path)
    with pytest.raises(OSError):  # a file used as a directory
        (tmp_path / "f").write_text("x")
        ad.save({"w": ad.ones(2)}, tmp_path / "f" / "ckpt.safetensors")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_save_to_an_unwritable_directory_is_a_permission_error(tmp_path):
    pytest.importorskip("safetensors")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="gpuad.save: .*locked"):
            ad.save({"w": ad.ones(2)}, locked / "ckpt.safetensors")
    finally:
        locked.chmod(0o700)


def test_save_still_round_trips(tmp_path):
    pytest.importorskip("safetensors")
    ad.save({"w": ad.tensor([1.0, 2.0])}, tmp_path / "c.safetensors")
    np.testing.assert_array_equal(ad.load(tmp_path / "c.safetensors")["w"].numpy(), [1, 2])


class _NoRepr(np.ndarray):
    """An array whose repr fails: the data is only described when it is refused."""

    def __repr__(self):
        raise AssertionError("repr() of the data was taken for a message never raised")


def test_making_a_tensor_does_not_describe_the_data_unless_it_is_refused():
    """The refusal message reprs the data; a tensor made without one must not pay for it
    (a repr of a large array or list costs more than the copy)."""
    data = np.arange(4.0).view(_NoRepr)
    np.testing.assert_array_equal(ad.tensor(data).numpy(), np.arange(4.0))
    np.testing.assert_array_equal(ad.exp(data).numpy(), np.exp(np.arange(4.0)))


@pytest.mark.parametrize("call", [
    lambda x, y, g: y.backward(g),
    lambda x, y, g: ad.autograd.backward([y], [g]),
    lambda x, y, g: ad.grad(y, x, grad_outputs=g),
])
def test_a_seed_of_the_wrong_shape_is_refused_naming_both_shapes(call):
    """A gradient handed to backward/grad must have its output's shape (as in PyTorch), never
    be broadcast to it; the message starts as it did before the seeds' code was shared."""
    x = ad.tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match=r"^gpuad: mismatch in shape: .*output 0 .*has "
                                           r"shape \(1, 3\) but the output has shape \(3,\)"):
        call(x, y, ad.tensor(np.ones((1, 3))))
