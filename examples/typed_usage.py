"""gpuad as a typed program uses it: tensors, reverse and forward mode, a gradient tape, a
small network trained with SGD and Adam, and a checkpoint. ``.ci/run`` type-checks this file
with mypy (pyproject's ``[tool.mypy]``), and tests/test_typing.py runs it.

Run it: ``python examples/typed_usage.py`` (checkpoints need ``pip install safetensors``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gpuad as ad
from gpuad import nn, optim


def reverse_mode() -> dict[str, list[float]]:
    """d/dx sum(x^2 + 2x) = 2x + 2 by ``backward``; d/dx sum(x^3) = 3x^2 by ``ad.grad``."""
    x: ad.Tensor = ad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y: ad.Tensor = (x * x + 2 * x).sum()
    y.backward()
    assert x.grad is not None
    (cubed,) = ad.grad((x**3).sum(), x)
    with ad.no_grad():
        untracked: ad.Tensor = x * 2
    assert not untracked.requires_grad
    return {"backward": x.grad.tolist(), "grad": cubed.tolist()}


def gradient_tape() -> float:
    """TensorFlow's spelling: d(v^2)/dv at v = 3."""
    v = ad.Variable(3.0, name="v")
    with ad.GradientTape() as tape:
        y: ad.Tensor = v * v
    dv: ad.Tensor = tape.gradient(y, v)
    return float(dv.item())


def forward_mode() -> list[float]:
    """The tangent of sin at x along v: cos(x) v."""
    x = ad.tensor([0.0, 1.0])
    v = ad.tensor([1.0, 2.0])
    _, tangent = ad.jvp(lambda t: t.sin(), (x,), (v,))
    return list(tangent.tolist())


def train(make: type[optim.SGD] | type[optim.Adam], steps: int = 30) -> list[float]:
    """Fit y = 3 x0 - 2 x1 + 1 with a two-layer network; the loss after each step."""
    ad.manual_seed(0)
    x = ad.rand(64, 2)
    target = (x * ad.tensor([3.0, -2.0])).sum(axis=1, keepdims=True) + 1.0
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = make(model.parameters(), lr=0.05)
    losses: list[float] = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


def checkpoint_round_trip() -> float:
    """A model saved and loaded into a fresh one: the largest difference of their outputs."""
    ad.manual_seed(1)
    model = nn.Linear(3, 2)
    x = ad.randn(4, 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        ad.save(model.state_dict(), path)
        copy = nn.Linear(3, 2)
        copy.load_state_dict(ad.load(path))
    diff: ad.Tensor = (model(x) - copy(x)).abs().max()
    return float(diff.item())


def main() -> dict[str, object]:
    """Every part's result, by name."""
    return {**reverse_mode(), "tape": gradient_tape(), "jvp": forward_mode(),
            "sgd": train(optim.SGD), "adam": train(optim.Adam),
            "checkpoint": checkpoint_round_trip()}


if __name__ == "__main__":
    for name, value in main().items():
        print(f"{name}: {value}")
