"""Checks of data on a GPU that report at the next host read instead of stopping the host.

Why: a check of values that live on a GPU (an index inside its axis, a class label below C)
needs those values on the host before it can raise, and reading them makes the host wait
until the GPU has caught up: a device-to-host copy per check, on every call (about ten per
training step of the demo). PyTorch does not wait either: a failed device-side check surfaces
at the next synchronisation. gpuad does the same, and keeps the error readable. Unlike
PyTorch's device-side assert, which leaves the CUDA context unusable, the error is raised once
and the device stays usable: a later read of a result computed from the bad data does not
raise again.

How:

- The op computes the check on the device as a 0-d bool array ``bad`` (``any(label >= C)``)
  and hands it to ``backend.require(bad, kind, message)``.
- On the CPU (:meth:`~gpuad.backends.base.Backend.require`) nothing is deferred: ``bad`` is
  read and ``kind(message)`` raised at the op, as before.
- On CUDA, :meth:`PendingChecks.add` folds ``bad`` into one int64 0-d array per device, the
  number of the first check that failed since the last read (0: none), with a few array ops
  and no copy. The host keeps each numbered check's message: the op, the shapes and dtypes,
  the line of the user's code that called it, and the fix.
- Every host read gpuad makes anyway from that device, ``backend.to_numpy`` (behind
  ``Tensor.numpy()``, ``item()``, ``tolist()``, ``float()``/``int()``/``bool()``, printing,
  ``.cpu()``), and ``ad.cuda.synchronize()``, first reads that number (8 bytes, one copy, and
  only when a check was added since the last read) and raises the failed check's exception,
  of the op's own type (IndexError), saying where it was queued. ``backward()`` and
  ``optimizer.step()`` are not such points: they queue kernels and return.

Until the error surfaces the ops run on, and no kernel reads outside its arrays: CuPy wraps
an out-of-range index around, and the cross-entropy kernel writes nan for a label outside
[0, C). Results computed between the failed op and the error are not valid; the message says
so. The messages are kept until the next read (one per distinct op, shape and line).
"""
import sys

from .._frames import user_frame


class PendingChecks:
    """The checks queued on one device since its last host read."""

    __slots__ = ("xp", "device", "first", "numbers")

    def __init__(self, xp, device):
        self.xp = xp  # the device's array module
        self.device = device  # its name, for the message
        self.first = None  # int64 0-d device array: the first failed check's number, or 0
        self.numbers = {}  # (kind, message) -> number, from 1

    def add(self, bad, kind, message):
        """Queue the device-side check ``bad`` (a 0-d bool array, true when it failed): if it
        failed, the next :meth:`raise_pending` raises ``kind(message())``. No host read."""
        frame = user_frame(sys._getframe(1))
        where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "gpuad"
        key = (kind, f"{message()} (queued at {where})")
        number = self.numbers.setdefault(key, len(self.numbers) + 1)
        mine = bad.astype("int64") * number
        first = self.first
        self.first = mine if first is None else self.xp.where(first != 0, first, mine)

    def raise_pending(self):
        """Raise the first failed check's exception, if one failed since the last call; one
        device-to-host copy when a check was queued since then, none otherwise."""
        if self.first is None:
            return
        first, numbers = self.first, self.numbers
        self.first, self.numbers = None, {}
        number = first.item()
        if number:
            kind, message = next(key for key, n in numbers.items() if n == number)
            raise kind(
                f"{message}. Reported at this host read of {self.device}: gpuad checks CUDA "
                "data on the device and raises at the next read, as PyTorch does, once: results "
                "computed from that op's output are not valid, and reading them later will not "
                "raise again. To stop at the op itself, call ad.cuda.synchronize() right after "
                "it, or run it on the CPU")
