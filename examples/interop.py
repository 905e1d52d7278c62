"""gpuad next to NumPy, PyTorch and CuPy: ``ad.tensor(array)`` copies a NumPy array in,
``ad.from_numpy`` shares its memory (CPU), ``.numpy()`` copies back out; DLPack
(``ad.from_dlpack``, ``torch.from_dlpack(t)``, ``cupy.from_dlpack(t)``) shares memory with
PyTorch and CuPy without a copy. Also checks a gpuad gradient against PyTorch's. The PyTorch
part is skipped with a note when torch is not installed, the CuPy part without a usable GPU.

Run it: ``python examples/interop.py``.
"""
import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")

# NumPy: ad.tensor copies (onto any device), .numpy() copies back to the host.
array = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
t = ad.tensor(array, device=device)  # float64, like the array
doubled = (t * 2).numpy()  # a NumPy array again
assert t.dtype == ad.float64 and np.array_equal(doubled, 2 * array)
array[0, 0] = 99.0  # the tensor keeps its own copy
assert t.numpy()[0, 0] == -1.0
shared = ad.from_numpy(array)  # a CPU tensor over the array's memory
array[0, 1] = -5.0
assert shared.numpy()[0, 1] == -5.0
print("ok: NumPy copies in and out; ad.from_numpy shares memory")

try:
    import torch
except ImportError:
    torch = None
    print("note: PyTorch is not installed, skipping the PyTorch part")
if torch is not None:
    # Both ways through DLPack; the two tensors then share one buffer.
    on = device if device == "cpu" or torch.cuda.is_available() else "cpu"
    g = ad.tensor([1.0, 2.0, 3.0], device=on)
    as_torch = torch.from_dlpack(g)
    as_torch[0] = 10.0  # written through PyTorch, seen by gpuad
    assert g.numpy().tolist() == [10.0, 2.0, 3.0]
    back = ad.from_dlpack(torch.arange(4.0, device=on))
    assert back.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    print(f"ok: gpuad <-> PyTorch through DLPack on {on}, memory shared")

    # The same function in both libraries: the gradients agree.
    x_np = np.random.default_rng(0).normal(size=(4, 3))
    w_np = np.random.default_rng(1).normal(size=(3, 2))
    x = ad.tensor(x_np, device=device, requires_grad=True)
    (ad.tanh(x @ ad.tensor(w_np, device=device)) ** 2).sum().backward()
    xt = torch.tensor(x_np, requires_grad=True)
    (torch.tanh(xt @ torch.tensor(w_np)) ** 2).sum().backward()
    assert np.allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    print("ok: gpuad's gradient equals PyTorch's")

if device != "cuda":
    print("note: no usable GPU, skipping the CuPy part")
else:
    import cupy

    c = cupy.arange(5, dtype=cupy.float32)
    t = ad.from_dlpack(c)  # a CUDA tensor over CuPy's memory
    c[0] = 42.0
    assert t.device.type == "cuda" and t[0].item() == 42.0
    y = ad.exp(t) + 1.0
    back = cupy.from_dlpack(y)  # and back, without a copy
    assert cupy.allclose(back, cupy.exp(c) + 1.0)
    print("ok: gpuad <-> CuPy through DLPack")
