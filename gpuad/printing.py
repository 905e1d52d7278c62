"""PyTorch-like text for tensors: ``tensor([1., 2.], device='cuda:0', requires_grad=True)``.

Floats print as whole numbers (``2.``) when they all are, else with four decimals (``0.3333``),
switching to scientific notation for wide ranges; empty tensors show their size.
"""
import numpy as np

_DEFAULT_DTYPES = (np.dtype("float32"), np.dtype("int64"), np.dtype("bool"))


def _body(data):
    if data.size == 0:
        return "[]"
    options = {}
    if data.dtype.kind == "f":
        finite = data[np.isfinite(data)]
        if finite.size and not np.array_equal(finite, np.round(finite)):
            options = {"precision": 4, "floatmode": "fixed"}
    return np.array2string(data, separator=", ", prefix="tensor(", threshold=1000, **options)


def tensor_repr(t):
    data = t.device.backend.to_numpy(t.array)  # (not t.numpy(): printing is not a leak)
    extras = []
    if data.size == 0 and data.ndim != 1:
        extras.append(f"size={data.shape}")
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if data.dtype not in _DEFAULT_DTYPES:
        extras.append(f"dtype={data.dtype}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn={t.grad_fn!r}")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + ", ".join([_body(data)] + extras) + ")"
