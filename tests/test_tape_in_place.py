"""GradientTape (SPEC section 4) and in-place changes: a taped result changed in place (also
through a view), saved values changed in place, and views made stale by a change to their base.
"""
import numpy as np
import pytest
from tolerance import assert_close

import gpuad as ad


def test_in_place_change_of_a_taped_result_is_recorded(device):
    x = ad.constant(3.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * 2.0
        y += x  # y = 3x
        z = y * y
    assert tape.gradient(z, x).item() == pytest.approx(2 * 9.0 * 3.0)


def test_in_place_change_through_a_view_of_a_taped_result(device):
    x = ad.constant([1.0, 2.0, 3.0], device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * 1.0
        view = y[1:]
        view *= x[:2]  # y = [x0, x1 * x0, x2 * x1]
        z = y.sum()
    assert_close(tape.gradient(z, x).numpy(), [1.0 + 2.0, 1.0 + 3.0, 2.0], device=device)


def test_saved_values_changed_in_place_are_caught(device):
    x = ad.constant([1.0, 2.0], device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = x * 1.0
        y = (h * h).sum()
    h += 1.0  # outside the tape, but h was saved for y's gradient
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        tape.gradient(y, x)


# ---- review regressions -------------------------------------------------------------------

def test_a_view_made_before_its_base_became_tracked(device):
    v = ad.Variable([1.0, 2.0, 3.0], device=device)
    w = v[0:2]  # taken once, before training
    v.assign_add([1.0, 1.0, 1.0])
    np.testing.assert_array_equal(w.numpy(), [2.0, 3.0])
    with ad.GradientTape() as tape:
        y = (w * w).sum()
    np.testing.assert_array_equal(tape.gradient(y, v).numpy(), [4.0, 6.0, 0.0])
    c = ad.constant([1.0, 2.0, 3.0], device=device)
    view = c[0:2]
    x = ad.tensor([1.0, 1.0, 1.0], device=device, requires_grad=True)
    c.add_(x)  # c now depends on x; the view is stale
    (view * view).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 6.0, 0.0])


def test_a_stale_view_used_under_no_grad_keeps_its_graph(device):
    a = ad.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    x = a * 1.0
    v = x[1:]
    x.mul_(2.0)
    with ad.no_grad():
        (v * 2.0).mean()  # logging a metric
    ((v * v).sum() + a.sum()).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 17.0, 25.0])


def test_a_stale_view_under_stop_recording_is_rebuilt_later(device):
    c = ad.constant([1.0, 2.0, 3.0], device=device)
    with ad.GradientTape() as tape:
        tape.watch(c)
        x = c * 1.0
        v = x[1:]
        x.mul_(2.0)
        with tape.stop_recording():
            (v * 1.0).sum()
        y = (v * v).sum()
    np.testing.assert_array_equal(tape.gradient(y, c).numpy(), [0.0, 16.0, 24.0])
