"""GradientTape (SPEC section 4): watching, sources and structures, unconnected sources, tape
independence, nested tapes, jacobians, recording control and warnings.

References are analytic derivatives, float64 central differences and loops of ``gradient``.
"""
import threading
import warnings

import numpy as np
import pytest
from tape_refs import _fd_grad, _same
from tolerance import assert_close

import gpuad as ad

# ---- watching ------------------------------------------------------------------------------

def test_trainable_variables_are_watched_constants_need_watch(device):
    v = ad.Variable(5.0, device=device)
    with ad.GradientTape() as tape:
        y = ad.square(v)
    assert tape.gradient(y, v).item() == 10.0

    c = ad.constant(5.0, device=device)
    with ad.GradientTape() as tape:
        y = ad.square(c)
    assert tape.gradient(y, c) is None

    with ad.GradientTape() as tape:
        tape.watch(c)
        y = ad.square(c)
    g = tape.gradient(y, c)
    assert g.item() == 10.0 and g.device == device and g.dtype == ad.float32
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf  # a tape-only result


def test_watch_takes_nested_structures(device):
    a, b, c = (ad.constant(float(i + 1), device=device) for i in range(3))
    with ad.GradientTape() as tape:
        tape.watch({"pair": [a, b], "one": (c,)})
        y = a * b * c
    g = tape.gradient(y, {"ab": [a, b], "c": c})
    assert set(g) == {"ab", "c"} and isinstance(g["ab"], list)
    assert [t.item() for t in g["ab"]] == [6.0, 3.0] and g["c"].item() == 2.0
    with pytest.raises(TypeError, match="watch takes tensors"):
        tape.watch([a, 3.0])


def test_watch_accessed_variables_false(device):
    v = ad.Variable(3.0, device=device)
    w = ad.Variable(4.0, device=device)
    with ad.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(w)
        y = v * w
    gv, gw = tape.gradient(y, [v, w])
    assert gv is None and gw.item() == 3.0
    assert _same(tape.watched_variables(), (w,))


