"""Save a training run and resume it: train a few steps, write the model's and the optimizer's
state to one checkpoint with ``ad.save``, build a fresh model and optimizer, ``ad.load`` the
checkpoint into them and go on. The resumed run ends with exactly the parameters of a run
that trained straight through, because Adam's moments and step count were saved too.

Run it: ``python examples/checkpoint_resume.py`` (needs ``pip install safetensors``, the
``checkpoint`` extra).
"""
import tempfile
from pathlib import Path

import numpy as np

import gpuad as ad

device = "cuda" if ad.cuda.is_available() else "cpu"
print(f"device: {device}")

# A regression problem: y = sin(3 x0) + x1^2, with fixed data for every step.
rng = np.random.default_rng(0)
inputs = rng.uniform(-1, 1, size=(10, 16, 2)).astype(np.float32)  # 10 batches of 16
batches = [(ad.tensor(x, device=device),
            ad.tensor(np.sin(3 * x[:, :1]) + x[:, 1:] ** 2, device=device)) for x in inputs]


def make_model_and_optimizer():
    ad.manual_seed(0)  # the same initial weights each time
    model = ad.nn.Sequential(ad.nn.Linear(2, 16), ad.nn.Tanh(), ad.nn.Linear(16, 1)).to(device)
    return model, ad.optim.Adam(model.parameters(), lr=0.02)


def train(model, optimizer, steps):
    for x, y in steps:
        optimizer.zero_grad()
        loss = ad.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return loss.item()


# 1. Straight through: all 10 steps in one go.
model, optimizer = make_model_and_optimizer()
print(f"straight through, final loss {train(model, optimizer, batches):.5f}")
straight = {name: p.numpy().copy() for name, p in model.state_dict().items()}

with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "run.safetensors"

    # 2. The first 6 steps, then a checkpoint holding both state dicts (and the step reached).
    model, optimizer = make_model_and_optimizer()
    print(f"steps 1-6, loss {train(model, optimizer, batches[:6]):.5f}; saving to {path.name}")
    ad.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 6}, path)
    del model, optimizer

    # 3. A new process would start here: fresh objects, then load and continue.
    model, optimizer = make_model_and_optimizer()
    checkpoint = ad.load(path, device=device)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    step = checkpoint["step"]
    print(f"resumed at step {step}, final loss {train(model, optimizer, batches[step:]):.5f}")

for name, p in model.state_dict().items():
    assert np.array_equal(p.numpy(), straight[name]), f"{name} differs after resuming"
print(f"ok: all {len(straight)} parameter tensors equal the straight run's, bit for bit")
