"""The anomaly mode (SPEC section 8, issue 15 section 6): a backward rule that turns finite values
into nan or inf raises, naming the node, the shapes and the user's line that ran its forward op;
check_nan=False only records the lines (which other backward errors then name); the forward
pass can be checked too; it is global to all threads, as PyTorch's; with it off, nothing is
recorded. The CUDA path is checked on tests/fake_cupy.py's stand-in."""
import inspect
import re
import threading

import numpy as np
import pytest
from fake_cupy import installed, stats

import gpuad as ad
from gpuad.autograd import anomaly as anomaly_module
from gpuad.autograd import grad_mode

HERE = __file__


def _line_of(marker):
    """The line number of the line of this file holding ``marker`` (a comment)."""
    for n, line in enumerate(inspect.getsource(inspect.getmodule(_line_of)).splitlines(), 1):
        if line.rstrip().endswith(marker):
            return n
    raise AssertionError(marker)


def _place(marker):
    return re.escape(f"{HERE}:{_line_of(marker)}")


@pytest.fixture(autouse=True)
def _mode_off_after():
    before = grad_mode.active[0]
    yield
    assert not ad.autograd.is_anomaly_enabled(), "a test left the anomaly mode on"
    assert grad_mode.active[0] == before


def test_sqrt_of_zero_names_the_node_the_shapes_and_the_forward_line():
    x = ad.tensor([0.0, 1.0, 4.0], dtype=ad.float64, requires_grad=True)
    ad.sqrt(x).sum().backward()  # without the mode: the gradient holds inf, as 0.5 / sqrt(0)
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(x.grad.numpy(), 0.5 / np.sqrt([0.0, 1.0, 4.0]))
    with ad.autograd.detect_anomaly():
        y = ad.sqrt(x)  # <- sqrt forward
        loss = (y * 2.0).sum()
        with pytest.raises(RuntimeError) as err:
            loss.backward()
    text = str(err.value)
    assert "SqrtBackward returned inf in the gradient for input 0 (of 1)" in text
    assert "shape (3,) float64" in text and "output gradient, shape (3,)" in text
    assert re.search(_place("# <- sqrt forward") + r", in test_sqrt_of_zero", text)
    assert text.endswith("y = ad.sqrt(x)  # <- sqrt forward")


def test_the_rule_that_made_nan_is_named():
    """exp(3 log x) at 0: the forward holds -inf, but the rules of exp and mul give finite zeros;
    log's rule then divides 0 by 0, the first to turn finite values into nan."""
    x = ad.tensor([0.0, 2.0], dtype=ad.float64, requires_grad=True)
    ad.exp(ad.log(x) * 3.0).sum().backward()  # without the mode: d x³/dx, nan at 0
    np.testing.assert_allclose(x.grad.numpy(), [np.nan, 12.0])
    x.grad = None
    with ad.autograd.detect_anomaly():
        y = ad.log(x)  # <- log forward
        z = ad.exp(y * 3.0)
        with pytest.raises(RuntimeError, match="LogBackward returned nan") as err:
            z.sum().backward()
    assert re.search(_place("# <- log forward"), str(err.value)) and x.grad is None


def test_no_raise_when_the_incoming_gradient_already_holds_nan():
    x = ad.tensor([1.0, 4.0], dtype=ad.float64, requires_grad=True)
    seed = ad.tensor([np.nan, 1.0], dtype=ad.float64)
    with ad.autograd.detect_anomaly(check_forward=True):
        ad.sqrt(x).backward(seed)
        y = ad.log(ad.tensor([np.nan, -1.0]))  # a nan input: the forward check stays quiet
    np.testing.assert_array_equal(x.grad.numpy(), [np.nan, 0.25])
    assert np.isnan(y.numpy()).all()


def test_no_raise_when_a_saved_value_already_holds_inf():
    x = ad.tensor([np.inf, 1.0], dtype=ad.float64, requires_grad=True)
    with ad.autograd.detect_anomaly():
        ad.exp(x).sum().backward()  # g * exp(x) is inf, but the saved output held inf
    np.testing.assert_array_equal(x.grad.numpy(), [np.inf, np.e])