def test_watched_variables_lists_variables_read_or_watched(device):
    v1 = ad.Variable(1.0, device=device, name="v1")
    v2 = ad.Variable(2.0, device=device, name="v2")
    frozen = ad.Variable(3.0, trainable=False, device=device)
    unused = ad.Variable(4.0, device=device)
    x = ad.constant(5.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = v2 * v1 * frozen * x
    assert _same(tape.watched_variables(), (v2, v1))
    assert all(v is not unused for v in tape.watched_variables())
    assert tape.gradient(y, frozen) is None
    with ad.GradientTape() as tape:
        tape.watch(frozen)
        y = frozen * 2.0
    assert _same(tape.watched_variables(), (frozen,))
    assert tape.gradient(y, frozen).item() == 2.0


def test_tensors_that_require_grad_count_as_watched_and_backward_works(device):
    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    with ad.GradientTape() as tape:
        y = (x ** 3).sum()
    assert_close(tape.gradient(y, x).numpy(), [3.0, 12.0], device=device)
    assert x.grad is None  # the tape leaves .grad alone
    y.backward()  # the same graph, PyTorch style
    assert_close(x.grad.numpy(), [3.0, 12.0], device=device)


def test_backward_frees_the_requires_grad_graph_for_tapes_too(device):
    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    with ad.GradientTape(persistent=True) as tape:
        y = ad.sin(x).sum()
    y.backward(retain_graph=True)
    assert_close(tape.gradient(y, x).numpy(), np.cos([1.0, 2.0]), rtol=1e-6, device=device)
    assert_close(x.grad.numpy(), np.cos([1.0, 2.0]), rtol=1e-6, device=device)
    y.backward()  # as PyTorch: this frees the graph ...
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        tape.gradient(y, x)  # ... for the tape as well


def test_tape_only_results_do_not_reach_backward(device):
    x = ad.constant([1.0, 2.0], device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = (x * x).sum()
    assert not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    with pytest.raises(RuntimeError, match="GradientTape recorded it"):
        y.requires_grad_()
    assert_close(tape.gradient(y, x).numpy(), [2.0, 4.0], device=device)
    assert x.grad is None


# ---- gradient(): targets, sources, output gradients ---------------------------------------

def test_non_scalar_target_is_the_gradient_of_its_sum(device):
    x = ad.constant([0.5, 1.0, 2.0], device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.exp(x) * x  # shape (3,)
    assert_close(tape.gradient(y, x).numpy(),
                 np.exp([0.5, 1.0, 2.0]) * (1 + np.array([0.5, 1.0, 2.0])),
                 rtol=1e-6, device=device)


def test_several_targets_add_up_and_output_gradients_weight_them(device):
    x = ad.constant([1.0, 2.0], device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y1 = x * x
        y2 = ad.sin(x)
    g = tape.gradient([y1, y2], x)
    assert_close(g.numpy(), 2 * np.array([1.0, 2.0]) + np.cos([1.0, 2.0]),
                 rtol=1e-6, device=device)
    w = ad.constant([3.0, -1.0], device=device)
    g = tape.gradient(y1, x, output_gradients=w)
    assert_close(g.numpy(), [6.0, -4.0], device=device)
    g = tape.gradient({"a": y1, "b": y2}, [x], output_gradients={"a": w, "b": None})
    assert_close(g[0].numpy(), [6.0 + np.cos(1.0), -4.0 + np.cos(2.0)], rtol=1e-6, device=device)
    with pytest.raises(ValueError, match="has shape"):
        tape.gradient(y1, x, output_gradients=ad.ones(3, device=device))
    with pytest.raises(ValueError, match="output_gradients for 1 targets"):
        tape.gradient(y1, x, output_gradients=[w, w])


def test_sources_structure_is_kept(device):
    x = ad.Variable([1.0, 2.0], device=device)
    w = ad.Variable(3.0, device=device)
    b = ad.Variable(0.5, device=device)
    with ad.GradientTape() as tape:
        y = (x * w + b).sum()
    g = tape.gradient(y, {"layer": {"w": w, "b": b}, "inputs": (x,)})
    assert g["layer"]["w"].item() == 3.0 and g["layer"]["b"].item() == 2.0
    assert isinstance(g["inputs"], tuple)
    assert_close(g["inputs"][0].numpy(), [3.0, 3.0], device=device)
    with pytest.raises(TypeError, match="must be tensors"):
        ad.GradientTape().gradient(y, [x, 1.0])


def test_unconnected_sources_give_none_or_zeros(device):
    x = ad.Variable([1.0, 2.0], device=device)
    u = ad.Variable([[1.0, 2.0, 3.0]], dtype=ad.float64, device=device)
    with ad.GradientTape(persistent=True) as tape:
        y = (x * 2).sum()
    gx, gu = tape.gradient(y, [x, u])
    assert gu is None and gx is not None
    for how in ("zero", ad.UnconnectedGradients.ZERO):
        gu = tape.gradient(y, u, unconnected_gradients=how)
        assert gu.shape == (1, 3) and gu.dtype == ad.float64 and gu.device == device
        assert not gu.numpy().any()
    assert tape.gradient(y, u, unconnected_gradients=ad.UnconnectedGradients.NONE) is None
    with pytest.raises(ValueError, match="'none' or 'zero'"):
        tape.gradient(y, u, unconnected_gradients="zeros")


def test_gradient_of_a_watched_tensor_with_respect_to_itself_is_ones(device):
    x = ad.constant([8.0, 1.0], device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [1.0, 1.0])
    other = ad.constant(1.0, device=device)
    assert tape.gradient(other, other) is None  # not watched


def test_gradient_with_respect_to_an_intermediate(device):
    x = ad.constant(2.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = x * x
        y = ad.sin(h)
    assert tape.gradient(y, h).item() == pytest.approx(np.cos(4.0), rel=1e-6)
    assert tape.gradient(y, x).item() == pytest.approx(np.cos(4.0) * 4.0, rel=1e-6)


def test_python_control_flow_is_recorded_as_it_runs(device):
    def f(x, y):
        output = 1.0
        for i in range(y):
            if 1 < i < 5:
                output = ad.multiply(output, x)
        return output

    def grad(x, y):
        with ad.GradientTape() as t:
            t.watch(x)
            out = f(x, y)
        return t.gradient(out, x)

    x = ad.constant(2.0, device=device)
    assert grad(x, 6).numpy() == 12.0
    assert grad(x, 5).numpy() == 12.0
    assert grad(x, 4).numpy() == 4.0


def test_float64_sources(device):
    x64 = ad.constant([1.5, -2.0], dtype=ad.float64, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x64)
        y = (x64 ** 3).sum()
    g = tape.gradient(y, x64)
    assert g.dtype == ad.float64
    assert_close(g.numpy(), 3 * np.array([1.5, -2.0]) ** 2, device=device)


# ---- tapes are independent ----------------------------------------------------------------

def test_each_tape_records_only_ops_on_what_it_watches(device):
    x = ad.constant(2.0, device=device)
    y = ad.constant(3.0, device=device)
    with ad.GradientTape(persistent=True) as t1, ad.GradientTape(persistent=True) as t2:
        t1.watch(x)
        t2.watch(y)
        z = x * y
        only_x = x * 5.0
    assert t1.gradient(z, x).item() == 3.0 and t1.gradient(z, y) is None
    assert t2.gradient(z, y).item() == 2.0 and t2.gradient(z, x) is None
    assert t2.gradient(only_x, x) is None and t1.gradient(only_x, x).item() == 5.0


def test_ops_before_the_tape_are_constants_even_if_inputs_require_grad(device):
    x = ad.tensor(2.0, device=device, requires_grad=True)
    y = x * 3.0  # before the tape
    with ad.GradientTape(persistent=True) as tape:
        z = y * y
    assert tape.gradient(z, x) is None
    assert tape.gradient(z, y).item() == 12.0  # y required grad, so it was watched when read
    z.backward()  # the requires_grad graph still goes all the way
    assert x.grad.item() == 36.0


def test_stop_recording_makes_constants(device):
    x = ad.constant(2.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        with tape.stop_recording():
            h = x * x
        y = h * x
    assert tape.gradient(y, x).item() == 4.0  # h is a constant 4
    with pytest.raises(RuntimeError, match="inside the tape's with block"):
        with tape.stop_recording():
            pass


def test_ops_after_the_block_are_not_recorded(device):
    x = ad.constant(2.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
    z = y * 10.0  # outside
    assert tape.gradient(z, x) is None
    assert tape.gradient(y, x).item() == 4.0


def test_tapes_are_per_thread(device):
    x = ad.constant(2.0, device=device)
    out = {}

    def other_thread():
        out["z"] = x * x  # the main thread's tape must not record this

    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        th = threading.Thread(target=other_thread)
        th.start()
        th.join()
        y = x * 3.0
    assert tape.gradient(out["z"], x) is None
    assert tape.gradient(y, x).item() == 3.0


def test_a_tape_cannot_be_entered_twice(device):
    tape = ad.GradientTape()
    with tape:
        with pytest.raises(RuntimeError, match="already recording"):
            tape.__enter__()


# ---- higher order ------------------------------------------------------------------------

def test_third_derivative_with_three_tapes(device):
    x = ad.Variable(0.7, dtype=ad.float64, device=device)
    with ad.GradientTape() as t3:
        with ad.GradientTape() as t2:
            with ad.GradientTape() as t1:
                y = ad.sin(x) * x
            d1 = t1.gradient(y, x)
        d2 = t2.gradient(d1, x)
    d3 = t3.gradient(d2, x)
    v = 0.7
    assert d1.item() == pytest.approx(np.cos(v) * v + np.sin(v), rel=1e-12)
    assert d2.item() == pytest.approx(-np.sin(v) * v + 2 * np.cos(v), rel=1e-12)
    assert d3.item() == pytest.approx(-np.cos(v) * v - 3 * np.sin(v), rel=1e-12)


def test_persistent_tape_differentiates_its_own_gradient(device):
    x = ad.constant([1.0, 2.0], dtype=ad.float64, device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = (x ** 3).sum()
        dy = tape.gradient(y, x)  # recorded on the tape itself
    assert_close(dy.numpy(), [3.0, 12.0], device=device)
    assert_close(tape.gradient(dy, x).numpy(), [6.0, 12.0], device=device)


def test_nested_tapes_hessian_with_jacobian(device):
    a = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, -1.0], [0.0, -1.0, 4.0]])
    A = ad.constant(a, device=device)
    x = ad.constant([0.3, -0.2, 0.5], dtype=ad.float64, device=device)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = 0.5 * (x * (A @ x)).sum() + ad.sin(x).sum()
        g = inner.gradient(y, x)
    h = outer.jacobian(g, x)
    expected = a - np.diag(np.sin([0.3, -0.2, 0.5]))
    assert_close(h.numpy(), expected, rtol=1e-12, atol=1e-12, device=device)


def test_nested_tapes_match_finite_differences_of_the_gradient(device):
    x0 = np.array([0.4, -0.8, 1.1])

    def grad_np(v):
        return np.cos(v) * np.exp(0.5 * v) + 0.5 * np.sin(v) * np.exp(0.5 * v)

    x = ad.constant(x0, device=device)
    with ad.GradientTape() as outer:
        outer.watch(x)
        with ad.GradientTape() as inner:
            inner.watch(x)
            y = (ad.sin(x) * ad.exp(0.5 * x)).sum()
        g = inner.gradient(y, x)
        s = (g * g).sum()
    assert_close(g.numpy(), grad_np(x0), rtol=1e-10, device=device)
    fd = _fd_grad(lambda v: float((grad_np(v) ** 2).sum()), x0)
    assert_close(outer.gradient(s, x).numpy(), fd, rtol=1e-6, device=device)


# ---- jacobians ----------------------------------------------------------------------------

def _loop_jacobian(tape, y, x):
    """The Jacobian by one gradient() call per target element, with one-hot weights."""
    rows = []
    for i in range(y.size):
        w = np.zeros(y.size, dtype=np.float64)
        w[i] = 1.0
        seed = ad.tensor(w.reshape(y.shape), dtype=y.dtype, device=y.device)
        g = tape.gradient(y, x, output_gradients=seed)
        rows.append(np.zeros(x.shape) if g is None else g.numpy())
    return np.stack(rows).reshape(y.shape + x.shape)


def test_jacobian_matches_loops_of_gradient(device):
    rng = np.random.default_rng(0)
    x = ad.constant(rng.normal(size=(2, 3)), device=device)
    w = ad.Variable(rng.normal(size=(3, 4)), device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ad.tanh(x @ w) * ad.sum(x)  # shape (2, 4)
    jx, jw = tape.jacobian(y, [x, w])
    assert jx.shape == (2, 4, 2, 3) and jw.shape == (2, 4, 3, 4)
    assert_close(jx.numpy(), _loop_jacobian(tape, y, x), rtol=1e-12, device=device)
    assert_close(jw.numpy(), _loop_jacobian(tape, y, w), rtol=1e-12, device=device)
    # and against central differences
    x0, w0 = x.numpy(), w.numpy()
    for (i, k) in [(0, 1), (1, 3)]:
        fd = _fd_grad(lambda v, i=i, k=k: float((np.tanh(v @ w0) * v.sum())[i, k]), x0)
        assert_close(jx.numpy()[i, k], fd, rtol=1e-6, atol=1e-9, device=device)


def test_jacobian_of_scalar_and_unconnected(device):
    x = ad.constant([1.0, 2.0, 3.0], device=device)
    u = ad.constant([5.0], device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch([x, u])
        y = (x * x).sum()
    j = tape.jacobian(y, x)
    assert j.shape == (3,)
    assert_close(j.numpy(), [2.0, 4.0, 6.0], device=device)
    assert tape.jacobian(y, u) is None
    z = tape.jacobian(x * 1.0, u, unconnected_gradients="zero")
    assert z.shape == (3, 1) and not z.numpy().any()


def test_jacobian_inside_the_recording_block_is_refused(device):
    x = ad.constant([1.0, 2.0], device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        with pytest.raises(RuntimeError, match="outside"):
            tape.jacobian(y, x)
        with pytest.raises(RuntimeError, match="outside"):
            tape.batch_jacobian(y[None], x[None])
    assert_close(tape.jacobian(y, x).numpy(), [[2.0, 0.0], [0.0, 4.0]], device=device)


def test_batch_jacobian_matches_per_example_loops(device):
    rng = np.random.default_rng(1)
    x = ad.constant(rng.normal(size=(4, 3)), device=device)
    w = ad.constant(rng.normal(size=(3, 2)), device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = ad.sin(x @ w) * (x ** 2).sum(axis=1, keepdims=True)  # (4, 2), row i from x[i]
    bj = tape.batch_jacobian(y, x)
    assert bj.shape == (4, 2, 3)
    full = _loop_jacobian(tape, y, x)  # (4, 2, 4, 3)
    for i in range(4):
        assert_close(bj.numpy()[i], full[i, :, i, :], rtol=1e-12, device=device)
    with pytest.raises(ValueError, match="first"):
        tape.batch_jacobian(y, w)


def test_batch_jacobian_of_image_like_shapes(device):
    x = ad.constant(np.arange(12.0).reshape(2, 3, 2) / 10, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = ad.exp(x).reshape(2, 6)[:, :4]  # (2, 4)
    bj = tape.batch_jacobian(y, x)
    assert bj.shape == (2, 4, 3, 2)
    for b in range(2):
        for j in range(4):
            expected = np.zeros(6)
            expected[j] = np.exp(x.numpy()[b].reshape(-1)[j])
            assert_close(bj.numpy()[b, j].reshape(-1), expected, rtol=1e-12, device=device)


# ---- warnings -----------------------------------------------------------------------------

def test_watching_an_integer_tensor_warns_once_and_gives_none(device):
    i = ad.constant([1, 2], device=device)
    with ad.GradientTape() as tape:
        with pytest.warns(ad.GradientTapeWarning, match="not differentiable|only floating"):
            tape.watch(i)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tape.watch(i)  # once per tape
        y = i * 2
    assert tape.gradient(y, i) is None


def test_numpy_on_a_watched_tensor_while_recording_warns_once(device):
    x = ad.constant([1.0, 2.0], device=device)
    other = ad.constant([1.0], device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * 2.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            other.numpy()  # not watched: no warning
        with pytest.warns(ad.GradientTapeWarning, match="leaves the graph"):
            y.numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            x.numpy()  # once per tape
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y.numpy()  # not recording any more
    assert tape.gradient(y, x) is not None


# ---- review regressions -------------------------------------------------------------------

def test_dict_targets_and_output_gradients_pair_by_key(device):
    x = ad.Variable(1.0, device=device)
    with ad.GradientTape() as tape:
        ys = {"a": x * 2.0, "b": x * 3.0}
    w = {"b": ad.constant(100.0, device=device), "a": ad.constant(1.0, device=device)}
    assert tape.gradient(ys, x, output_gradients=w).item() == 302.0


def test_a_tape_records_under_no_grad(device):
    x = ad.constant(3.0, device=device)
    with ad.no_grad():
        with ad.GradientTape() as tape:
            tape.watch(x)
            y = x * x
        assert not ad.is_grad_enabled()
        z = x * x
    assert tape.gradient(y, x).item() == 6.0
    assert ad.is_grad_enabled() and z.grad_fn is None


def test_dict_keys_that_do_not_sort_are_refused(device):
    x = ad.Variable(1.0, device=device)
    with ad.GradientTape() as tape:
        a, b = x * 2.0, x * 3.0
    with pytest.raises(TypeError, match="keys of a dict of tensors must sort"):
        tape.gradient({1: a, "b": b}, x)


def test_numpy_warning_covers_variables_read_first_and_np_asarray(device):
    v = ad.Variable([1.0, 2.0], device=device)
    with ad.GradientTape() as tape:
        with pytest.warns(ad.GradientTapeWarning, match="leaves the graph"):
            a = v.numpy()  # before any op read v
        loss = ad.reduce_sum(ad.constant(a, device=device) * 3.0)
    assert tape.gradient(loss, v) is None  # the warning was right
    x = ad.tensor([1.0, 2.0], requires_grad=True, device="cpu")  # (a host conversion)
    with ad.GradientTape():
        with pytest.warns(ad.GradientTapeWarning, match="leaves the graph"):
            np.asarray(x)
    c = ad.constant([1.0], device="cpu")
    with ad.GradientTape():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (c * 2.0).numpy()  # nothing watched: logging an unwatched value is quiet


def test_integer_watch_warning_says_so(device):
    with ad.GradientTape() as tape:
        with pytest.warns(UserWarning, match="integer.*not differentiable"):
            tape.watch(ad.constant([1, 2], device=device))


def test_watch_accessed_variables_false_still_watches_tensors_that_require_grad(device):
    x = ad.tensor(2.0, device=device, requires_grad=True)
    v = ad.Variable(3.0, device=device)
    with ad.GradientTape(watch_accessed_variables=False) as tape:
        y = x * x * v
    gx, gv = tape.gradient(y, [x, v])
    assert gx.item() == 12.0 and gv is None


def test_printing_inside_a_tape_does_not_warn(device):
    x = ad.tensor([1.0, 2.0], device=device, requires_grad=True)
    with ad.GradientTape():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            repr(x)
            repr(x * 2.0)


def test_list_operands_are_weak_next_to_a_float_tensor(device):
    x64 = ad.tensor([1.0, 2.0], dtype=ad.float64, device=device)
    np.testing.assert_array_equal((x64 + [0.1, 0.2]).numpy(), np.array([1.1, 2.2]))
    x32 = ad.tensor([1.0, 2.0], device=device)
    assert (x32 * [1, 2]).dtype == ad.float32 and (x32 * [1.0, 2.0]).dtype == ad.float32
    v = ad.Variable([0.0], dtype=ad.float64, device=device)
    v.assign([0.1])
    assert v.numpy()[0] == 0.1
    with pytest.raises(TypeError):
        ad.Variable([1], dtype=ad.int32).assign([2 ** 40])
