"""No device-to-host copy inside a CUDA training step, counted by the CuPy stand-in
(tests/fake_cupy: ``stats.device_to_host`` counts asnumpy, get, item, float/int/bool and
tolist of its arrays). The checks of labels and indices still run, on the device, and report
at the next host read (gpuad/backends/deferred.py); the demo reads once per epoch."""
import argparse

import numpy as np
import pytest
from fake_cupy import installed, stats

import gpuad as ad

F = ad.nn.functional


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


def _mlp_step(model, opt, x, y, rows):
    """One step of the demo's kind: a batch picked by an index tensor, forward, cross-entropy,
    backward, the optimizer's step and zero_grad."""
    loss = F.cross_entropy(model(x[rows]), y[rows])
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss


@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_a_training_step_on_cuda_copies_nothing_to_the_host(optimizer, fake_cuda):
    rng = np.random.default_rng(0)
    nn = ad.nn
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5)).to("cuda")
    opt = getattr(ad.optim, optimizer)(model.parameters(), lr=1e-2)
    x = ad.tensor(rng.standard_normal((40, 12)), dtype=ad.float32, device="cuda")
    y = ad.tensor(rng.integers(0, 5, 40), device="cuda")
    rows = ad.tensor(rng.permutation(40)[:16], device="cuda")
    before = stats.device_to_host
    for _ in range(3):  # the first step (the optimizer's state is made) and later ones
        loss = _mlp_step(model, opt, x, y, rows)
        assert stats.device_to_host == before
    # the counter counts: reading the loss is one copy, and one more for the queued checks
    assert np.isfinite(loss.item())
    assert stats.device_to_host == before + 2
    loss.item()  # (no check queued since: the read alone)
    assert stats.device_to_host == before + 3


def test_an_embedding_lookup_and_its_gradient_copy_nothing(fake_cuda):
    table = ad.nn.Embedding(10, 3, device="cuda")
    before = stats.device_to_host
    table(ad.tensor([[1, 9], [0, 0]], device="cuda")).sum().backward()
    assert stats.device_to_host == before
    assert table.weight.grad.numpy()[0].tolist() == [2.0] * 3


def test_a_demo_epoch_reads_the_device_twice(fake_cuda, capsys):
    """Once for the epoch's sums (loss, training and test hits, stacked) and once for the
    queued checks of the labels and indices; nothing per step."""
    from gpuad import demo
    from gpuad.data import load_digits

    images, labels = load_digits()
    ad.manual_seed(0)
    nn = ad.nn
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).to("cuda")
    opt = ad.optim.Adam(model.parameters(), lr=3e-3)
    data = [(ad.tensor(images[a:b], device="cuda"), ad.tensor(labels[a:b], device="cuda"))
            for a, b in ((0, 1000), (1000, 1200))]
    args = argparse.Namespace(epochs=2, batch_size=100, seed=0)
    before = stats.device_to_host
    history = demo._train(ad, model, opt, *data, args)
    assert stats.device_to_host - before == 2 * 2  # two epochs of 10 steps each
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert 0.5 < history["test_acc"][1] <= 1
