"""The garbage collector's young threshold while gpuad records (gpuad.autograd.collector):
raised while passes find no garbage, up to GROWTH times the program's setting; put back when
a pass finds garbage, when nothing was recorded, and at the end of each backward pass; a
program's own gc.set_threshold respected; and cyclic garbage made during a long recording
still collected without an explicit gc.collect."""
import gc
import weakref

import numpy as np
import pytest

import gpuad as ad
from gpuad.autograd import collector


@pytest.fixture
def thresholds():
    """The collector on, from the interpreter's default setting; the setting put back."""
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield
    gc.set_threshold(*before)
    if not enabled:
        gc.disable()


def _young():
    return gc.get_threshold()[0]


def _young_pass(collected=0):
    collector._after_pass("stop", {"generation": 0, "collected": collected,
                                   "uncollectable": 0})


def _chain(n):
    x = ad.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0
    return y


def test_a_long_recording_raises_the_young_threshold_up_to_its_bound(thresholds):
    graph = _chain(20_000)  # (tens of thousands of tracked objects: several young passes)
    assert _young() > 700
    for _ in range(20):
        collector.recording = True
        _young_pass()
    assert _young() == collector.GROWTH * 700
    del graph


def test_the_walk_of_a_backward_pass_keeps_the_raised_threshold(thresholds, monkeypatch):
    """Sorting and walking a long graph records nothing, yet it is the graph's own work: the
    young passes during it keep the raised threshold (they used to put the setting back at
    the walk's start, then pass at the program's rhythm over the whole graph); its end puts
    the setting back."""
    from gpuad.autograd import engine

    seen = []
    topological = engine._topological

    def sorting(*args, **kwargs):
        collector.recording = False  # (as a pass just before the walk leaves it)
        _young_pass()  # a young pass while the graph is sorted
        seen.append(_young())
        return topological(*args, **kwargs)

    monkeypatch.setattr(engine, "_topological", sorting)
    y = _chain(20_000)
    raised = _young()
    assert raised > 700
    y.sum().backward()
    assert seen == [min(2 * raised, collector.GROWTH * 700)]
    assert _young() == 700


def test_an_interrupted_sort_still_ends_the_walk(thresholds, monkeypatch):
    """A Ctrl-C (or a MemoryError) while a long graph is sorted: the walk is over, the
    program's setting is back, and nothing keeps raising it afterwards."""
    from gpuad.autograd import engine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_topological", interrupted)
    y = _chain(20_000)
    assert _young() > 700
    with pytest.raises(KeyboardInterrupt):
        y.sum().backward()
    assert collector.walking is False
    collector.recording = False
    _young_pass()  # nothing recorded, no walk: the program's own setting
    assert _young() == 700


def test_a_backward_pass_puts_the_setting_back(thresholds):
    """Where a training step's graph ends: cycles made after it (a create_graph pass leaves
    one) are collected at the program's own rhythm, however long the graph was."""
    y = _chain(20_000)
    assert _young() > 700
    y.sum().backward()
    assert gc.get_threshold() == (700, 10, 10)


def test_a_pass_with_garbage_or_without_recording_puts_the_setting_back(thresholds):
    collector.recording = True
    _young_pass()
    assert _young() == 1400
    collector.recording = True
    _young_pass(collected=5)  # (cycles found: the generational rhythm is needed again)
    assert _young() == 700
    collector.recording = True
    _young_pass()
    assert _young() == 1400
    _young_pass()  # (nothing recorded since the pass before)
    assert _young() == 700


def test_the_programs_own_setting_is_the_one_put_back(thresholds):
    collector.recording = True
    _young_pass()
    assert _young() == 1400
    gc.set_threshold(5000, 10, 10)  # the program's own, while raised
    collector.recording = True
    _young_pass()
    assert _young() == 10_000
    _young_pass(collected=1)
    assert gc.get_threshold() == (5000, 10, 10)


def test_older_passes_keep_the_young_threshold(thresholds):
    collector.recording = True
    _young_pass()
    collector.recording = True
    collector._after_pass("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    assert _young() == 1400
    collector._after_pass("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert _young() == 700  # (nothing recorded since the pass before)


class _Cycle:
    def __init__(self):
        self.me = self


def test_cycles_made_during_a_long_recording_are_still_collected(thresholds):
    """No explicit gc.collect: the collector's own passes find the cycle, once recording
    stops (or a pass finds garbage), at the program's own rhythm."""
    graph = _chain(20_000)
    assert _young() > 700
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    del cycle, graph
    hold = []  # objects kept alive: the collector counts allocations net of frees
    while alive() is not None and len(hold) < 4 * collector.GROWTH * 700:
        hold.extend([] for _ in range(1000))
    assert alive() is None
    assert _young() == 700


def test_a_backward_pass_puts_back_the_setting_the_program_made_last(thresholds):
    """Also where the program changed it since the last pass (0: no automatic passes)."""
    def step():
        x = ad.tensor(np.ones(3), requires_grad=True)
        (x * 2.0).sum().backward()

    collector.recording = True
    _young_pass()  # (the module's own setting first)
    gc.set_threshold(0, 10, 10)
    step()
    assert gc.get_threshold() == (0, 10, 10)
    gc.set_threshold(50_000, 20, 30)
    step()
    assert gc.get_threshold() == (50_000, 20, 30)


def test_no_threshold_goes_past_what_gc_takes(thresholds):
    gc.set_threshold(2 ** 30, 10, 10)
    for _ in range(3):
        collector.recording = True
        _young_pass()
    assert gc.get_threshold() == (2 ** 31 - 1, 10, 10)
