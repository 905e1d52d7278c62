"""The README's promises, run: its Python examples execute (the ``pycon`` blocks as doctests,
with their printed outputs), and the main job's loss falls."""
import doctest
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import gpuad as ad

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for code in blocks:
        namespace = {}
        exec(compile(code, "README.md", "exec"), namespace)
    x = namespace["x"]
    xs = np.array([1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), np.cos(xs) * xs + np.sin(xs), rtol=1e-6)
    assert "tensor([" in capsys.readouterr().out


def test_pycon_examples_print_what_the_readme_shows(cpu_default):
    """One example per API style; the guides' examples are the docs pages' (test_docs_pages)."""
    blocks = re.findall(r"```pycon\n(.*?)```", README, re.S)
    assert len(blocks) >= 2 and "GradientTape" in README and "backward()" in README
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(blocks):  # each block on its own, as a reader would paste it
        test = doctest.DocTestParser().get_doctest(block, {}, f"README block {i}", "README.md",
                                                   0)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 10
    assert result.failed == 0, "README examples printed something else (see the output above)"


def test_commands_are_marked():
    for tag in ("main-command", "test-command"):
        assert re.search(f"<!-- {tag} -->\n```\n.+\n```\n<!-- /{tag} -->", README), tag


def test_the_readme_is_short_and_points_only_inside_the_repository():
    """At most about 200 lines; every file it names exists here; no word for a document
    outside the repository."""
    assert len(README.splitlines()) <= 200
    named = r"`((?:docs|examples|benchmarks|tests|kernels)/[\w./-]+|[A-Z]+\.md|LICENSE)`"
    for path in re.findall(named, README):
        assert (ROOT / path).exists(), path
    for outside in ("SPEC", "seed article", "issue "):
        assert outside not in README, outside


def test_demo_learns_the_digits(tmp_path):
    """The main job with its defaults: the loss falls and the test accuracy reaches 0.95; the
    checkpoint it writes loads into a fresh model that scores the same."""
    path = tmp_path / "digits.safetensors"
    out = subprocess.run([sys.executable, "-m", "gpuad", "demo", "--device", "cpu", "--save",
                          str(path)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         check=True)
    text = out.stdout + out.stderr
    losses = [float(v) for v in re.findall(r"loss ([0-9.]+)", text)]
    assert len(losses) >= 5 and losses[-1] < losses[0] / 3
    acc = float(re.search(r"test accuracy ([0-9.]+)", text).group(1))
    assert acc >= 0.95, text
    assert "ms per epoch on cpu" in text
    saved = ad.load(path, device="cpu")
    assert saved["test_accuracy"] == pytest.approx(acc, abs=1e-4) and saved["epochs"] == 20
    from gpuad.data import load_digits

    nn = ad.nn
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    model.load_state_dict(saved["model"])
    images, labels = load_digits()
    test = np.random.default_rng(0).permutation(len(labels))[:360]
    pred = model(ad.tensor(images[test])).argmax(axis=1).numpy()
    assert (pred == labels[test]).mean() == pytest.approx(saved["test_accuracy"], abs=1e-6)


def test_info_reports_what_is_missing():
    out = subprocess.run([sys.executable, "-m", "gpuad", "info"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT, check=True).stdout
    assert f"gpuad      {ad.__version__}" in out
    if not ad.cuda.is_available():
        assert "cuda       unavailable: " in out
