"""Work queued during a ``backward()`` pass, to run once the pass has accumulated every leaf's
gradient into ``.grad`` (``DistributedDataParallel`` averages the gradients across ranks
there). Only ``backward()`` passes take callbacks: ``ad.grad`` and a tape's ``gradient`` write
no ``.grad``. Each pass, nested ones included (a backward inside a hook), has its own queue,
and a pass that raises runs none of its callbacks.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class _Queue(threading.local):
    def __init__(self) -> None:
        self.current: list[tuple[object, Callable[[], None]]] | None = None


_queue = _Queue()


def queue_callback(fn: Callable[[], None], key: object = None) -> bool:
    """Run ``fn()`` when the ``backward()`` pass in progress on this thread has filled every
    ``.grad``; returns False, queueing nothing, when no such pass is in progress. With a
    ``key``, once per pass: a second call with the same key (``is``) queues nothing more."""
    queued = _queue.current
    if queued is None:
        return False
    if key is None or all(k is not key for k, _ in queued):
        queued.append((key, fn))
    return True


@contextlib.contextmanager
def after_pass() -> Iterator[None]:
    """The extent of one ``backward()`` pass: its callbacks run, in order, when it ends without
    an exception."""
    outer, _queue.current = _queue.current, []
    queued = _queue.current
    try:
        yield
    finally:
        _queue.current = outer
    for _, fn in queued:
        fn()
