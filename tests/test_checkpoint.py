"""ad.save / ad.load: safetensors files that round-trip state dicts and plain metadata, load on
the requested device, never run code from the file, and refuse pickles and damaged files
before anything reaches a model."""
import pickle

import numpy as np
import pytest

import gpuad as ad

pytest.importorskip("safetensors")


def test_round_trip_of_a_model_and_optimizer(tmp_path):
    model = ad.nn.Sequential(ad.nn.Linear(3, 4), ad.nn.ReLU(), ad.nn.Linear(4, 2))
    opt = ad.optim.Adam(model.parameters(), lr=0.01)
    model(ad.ones((2, 3))).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.safetensors"
    state = {"model": model.state_dict(), "step": 7, "lr": 0.01, "tag": "run-1",
             "history": [1.5, 0.75], "flags": {"ok": True, "none": None},
             "mask": np.array([1, 0, 1], dtype=np.int64)}
    ad.save(state, path)
    back = ad.load(path, device="cpu")
    assert back["step"] == 7 and back["lr"] == 0.01 and back["tag"] == "run-1"
    assert back["history"] == [1.5, 0.75] and back["flags"] == {"ok": True, "none": None}
    np.testing.assert_array_equal(back["mask"], [1, 0, 1])
    fresh = ad.nn.Sequential(ad.nn.Linear(3, 4), ad.nn.ReLU(), ad.nn.Linear(4, 2))
    fresh.load_state_dict(back["model"])
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=n)
        assert b.dtype == a.dtype
    assert all(isinstance(v, ad.Tensor) and v.device == "cpu" for v in back["model"].values())


def test_plain_state_dict_and_foreign_files(tmp_path):
    path = tmp_path / "w.safetensors"
    ad.save({"w": ad.arange(6.0).reshape(2, 3), "b": ad.zeros(2, dtype=ad.float64)}, path)
    back = ad.load(path)
    assert back["w"].shape == (2, 3) and back["b"].dtype == ad.float64
    import safetensors.numpy as st

    st.save_file({"x": np.ones(3, dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    assert ad.load(tmp_path / "other.safetensors")["x"].shape == (3,)


def test_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(ValueError, match="not a readable gpuad checkpoint.*never loaded"):
        ad.load(path)
    assert not marker.exists()


def test_damaged_files_raise_and_load_nothing(tmp_path):
    model = ad.nn.Linear(3, 2)
    path = tmp_path / "ok.safetensors"
    ad.save(model.state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 5])
    (tmp_path / "head.safetensors").write_bytes(data[:8] + b"{not json" + data[17:])
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    before = model.weight.numpy().copy()
    for name in ("cut", "head", "tiny"):
        with pytest.raises(ValueError, match="not a readable gpuad checkpoint"):
            model.load_state_dict(ad.load(tmp_path / f"{name}.safetensors"))
    np.testing.assert_array_equal(model.weight.numpy(), before)
    with pytest.raises(FileNotFoundError):
        ad.load(tmp_path / "missing.safetensors")


def test_what_cannot_be_saved(tmp_path):
    with pytest.raises(TypeError, match="expected a dict"):
        ad.save([ad.ones(2)], tmp_path / "x")
    with pytest.raises(TypeError, match="cannot store a object"):
        ad.save({"f": object()}, tmp_path / "x")


def test_every_header_length_loads(tmp_path):
    """(The first byte of the file is the low byte of the header length, whatever it is.)"""
    for n in range(1, 40):
        path = tmp_path / f"c{n}.safetensors"
        ad.save({"x" * n: ad.zeros(()), "n": n}, path)
        back = ad.load(path)
        assert back["n"] == n and back["x" * n].shape == ()


def test_colliding_and_reserved_keys_are_refused(tmp_path):
    with pytest.raises(TypeError, match="would collide"):
        ad.save({"1": ad.ones(1), 1: ad.ones(1)}, tmp_path / "a")
    with pytest.raises(TypeError, match="keys must be strings or ints"):
        ad.save({True: 1}, tmp_path / "a")
    with pytest.raises(TypeError, match="reserved"):
        ad.save({"__int__3": 1}, tmp_path / "a")
    ad.save({3: ad.ones(2), "a": {"b": [1, 2]}}, tmp_path / "ok")
    assert ad.load(tmp_path / "ok")["a"] == {"b": [1, 2]}
