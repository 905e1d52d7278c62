"""Every public function and class shows how it is used, with an example that runs: each
``>>>`` example in a public docstring runs here as a doctest (on the CPU, with ``ad`` and
``np`` imported and the seed set), and a public function or class without one fails the
coverage test. The public names are test_docstrings' walk of the public modules.

(Methods and properties need a docstring, which test_docstrings checks, not an example.)"""
import doctest
import inspect
import types

import numpy as np
import pytest
from test_docstrings import _names, _ours, _public_modules

import gpuad as ad


def public():
    """``{qualified name: object}`` of the public functions and classes, each once (under the
    first module found exporting it)."""
    seen, out = set(), {}
    for mod_name, mod in sorted(_public_modules().items()):
        for name in _names(mod):
            obj = getattr(mod, name)
            if isinstance(obj, types.ModuleType) or not callable(obj) or not _ours(obj):
                continue
            if id(obj) not in seen:
                seen.add(id(obj))
                out[f"{mod_name}.{name}"] = obj
    return out


PUBLIC = public()
_FINDER = doctest.DocTestFinder(recurse=False)
_OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _examples():
    for name, obj in PUBLIC.items():
        for test in _FINDER.find(obj, name, globs={}):
            if test.examples:
                yield pytest.param(test, id=name)


@pytest.fixture
def doc_globals(cpu_default):
    before = np.get_printoptions()
    ad.manual_seed(0)
    yield {"ad": ad, "np": np}
    np.set_printoptions(**before)


@pytest.mark.parametrize("test", list(_examples()))
def test_the_example_runs_and_prints_what_it_shows(test, doc_globals):
    test.globs = dict(doc_globals)
    runner = doctest.DocTestRunner(optionflags=_OPTIONS)
    report = []
    runner.run(test, out=report.append)
    failed, tried = runner.failures, runner.tries
    assert tried and not failed, "".join(report)


def test_every_public_name_has_a_docstring_with_an_example():
    """(Exceptions and warnings are shown where they are raised: no example of their own.)"""
    missing = sorted(name for name, obj in PUBLIC.items()
                     if ">>>" not in (inspect.getdoc(obj) or "")
                     and not (isinstance(obj, type) and issubclass(obj, (Exception, Warning))))
    assert not missing, f"{len(missing)} public names without an example: {missing}"