def test_forward_check_raises_at_the_op():
    x = ad.tensor([-1.0, 1.0], requires_grad=True)
    with ad.autograd.detect_anomaly(check_forward=True):
        with pytest.raises(RuntimeError) as err:
            ad.log(x)  # <- log of a negative
        ok = ad.log(x + 2.0)
    text = str(err.value)
    assert "the op log returned nan in its output, shape (2,) float32" in text
    assert re.search(_place("# <- log of a negative"), text) and "(shapes [(2,)])" in text
    np.testing.assert_allclose(ok.numpy(), np.log([1.0, 3.0]), rtol=1e-6)
    with ad.autograd.detect_anomaly():  # check_forward off: the forward is not checked
        assert np.isnan(ad.log(x).numpy()[0])


def test_forward_check_leaves_the_rules_inside_backward_to_the_rule_check():
    x = ad.tensor([0.0, 1.0], requires_grad=True)
    with ad.autograd.detect_anomaly(check_forward=True):
        y = ad.sqrt(x)
        with pytest.raises(RuntimeError, match="SqrtBackward returned inf"):
            y.sum().backward()


def test_check_nan_false_records_lines_without_raising():
    x = ad.tensor([0.0, 4.0], dtype=ad.float64, requires_grad=True)
    with ad.autograd.detect_anomaly(check_nan=False):
        assert ad.autograd.is_anomaly_enabled()
        assert not ad.autograd.is_anomaly_check_nan_enabled()
        y = ad.sqrt(x)  # <- recorded, not checked
        y.sum().backward()
    assert y.grad_fn.where == (HERE, _line_of("# <- recorded, not checked"),
                               "test_check_nan_false_records_lines_without_raising")
    np.testing.assert_array_equal(x.grad.numpy(), [np.inf, 0.25])


def test_other_backward_errors_name_the_forward_line():
    """An in-place change of a saved tensor: the error gets a note naming the node and the
    line of its forward op (as PyTorch prints the forward traceback)."""
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with ad.autograd.detect_anomaly(check_nan=False):
        y = x * 2.0
        z = ad.sin(y)  # <- sin saves y
        y.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an in-place operation") as err:
            z.sum().backward()
    note = "\n".join(err.value.__notes__)
    assert "raised in the backward of SinBackward" in note
    assert re.search(_place("# <- sin saves y"), note)


