"""GradientTape (SPEC section 4) over its life: persistence, ``reset``, a spent tape and a
tape entered again, and the saved arrays and edges it frees (checked with weak references).
"""
import gc
import weakref

import numpy as np
import pytest
from tape_refs import _same
from tolerance import assert_close

import gpuad as ad

# ---- persistence ---------------------------------------------------------------------------

def test_non_persistent_tape_allows_one_gradient(device):
    x = ad.Variable(2.0, device=device)
    with ad.GradientTape() as tape:
        y = x * x
    assert tape.gradient(y, x).item() == 4.0
    with pytest.raises(RuntimeError, match="persistent=True"):
        tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="persistent=True"):
        tape.jacobian(y, x)


def test_persistent_tape_answers_many_times(device):
    x = ad.Variable(2.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        y = x * x
        z = y * y
    assert tape.gradient(z, x).item() == 32.0
    assert tape.gradient(y, x).item() == 4.0
    assert tape.gradient(z, y).item() == 8.0
    assert tape.gradient(z, x).item() == 32.0


def test_reset_forgets_the_recording(device):
    x = ad.Variable(2.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        y = x * x
        tape.reset()
        z = x * 3.0
    assert tape.gradient(y, x) is None
    assert tape.gradient(z, x).item() == 3.0
    assert _same(tape.watched_variables(), (x,))


# ---- memory -------------------------------------------------------------------------------

def _taped_chain(device, persistent=True):
    x = ad.constant(np.linspace(0.1, 1.0, 1000), device=device)
    tape = ad.GradientTape(persistent=persistent)
    with tape:
        tape.watch(x)
        h = ad.exp(x) * 2.0
        s = ad.sin(h)  # saves h
        loss = (s * s).sum()  # saves s
    refs = [weakref.ref(h), weakref.ref(s), weakref.ref(h.array), weakref.ref(s.array)]
    return tape, x, loss, refs


def test_persistent_tape_frees_saved_arrays_when_deleted(device):
    tape, x, loss, refs = _taped_chain(device)
    gc.collect()
    assert all(r() is not None for r in refs)  # the tape holds them
    assert tape.gradient(loss, x) is not None
    del tape
    assert all(r() is None for r in refs)  # freed at once, no gc needed
    assert np.isfinite(loss.item())  # the result itself lives on


def test_reset_frees_saved_arrays(device):
    tape, x, loss, refs = _taped_chain(device)
    tape.reset()
    assert all(r() is None for r in refs)
    assert tape.gradient(loss, x) is None


def test_non_persistent_tape_frees_saved_arrays_after_gradient(device):
    tape, x, loss, refs = _taped_chain(device, persistent=False)
    assert tape.gradient(loss, x) is not None
    assert all(r() is None for r in refs)


def test_requires_grad_graph_is_not_freed_by_the_tape(device):
    x = ad.tensor([0.5, 1.5], device=device, requires_grad=True)
    tape = ad.GradientTape()
    with tape:
        y = (ad.sin(x) * x).sum()
    tape.gradient(y, x)
    del tape
    y.backward()
    assert_close(x.grad.numpy(), np.cos([0.5, 1.5]) * [0.5, 1.5]
                 + np.sin([0.5, 1.5]), rtol=1e-6, device=device)


# ---- review regressions -------------------------------------------------------------------

def test_a_spent_non_persistent_tape_stops_recording(device):
    x = ad.constant(3.0, device=device)
    with ad.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        assert tape.gradient(y, x).item() == 6.0
        z = x * x  # no longer recorded
    assert z.grad_fn is None and not tape._nodes


def test_variable_training_loop_frees_each_step(device):
    rng = np.random.default_rng(0)
    w = ad.Variable(rng.normal(size=(64, 64)) / 8, device=device)
    x = ad.constant(rng.normal(size=(32, 64)), device=device)
    losses, refs = [], []
    for _ in range(3):
        with ad.GradientTape() as tape:
            h = ad.tanh(x @ w)
            loss = ad.reduce_mean(ad.tanh(h @ w) ** 2)
        refs.append(weakref.ref(h.array))
        w.assign_sub(0.1 * tape.gradient(loss, w))
        losses.append(loss)  # kept, as a TensorFlow user keeps losses
        del h
    assert all(r() is None for r in refs)  # no step's activations survive its gradient
    assert losses[-1].item() < losses[0].item()


def test_persistent_tape_over_variables_frees_on_del_and_reset(device):
    v = ad.Variable(np.linspace(0.1, 1.0, 500), device=device)
    for finish in ("del", "reset"):
        tape = ad.GradientTape(persistent=True)
        with tape:
            h = ad.exp(v) * 2.0
            s = ad.sin(h)
            loss = (s * s).sum()
        refs = [weakref.ref(h), weakref.ref(s)]
        del h, s
        assert tape.gradient(loss, v) is not None
        assert all(r() is not None for r in refs)
        if finish == "del":
            del tape
        else:
            tape.reset()
        assert all(r() is None for r in refs)
        assert np.isfinite(loss.item())


def test_reset_inside_stop_recording_does_not_record(device):
    x = ad.constant(3.0, device=device)
    with ad.GradientTape(persistent=True) as tape:
        tape.watch(x)
        with tape.stop_recording():
            tape.reset()
            y = x * x
        tape.watch(x)
        z = x * x * x
    assert tape.gradient(y, x) is None
    assert tape.gradient(z, x).item() == 27.0


def test_a_used_non_persistent_tape_starts_afresh_when_entered_again(device):
    x = ad.Variable(3.0, device=device)
    tape = ad.GradientTape()
    with tape:
        y = x * x
    assert tape.gradient(y, x).item() == 6.0
    with tape:
        z = x * x * x
    assert tape.gradient(z, x).item() == 27.0


def test_released_tape_keeps_no_edges_to_watched_inputs(device):
    x = ad.tensor([1.0], device=device, requires_grad=True)
    c = ad.constant(np.ones(1000), device=device)
    ref = weakref.ref(c)
    tape = ad.GradientTape()
    with tape:
        tape.watch(c)
        y = x + c  # in the requires_grad graph (x) and on the tape (c)
    del tape, c
    assert ref() is None
    y.sum().backward()
    assert x.grad.item() == 1000.0
