"""The references of the .grad storage tests: PyTorch in float64, its calls without the
create_graph reference-cycle warning, and the check that no two arrays share memory."""
import itertools
import warnings

import numpy as np
import pytest


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


def _quiet(fn, *args, **kwargs):
    """Run a PyTorch call without its create_graph reference-cycle warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _apart(*arrays):
    """No two of ``arrays`` share any memory."""
    for (i, p), (j, q) in itertools.combinations(enumerate(arrays), 2):
        assert not np.shares_memory(p, q), f"arrays {i} and {j} share memory"
