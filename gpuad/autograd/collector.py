"""Python's cyclic garbage collector while gpuad records graphs.

Graph nodes form no reference cycles: reference counting frees a graph as soon as its last
tensor goes. Yet the collector walks every live node at each of its passes, and a long graph
lives through many passes: on a chain of 10,000 ops its passes took a fifth of the time.

So while gpuad records (:data:`recording`, set by every node recorded) and the collector's
young passes find no garbage, each such pass doubles the young generation's threshold, up to
:data:`CAP` objects. A pass that finds garbage, or that comes with no recording since the pass
before, puts the threshold back to the program's own setting. Cycles made meanwhile are
collected later, never lost; a program that is not recording keeps its setting; and a
threshold the program sets with ``gc.set_threshold`` becomes the setting put back.
"""
import gc

#: the highest young-generation threshold the collector is given while gpuad records
CAP = 1 << 16

#: whether a node was recorded since the collector's last pass (the graph recorder sets it)
recording = False
_setting = None  # the program's own young-generation threshold
_ours = None  # the threshold this module set last


def _after_pass(phase, info):
    global recording, _setting, _ours
    if phase != "stop":
        return
    young, *older = gc.get_threshold()
    if young != _ours:  # set by the program (or never changed): its own setting
        _setting = young
    if info["collected"] or info["uncollectable"] or not recording:
        wanted = _setting
    elif info["generation"] == 0:
        wanted = min(2 * young, max(CAP, _setting))
    else:  # (an older pass: the young threshold stays)
        wanted = young
    recording = False
    _ours = wanted
    if wanted != young:
        gc.set_threshold(wanted, *older)


def install():
    """Follow the collector's passes (once per process; the import of gpuad does it)."""
    if _after_pass not in gc.callbacks:
        gc.callbacks.append(_after_pass)
