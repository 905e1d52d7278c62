"""Thread-local grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``.

Each is a context manager and a decorator. ``set_grad_enabled(flag)`` also takes effect when
merely called, as in PyTorch.
"""
from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Generator
from typing import Any


class _Mode(threading.local):
    """Per-thread state of recording: grad mode, the gradient tapes now recording (innermost
    last), the collectors of tensors that require grad read under ``no_grad`` (for
    ``custom_gradient``), and the open forward-mode levels (with those masked while a JVP rule
    runs: the rule of level L sees only the levels opened before L, and any it opens)."""

    # (tapes and watchers are typed Any: their classes live on higher floors)
    enabled = True
    tapes: tuple[Any, ...] = ()
    watchers: tuple[Any, ...] = ()
    creating = False  # inside a backward pass with create_graph=True
    levels: tuple[int, ...] = ()
    masked: frozenset[int] = frozenset()
    deferring = 0  # inside the body of a custom op that has its own JVP rule


mode = _Mode()

#: How many tapes, custom-gradient collectors and forward levels are active, in all threads.
#: The per-op hot path reads this plain global (cheap) and looks at the thread-local lists
#: (dear) only when it is non-zero.
active = [0]
_active_lock = threading.Lock()


def count_active(delta: int) -> None:
    """Add ``delta`` to :data:`active` (one more or one fewer tape, collector or level)."""
    with _active_lock:
        active[0] += delta


def is_grad_enabled() -> bool:
    """Whether ops record the graph now (in this thread).

    >>> ad.is_grad_enabled()
    True
    >>> with ad.no_grad():
    ...     print(ad.is_grad_enabled())
    False
    """
    return mode.enabled


class _GradModeContext:
    """Base of the grad-mode contexts: sets ``mode.enabled`` on enter, restores it on exit."""

    flag = True

    def __init__(self, func: Callable[..., Any] | None = None) -> None:
        # Allows the bare-decorator form ``@ad.no_grad`` as well as ``@ad.no_grad()``.
        self._prev: list[bool] = []
        if func is not None:
            self._func = self(func)
            functools.update_wrapper(self, func)

    def __enter__(self) -> None:
        self._prev.append(mode.enabled)
        mode.enabled = self.flag

    def __exit__(self, *exc: object) -> None:
        mode.enabled = self._prev.pop()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Decorate a function (its calls run in this mode), or, for the bare-decorator form,
        call the function decorated."""
        if hasattr(self, "_func"):
            return self._func(*args, **kwargs)
        func = args[0]
        flag = self.flag
        if inspect.isgeneratorfunction(func):
            return _generator_in_mode(func, flag)

        @functools.wraps(func)
        def wrapper(*a: Any, **k: Any) -> Any:
            prev = mode.enabled
            mode.enabled = flag
            try:
                return func(*a, **k)
            finally:
                mode.enabled = prev

        return wrapper


def _generator_in_mode(func: Callable[..., Generator[Any, Any, Any]], flag: bool
                       ) -> Callable[..., Generator[Any, Any, Any]]:
    """Wrap a generator function so that each of its steps runs in grad mode ``flag``; values
    sent, exceptions thrown and ``close()`` reach the generator."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = func(*args, **kwargs)
        step, value = gen.send, None
        while True:
            prev = mode.enabled
            mode.enabled = flag
            try:
                item = step(value)
            except StopIteration as stop:
                return stop.value
            finally:
                mode.enabled = prev
            try:
                value = yield item
                step = gen.send
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                step, value = gen.throw, exc

    return wrapper


class no_grad(_GradModeContext):
    """Ops run inside record nothing: a context, or a decorator (``@ad.no_grad`` or
    ``@ad.no_grad()``).

    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> with ad.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    >>> @ad.no_grad
    ... def double(t):
    ...     return t * 2
    >>> double(x)
    tensor([2., 4.])
    """

    flag = False


class enable_grad(_GradModeContext):
    """Re-enable recording inside a ``no_grad`` region (a context or a decorator).

    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> with ad.no_grad():
    ...     with ad.enable_grad():
    ...         y = x * 2
    >>> y.requires_grad
    True
    """

    flag = True


class set_grad_enabled(_GradModeContext):
    """Set grad mode to ``flag``; as a context or decorator it is restored afterwards.

    >>> x = ad.tensor([1.0, 2.0], requires_grad=True)
    >>> with ad.set_grad_enabled(False):
    ...     y = x * 2
    >>> y.requires_grad, ad.is_grad_enabled()
    (False, True)
    >>> _ = ad.set_grad_enabled(False)  # called alone it switches now, until switched back
    >>> ad.is_grad_enabled()
    False
    >>> _ = ad.set_grad_enabled(True)
    """

    def __init__(self, flag: bool) -> None:
        self.flag = bool(flag)
        self._prev = [mode.enabled]
        mode.enabled = self.flag

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        mode.enabled = self._prev[0]

    def __call__(self, func: Callable[..., Any]) -> Any:
        mode.enabled = self._prev[0]  # decorating must not change the mode now
        return _GradModeContext.__call__(self, func)


#: The anomaly mode's settings while it is on (an ``anomaly._Settings``), else None. Global to
#: all threads, as PyTorch's: a debugging switch, flipped in one place for the whole program.
#: While it is on, it counts in ``active``, so every op takes the special recording path.
anomaly: list[Any] = [None]  # (Any: anomaly._Settings lives on a higher floor)


def set_anomaly(settings: Any) -> Any:
    """Switch the anomaly mode to ``settings`` (None: off); returns the previous settings."""
    with _active_lock:
        prev = anomaly[0]
        anomaly[0] = settings
        active[0] += (settings is not None) - (prev is not None)
    return prev
