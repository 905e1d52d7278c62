"""SPEC section 3: grad mode: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, as
context managers and decorators (generators and threads included).
"""
import threading

import pytest
from leaves import _leaf

import gpuad as ad

# These tests are about the CPU path: pin the default device (cuda:0 on a GPU machine).
pytestmark = pytest.mark.usefixtures("cpu_default")


# ---- grad mode ------------------------------------------------------------------------------

class TestGradMode:
    def test_no_grad_context(self):
        x = _leaf([1.0])
        with ad.no_grad():
            assert not ad.is_grad_enabled()
            y = x * 2.0
        assert ad.is_grad_enabled()
        assert not y.requires_grad and y.grad_fn is None
        assert (x * 2.0).requires_grad

    def test_no_grad_decorator(self):
        x = _leaf([1.0])

        @ad.no_grad()
        def f(t):
            return t * 2.0, ad.is_grad_enabled()

        @ad.no_grad
        def g(t):
            return t * 3.0

        y, flag = f(x)
        assert not flag and not y.requires_grad
        assert not g(x).requires_grad
        assert ad.is_grad_enabled()
        assert f.__name__ == "f"

    def test_enable_grad_inside_no_grad(self):
        x = _leaf([1.0])
        with ad.no_grad():
            with ad.enable_grad():
                assert ad.is_grad_enabled()
                y = x * 2.0
            z = x * 2.0
        assert y.requires_grad and not z.requires_grad

    def test_enable_grad_decorator(self):
        x = _leaf([1.0])

        @ad.enable_grad()
        def f(t):
            return t * 2.0

        with ad.no_grad():
            y = f(x)
            assert not ad.is_grad_enabled()
        assert y.requires_grad

    def test_set_grad_enabled(self):
        x = _leaf([1.0])
        with ad.set_grad_enabled(False):
            assert not (x * 2.0).requires_grad
            with ad.set_grad_enabled(True):
                assert (x * 2.0).requires_grad
            assert not ad.is_grad_enabled()
        assert ad.is_grad_enabled()

        @ad.set_grad_enabled(False)
        def f(t):
            return t * 2.0

        assert ad.is_grad_enabled()
        assert not f(x).requires_grad
        assert ad.is_grad_enabled()

    def test_set_grad_enabled_as_function(self):
        try:
            ad.set_grad_enabled(False)
            assert not ad.is_grad_enabled()
            ad.set_grad_enabled(True)
            assert ad.is_grad_enabled()
        finally:
            ad.set_grad_enabled(True)

    def test_no_grad_restores_on_exception(self):
        with pytest.raises(ZeroDivisionError):
            with ad.no_grad():
                1 / 0  # noqa: B018
        assert ad.is_grad_enabled()

    def test_grad_mode_is_thread_local(self):
        x = _leaf([1.0])
        seen = {}

        def worker():
            seen["enabled"] = ad.is_grad_enabled()
            seen["rg"] = (x * 2.0).requires_grad

        with ad.no_grad():
            t = threading.Thread(target=worker)
            t.start()
            t.join()
            assert not ad.is_grad_enabled()
        assert seen == {"enabled": True, "rg": True}

    def test_no_grad_in_thread_does_not_leak(self):
        x = _leaf([1.0])
        go, done = threading.Event(), threading.Event()

        def worker():
            with ad.no_grad():
                go.set()
                done.wait(5)

        t = threading.Thread(target=worker)
        t.start()
        go.wait(5)
        try:
            assert ad.is_grad_enabled()
            assert (x * 2.0).requires_grad
        finally:
            done.set()
            t.join()


def test_no_grad_generator_receives_thrown_exceptions_and_close():
    import contextlib

    log = []

    @contextlib.contextmanager
    @ad.no_grad()
    def quiet():
        try:
            yield
        except ValueError:
            log.append("handled")
        finally:
            log.append("closed")

    with quiet():
        raise ValueError("inside")
    assert log == ["handled", "closed"]

    @ad.no_grad()
    def numbers():
        try:
            yield ad.is_grad_enabled()
            yield 2
        finally:
            log.append("gen closed")

    g = numbers()
    assert next(g) is False
    g.close()
    assert log[-1] == "gen closed" and ad.is_grad_enabled()