class _BadShape(ad.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2.0

    @staticmethod
    def backward(ctx, g):
        return ad.ones(5)


class _NanRule(ad.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        return g * ad.tensor([np.nan, 1.0], dtype=g.dtype)


def test_custom_functions():
    x = ad.tensor([1.0, 2.0], requires_grad=True)
    with ad.autograd.detect_anomaly():
        y = _BadShape.apply(x)  # <- custom forward
        with pytest.raises(Exception) as err:  # noqa: B017 (whatever gpuad raises for it)
            y.sum().backward()
        assert re.search(_place("# <- custom forward"), "\n".join(err.value.__notes__))
        y = _NanRule.apply(x)  # <- custom nan rule
        with pytest.raises(RuntimeError, match=r"returned nan in the gradient for input 0") as e:
            y.sum().backward()
    assert "Backward" in str(e.value) and re.search(_place("# <- custom nan rule"), str(e.value))


def _inf_after_sqrt(x):
    return ad.sqrt(x)  # <- helper line


def test_ad_grad_and_the_first_frame_outside_gpuad():
    x = ad.tensor([0.0, 1.0], requires_grad=True)
    with ad.autograd.detect_anomaly():
        y = _inf_after_sqrt(x).sum()
        with pytest.raises(RuntimeError, match="SqrtBackward") as err:
            ad.grad(y, x)
    assert re.search(_place("# <- helper line") + ", in _inf_after_sqrt", str(err.value))


def test_gradient_tape():
    x = ad.Variable([0.0, 1.0])
    with ad.autograd.detect_anomaly():
        with ad.GradientTape() as tape:
            y = ad.sqrt(x)  # <- taped sqrt
        with pytest.raises(RuntimeError, match="SqrtBackward returned inf") as err:
            tape.gradient(y, x)
    assert re.search(_place("# <- taped sqrt"), str(err.value))


def test_create_graph_second_order():
    """d²/dx² x^1.5 = 0.75 / sqrt(x) is inf at 0 while the first derivative is finite: the
    second pass names the node the first pass recorded, at the line of that first pass."""
    x = ad.tensor([0.0, 1.0], dtype=ad.float64, requires_grad=True)
    (g,) = ad.grad((x ** 1.5).sum(), x, create_graph=True)
    (h,) = ad.grad(g.sum(), x)  # without the mode: the reference values
    np.testing.assert_allclose(h.numpy(), [np.inf, 0.75])
    with ad.autograd.detect_anomaly():
        (g,) = ad.grad((x ** 1.5).sum(), x, create_graph=True)  # <- first pass
        np.testing.assert_allclose(g.numpy(), [0.0, 1.5])
        with pytest.raises(RuntimeError, match="PowBackward returned inf") as err:
            ad.grad(g.sum(), x)
    assert re.search(_place("# <- first pass"), str(err.value))


def test_create_graph_pass_is_checked():
    x = ad.tensor([0.0, 1.0], requires_grad=True)
    with ad.autograd.detect_anomaly():
        y = ad.sqrt(x).sum()
        with pytest.raises(RuntimeError, match="SqrtBackward"):
            y.backward(create_graph=True)


def test_nested_contexts_restore_the_previous_state():
    base = grad_mode.active[0]
    with ad.autograd.detect_anomaly(check_nan=False):
        with ad.autograd.detect_anomaly():
            assert ad.autograd.is_anomaly_check_nan_enabled()
            with ad.autograd.set_detect_anomaly(False):
                assert not ad.autograd.is_anomaly_enabled() and grad_mode.active[0] == base
            assert ad.autograd.is_anomaly_check_nan_enabled()
            assert grad_mode.active[0] == base + 1
        assert ad.autograd.is_anomaly_enabled()
        assert not ad.autograd.is_anomaly_check_nan_enabled()
    assert not ad.autograd.is_anomaly_enabled() and grad_mode.active[0] == base
    with pytest.raises(ValueError), ad.autograd.detect_anomaly():  # restored on error too
        raise ValueError
    assert not ad.autograd.is_anomaly_enabled()


def test_set_detect_anomaly_takes_effect_when_called():
    ad.autograd.set_detect_anomaly(True)
    try:
        assert ad.autograd.is_anomaly_enabled() and ad.autograd.is_anomaly_check_nan_enabled()
        x = ad.tensor([0.0], requires_grad=True)
        with pytest.raises(RuntimeError, match="SqrtBackward"):
            ad.sqrt(x).sum().backward()
    finally:
        ad.autograd.set_detect_anomaly(False)
    assert not ad.autograd.is_anomaly_enabled()
    with ad.autograd.set_detect_anomaly(True, check_nan=False):
        assert ad.autograd.is_anomaly_enabled()
        assert not ad.autograd.is_anomaly_check_nan_enabled()
    assert not ad.autograd.is_anomaly_enabled()


def test_decorators():
    x = ad.tensor([0.0], requires_grad=True)

    @ad.autograd.detect_anomaly()
    def called():
        ad.sqrt(x).sum().backward()

    @ad.autograd.detect_anomaly
    def bare():
        return ad.autograd.is_anomaly_enabled()

    @ad.autograd.set_detect_anomaly(True)
    def switched():
        return ad.autograd.is_anomaly_enabled()

    assert not ad.autograd.is_anomaly_enabled()  # decorating changes nothing now
    with pytest.raises(RuntimeError, match="SqrtBackward"):
        called()
    assert bare() and switched() and bare.__name__ == "bare"
    assert not ad.autograd.is_anomaly_enabled()


def test_the_mode_is_global_to_all_threads_as_in_pytorch():
    seen = {}

    def worker():
        seen["enabled"] = ad.autograd.is_anomaly_enabled()
        x = ad.tensor([0.0], requires_grad=True)
        try:
            ad.sqrt(x).sum().backward()
        except RuntimeError as exc:
            seen["error"] = str(exc)

    with ad.autograd.detect_anomaly():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen["enabled"] and "SqrtBackward" in seen["error"]
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["enabled"] is False


def test_off_records_nothing_and_the_plain_path_stays_plain(monkeypatch):
    """With the mode off no frame is looked at and no node gets a line; the mode counts in the
    flag that sends ops down the special path only while it is on."""
    calls = []
    monkeypatch.setattr(anomaly_module, "_where", lambda f: calls.append(f))
    before = grad_mode.active[0]
    x = ad.tensor([0.0, 1.0], requires_grad=True)
    y = ad.sqrt(x)
    y.sum().backward()
    assert not hasattr(y.grad_fn, "where") and calls == []
    with ad.autograd.detect_anomaly(check_nan=False):
        assert grad_mode.active[0] == before + 1
        ad.sqrt(x)
    assert len(calls) == 1 and grad_mode.active[0] == before


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


def test_cuda_checks_each_rule_with_one_device_reduction(fake_cuda, monkeypatch):
    import cupy

    x = ad.tensor([0.0, 1.0, 4.0], device="cuda", requires_grad=True)
    with ad.autograd.detect_anomaly():
        y = ad.sqrt(x)  # <- on cuda
        z = (y * 3.0).sum()
        copies, real = [], cupy.asnumpy
        monkeypatch.setattr(cupy, "asnumpy", lambda a: copies.append(a))
        before = stats.reductions
        with pytest.raises(RuntimeError, match="SqrtBackward returned inf") as err:
            z.backward()
        # sum, mul and sqrt each checked by one reduction, then the bad rule's two inputs
        # (its output gradient and saved output); no copy to the host
        assert stats.reductions - before == 5 and copies == []
        assert re.search(_place("# <- on cuda"), str(err.value))
        w = ad.tensor([1.0, 4.0], device="cuda", requires_grad=True)
        before = stats.reductions
        (ad.sqrt(w) * 3.0).sum().backward()
        assert stats.reductions - before == 3 and copies == []
    monkeypatch.setattr(cupy, "asnumpy", real)
    np.testing.assert_allclose(w.grad.numpy(), 1.5 / np.sqrt([1.0, 4.0]))


def test_cuda_all_finite_kinds(fake_cuda):
    backend = ad.tensor([1.0], device="cuda").device.backend
    import cupy

    assert backend.all_finite(cupy.asarray([1.0, 2.0], dtype=np.float16))
    assert not backend.all_finite(cupy.asarray([1.0, np.inf], dtype=np.float32))
    assert not backend.all_finite(cupy.asarray([1.0 + 1j, complex(0, np.nan)]))
    assert backend.all_finite(cupy.asarray([1, 2]))  # integers: no kernel needed
    assert backend.all_finite(cupy.zeros((0, 3)))


def test_the_mode_changes_no_value():
    """The benchmark's chain (forward, backward, fused CPU derivative rules included) gives the
    same gradient bits with the mode on as off, and matches PyTorch."""
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)

    def chain(x, lib):
        y = x
        for _ in range(5):
            y = lib.sin(lib.tanh(y * 0.9 + 0.1))
        return y.sum()

    grads = []
    for on in (False, True):
        x = ad.tensor(x0, requires_grad=True)
        with ad.autograd.set_detect_anomaly(on, check_forward=True):
            chain(x, ad).backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    xt = torch.tensor(x0, requires_grad=True)
    chain(xt, torch).backward()
    np.testing.assert_allclose(grads[1], xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_cuda_forward_check(fake_cuda):
    x = ad.tensor([-1.0, 1.0], device="cuda")
    before = stats.reductions
    with ad.autograd.detect_anomaly(check_forward=True), np.errstate(invalid="ignore"):
        with pytest.raises(RuntimeError, match="the op log returned nan"):  # (NumPy's warning:
            ad.log(x)                                                      # the stand-in's)
    assert stats.reductions - before == 2  # the output, then the input
