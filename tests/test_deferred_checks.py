"""Checks of data (class labels, Embedding indices, integer index arrays) raise at the op on
the CPU, and on CUDA at the next host read of that device (gpuad/backends/deferred.py): here
on the CuPy stand-in (the package tests/fake_cupy), whose arrays are NumPy's."""
import sys

import numpy as np
import pytest
from fake_cupy import installed

import gpuad as ad

F = ad.nn.functional


@pytest.fixture
def fake_cuda(monkeypatch):
    with installed(monkeypatch):
        yield


def _next_line():
    """The number of the caller's next line (where a check is queued)."""
    return sys._getframe(1).f_lineno + 1


@pytest.mark.usefixtures("cpu_default")  # the check raises at the op on the CPU
def test_the_cpu_raises_at_the_op_with_shapes_and_the_fix():
    x = ad.zeros((2, 3))
    with pytest.raises(IndexError, match=r"cross_entropy: target holds class indices outside "
                       r"\[0, 3\) .*logits of shape \(2, 3\) and a target of shape \(2,\) "
                       r"\(int64\); labels must be class numbers 0\.\.2, or ignore_index"):
        F.cross_entropy(x, ad.tensor([0, 3]))
    with pytest.raises(IndexError, match=r"nll_loss: target holds class indices outside"):
        F.nll_loss(x, ad.tensor([-1, 0]))
    with pytest.raises(IndexError, match=r"Embedding: indices must be in \[0, 5\), got values "
                       r"outside it \(indices of shape \(2, 2\), int64, into a table of 5"):
        ad.nn.Embedding(5, 2)(ad.tensor([[0, 1], [2, 5]]))
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
        ad.ones(3)[[0, 3]]  # (NumPy's own check)
    assert F.cross_entropy(x, ad.tensor([-100, 2])).item() == pytest.approx(np.log(3))


def test_a_bad_label_on_cuda_raises_at_the_next_host_read(fake_cuda):
    x = ad.zeros((2, 3), device="cuda", requires_grad=True)
    line = _next_line()
    loss = F.cross_entropy(x, ad.tensor([0, 3], device="cuda"))  # queued, not read
    loss.backward()  # (no host read either)
    with pytest.raises(IndexError) as info:
        loss.item()
    message = str(info.value)
    assert message.startswith("gpuad.nn.functional.cross_entropy: target holds class indices "
                              "outside [0, 3)"), message
    assert "logits of shape (2, 3) and a target of shape (2,) (int64)" in message
    assert f"(queued at {__file__}:{line})" in message
    assert "Reported at this host read of cuda:0" in message and "not valid" in message
    assert "ad.cuda.synchronize() right after it" in message
    # reported once; the row with the bad label is nan (the kernel reads nothing past it)
    assert np.isnan(loss.item())
    assert np.isnan(x.grad.numpy()[1]).all() and np.isfinite(x.grad.numpy()[0]).all()


def test_synchronize_reports_and_the_first_failure_wins(fake_cuda):
    table = ad.nn.Embedding(4, 2, device="cuda")
    first = _next_line()
    table(ad.tensor([1, -1], device="cuda"))  # (an index for x[...], not for a table)
    F.cross_entropy(ad.zeros((1, 4), device="cuda"), ad.tensor([7], device="cuda"))
    with pytest.raises(IndexError, match=rf"Embedding: indices must be in \[0, 4\).*queued at "
                       rf".*:{first}\)"):
        ad.cuda.synchronize()
    ad.cuda.synchronize()  # nothing left to report
    assert table.weight.device.backend.checks.numbers == {}


def test_passing_checks_cost_one_read_and_raise_nothing(fake_cuda):
    backend = ad.device("cuda").backend
    x = ad.tensor([[2.0, 0.0], [0.0, 2.0]], device="cuda")
    loss = F.cross_entropy(x, ad.tensor([0, -100], device="cuda"))
    assert backend.checks.first is not None  # queued
    assert loss.item() == pytest.approx(np.log1p(np.exp(-2.0)))
    assert backend.checks.first is None and backend.checks.numbers == {}
    assert ad.ones(3, device="cuda")[[2, -3]].tolist() == [1.0, 1.0]


def test_an_index_outside_its_axis_raises_at_the_next_read(fake_cuda, monkeypatch):
    """With CuPy's indexing (the stand-in's too), which wraps an out-of-range index around
    instead of raising."""
    c = ad.tensor([1.0, 2.0, 3.0], device="cuda")
    picked = c[[0, 3]]  # (wrapped to [0, 0] until the read)
    with pytest.raises(IndexError, match=r"index out of range for axis 0 of size 3 \(an index "
                       r"array of shape \(2,\), int64\); indices must be in \[-3, 3\)"):
        picked.numpy()
    assert c[[0, -3]].tolist() == [1.0, 1.0]


def test_each_device_reports_its_own_checks(monkeypatch):
    with installed(monkeypatch, devices=2):
        F.cross_entropy(ad.zeros((1, 3), device="cuda:1"), ad.tensor([5], device="cuda:1"))
        assert ad.ones(2, device="cuda:0").tolist() == [1.0, 1.0]  # cuda:0's reads pass
        ad.cuda.synchronize("cuda:0")
        with pytest.raises(IndexError, match=r"outside \[0, 3\).*host read of cuda:1"):
            ad.ones(2, device="cuda:1").numpy()
