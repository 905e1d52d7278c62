"""python -m gpuad demo's options: --plot writes a PNG (where matplotlib is installed),
--epochs and --batch-size are honoured, and an unusable --device is a clear error. Every
mistake (a bad option, setting, output path or missing package) is refused before training,
as one line on stderr and no traceback; -h, --help and --version."""
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tomllib

import gpuad as ad

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _demo(*args, check=True, **env):
    return _gpuad("demo", *args, check=check, **env)


def _gpuad(*args, check=False, **env):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("GPUAD_DEVICE", "GPUAD_CPU_FALLBACK")}
    return subprocess.run([sys.executable, "-m", "gpuad", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, check=check,
                          env={**full_env, **env})


def _one_line_error(r, code=2):
    """``gpuad: ...`` on one line, nothing trained (stdout empty)."""
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stdout == "", r.stdout
    (line,) = r.stderr.splitlines()
    assert line.startswith("gpuad: "), line
    return line


def _usage_error(r):
    """argparse's usage error: exit status 2, ``usage:`` then one ``error:`` line."""
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    assert r.stderr.startswith("usage: ") and "Traceback" not in r.stderr, r.stderr
    return r.stderr.splitlines()[-1]


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    out = _demo("--device", "cpu", "--epochs", "2", "--batch-size", "128", "--plot", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "2 epochs, batch 128" in out.stdout


def test_unusable_device_is_a_clear_error():
    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")
    out = _demo("--device", "cuda", check=False)
    assert out.returncode == 2
    assert "cannot use cuda:0" in out.stderr and "Traceback" not in out.stderr


def test_every_demo_dependency_is_used():
    """The demo extra holds what the demo imports and nothing more (the digits ship inside
    gpuad, so scikit-learn, their source, is not a dependency)."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["demo"]
    source = "\n".join(p.read_text() for p in (ROOT / "gpuad").rglob("*.py"))
    for requirement in extra:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).replace("-", "_")
        assert re.search(rf"^\s*(import|from) {name}\b", source, re.M), (
            f"the demo extra lists {requirement}, which gpuad never imports")


@pytest.mark.parametrize("args, message", [
    (("--device", "tpu"), "argument --device: invalid device value: 'tpu' (use auto, cpu, "
                          "cuda or cuda:N)"),
    (("--seed", "-1"), "argument --seed: invalid non-negative int value: '-1' (must be 0 or "
                       "more)"),
    (("--lr", "nan"), "argument --lr: invalid positive float value: 'nan' (must be a finite "
                      "number above 0)"),
    (("--lr", "-1"), "argument --lr: invalid positive float value: '-1'"),
    (("--lr", "inf"), "argument --lr: invalid positive float value: 'inf'"),
    (("--lr", "0"), "argument --lr: invalid positive float value: '0'"),
    (("--epochs", "abc"), "argument --epochs: invalid positive int value: 'abc'"),
    (("--epochs", "0"), "argument --epochs: invalid positive int value: '0' (must be 1 or "
                        "more)"),
    (("--batch-size", "-5"), "argument --batch-size: invalid positive int value: '-5'"),
    (("--bogus",), "unrecognized arguments: --bogus"),
])
def test_bad_option_is_a_usage_error(args, message):
    line = _usage_error(_demo(*args, check=False))
    assert line.startswith("python -m gpuad") and message in line, line


def test_unwritable_outputs_are_refused_before_training(tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    cases = {
        ("--save", str(missing / "c.safetensors")): f"the folder {missing} does not exist",
        ("--save", str(tmp_path)): "is a directory",
        ("--plot", str(missing / "c.png")): f"the folder {missing} does not exist",
        ("--plot", str(tmp_path / "c.txt")): "matplotlib cannot write .txt files",
        ("--save", str(tmp_path / "a"), "--plot", str(tmp_path / "a")):
            "--save and --plot name the same file",
    }
    for args, message in cases.items():
        if "--plot" in args:
            pytest.importorskip("matplotlib")
        line = _one_line_error(_demo("--device", "cpu", *args, check=False))
        assert message in line, line
    assert sorted(tmp_path.iterdir()) == []  # (the checks left nothing behind)


@pytest.mark.parametrize("option, package", [("--save", "safetensors"),
                                             ("--plot", "matplotlib")])
def test_a_missing_package_is_refused_before_training(tmp_path, option, package):
    code = (f"import sys; sys.modules[{package!r}] = None\n"
            "from gpuad.__main__ import main\n"
            f"sys.exit(main(['demo', '--device', 'cpu', {option!r}, {str(tmp_path / 'out')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    line = _one_line_error(r)
    assert line == (f"gpuad: {option} needs the {package} package: pip install {package} "
                    "(or, in gpuad's folder, pip install '.[demo]')")


@pytest.mark.parametrize("env, message", [
    ({"GPUAD_DEVICE": "bogus"}, "gpuad: GPUAD_DEVICE='bogus' is not a device"),
    ({"GPUAD_CPU_FALLBACK": "banana"},
     "gpuad: GPUAD_CPU_FALLBACK='banana' is not a valid setting: use one of 1, true, yes, on"),
])
def test_a_bad_setting_is_one_line(env, message):
    assert _one_line_error(_demo("--epochs", "1", check=False, **env)).startswith(message)


def test_device_option_overrides_the_environment():
    r = _demo("--device", "cpu", "--epochs", "1", "--batch-size", "512", GPUAD_DEVICE="bogus")
    assert "on cpu (1 epoch, batch 512)" in r.stdout  # (one epoch, not "1 epochs")


def test_fallback_warning_is_one_line():
    if ad.cuda.is_available():
        pytest.skip("a GPU is usable here")
    r = _demo("--device", "cuda", "--epochs", "1", "--batch-size", "512",
              GPUAD_CPU_FALLBACK="1")
    warning = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("gpuad: warning: cuda:0 is unavailable")
    assert "Traceback" not in r.stderr and "on cpu (1 epoch" in r.stdout


def test_a_write_that_fails_after_training_is_one_line(tmp_path, monkeypatch, capsys,
                                                        cpu_default):
    """A full disk, say: the run fails (status 1) with one line, no traceback."""
    from gpuad.__main__ import main

    def full(obj, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ad, "save", full)
    path = tmp_path / "c.safetensors"
    assert main(["demo", "--device", "cpu", "--epochs", "1", "--batch-size", "512",
                 "--save", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"gpuad: could not write the checkpoint to {path}: No space left on device"


def test_help_lists_the_commands_and_every_default():
    top = _gpuad("-h", check=True).stdout
    assert re.search(r"^\s+info\s+\S", top, re.M) and re.search(r"^\s+demo\s+\S", top, re.M)
    assert "--version" in top
    demo = _demo("--help").stdout
    for option, default in [("--device", "GPUAD_DEVICE, else auto"), ("--epochs", "20"),
                            ("--batch-size", "64"), ("--lr", "0.003"), ("--seed", "0"),
                            ("--save", "none"), ("--plot", "none")]:
        block = demo[demo.index(f"  {option}"):]
        assert f"(default: {default}" in " ".join(block.split()[:40]), option


def test_version_has_one_source():
    assert _gpuad("--version", check=True).stdout == f"gpuad {ad.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "gpuad/__init__.py"


def test_no_command_or_an_unknown_one_is_a_usage_error():
    assert "required: COMMAND" in _usage_error(_gpuad())
    assert "invalid choice: 'train'" in _usage_error(_gpuad("train"))


def test_plot_without_a_suffix_is_a_png_at_that_path(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves"
    _demo("--device", "cpu", "--epochs", "1", "--batch-size", "512", "--plot", str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves"]
