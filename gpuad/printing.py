"""PyTorch-like text for tensors: ``tensor([1., 2.], device='cuda:0', requires_grad=True)``."""
import numpy as np

_DEFAULT_DTYPES = (np.dtype("float32"), np.dtype("int64"), np.dtype("bool"))


def tensor_repr(t):
    data = t.numpy()
    body = np.array2string(data, separator=", ", prefix="tensor(", threshold=1000)
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if data.dtype not in _DEFAULT_DTYPES or data.size == 0:
        extras.append(f"dtype={data.dtype}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn={t.grad_fn!r}")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + ", ".join([body] + extras) + ")"
