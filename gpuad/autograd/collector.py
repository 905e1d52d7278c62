"""Python's cyclic garbage collector while gpuad records a long graph.

A plain graph (no ``create_graph``) forms no reference cycles: reference counting frees it as
soon as its last tensor goes. Yet the collector walks every live node at each of its passes,
and a long graph lives through many passes: on a chain of 10,000 ops its passes took a fifth
of the time.

So while gpuad records (:data:`recording`, set by every node recorded) or a backward pass walks
the graph (:data:`walking`, from the walk's start to its end, sorting included), and the
collector's young passes find no garbage, each such pass doubles the young generation's
threshold, up to :data:`GROWTH` times the program's own setting. The setting is put back by a
pass that finds garbage, by one that comes with nothing recorded (and no walk) since the pass
before, and at the end of each backward pass (where a training step's graph ends), so cycles
made meanwhile wait at most ``GROWTH`` times as many allocations as they would anyway, and only
while a graph is being recorded or walked. A threshold the program sets with
``gc.set_threshold`` becomes the setting put back, unless it is exactly the one this module set
last (which cannot be told apart); and a program that reads ``gc.get_threshold()`` while a
graph is recorded sees the raised value. Threads take turns (a lock), and no threshold goes
past what ``gc.set_threshold`` accepts.
"""
import gc
import threading

#: how many times the program's young threshold the collector is given while gpuad records
GROWTH = 16

#: whether a node was recorded since the collector's last pass (the graph recorder sets it)
recording = False
#: whether a backward pass is walking a graph (the engine sets it; :func:`settle` clears it: a
#: backward pass nested in another's hook ends it early, which costs only speed)
walking = False
_setting = None  # the program's own thresholds
_ours = None  # the thresholds this module set last
_turn = threading.RLock()  # (a pass may start inside settle(), in the same thread)
_MAX = 2 ** 31 - 1  # (gc.set_threshold takes C ints)


def _after_pass(phase, info):
    global recording
    if phase != "stop":
        return
    with _turn:
        now = _own_setting()
        young = now[0]
        if info["collected"] or info["uncollectable"] or not (recording or walking):
            wanted = _setting[0]
        elif info["generation"] == 0:
            wanted = min(2 * young, GROWTH * _setting[0], _MAX)
        else:  # (an older pass: the young threshold stays)
            wanted = young
        recording = False
        _set(wanted, now)


def _own_setting():
    """The thresholds now, noting them as the program's unless this module set them."""
    global _setting
    now = gc.get_threshold()
    if now != _ours:
        _setting = now
    return now


def _set(young, now):
    global _ours
    _ours = (young, *now[1:])
    if _ours != now:
        gc.set_threshold(*_ours)


def settle():
    """A backward pass has ended (a graph is used up): the program's own setting again."""
    global walking
    walking = False
    if _ours is not None:
        with _turn:
            now = _own_setting()  # (first: a setting the program made since is the one)
            _set(_setting[0], now)


def install():
    """Follow the collector's passes (once per process; the import of gpuad does it)."""
    if _after_pass not in gc.callbacks:
        gc.callbacks.append(_after_pass)
