"""Leaf tensors for the reverse-mode tests, and a CPU tensor's data as an ndarray (read
independently of ``numpy()``)."""
import numpy as np

import gpuad as ad


def _np(t):
    return np.asarray(t.array)


def _leaf(values, dtype=ad.float64):
    return ad.tensor(np.asarray(values, dtype=dtype), requires_grad=True)
