"""The command line: help for every command, the main flows, and one-line errors for bad input."""

from __future__ import annotations

import io
import json
import os
import stat

import pandas as pd

import pytest

from advbench.cli import main
from helpers import invoke

def _all_commands(group=main, prefix=()):
    """Every command and subcommand of the CLI, found from the click group itself."""
    yield list(prefix)
    for name, command in getattr(group, "commands", {}).items():
        yield from _all_commands(command, (*prefix, name))


COMMANDS = list(_all_commands())



@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_every_documented_command_is_registered():
    assert {"list", "train", "attack", "run", "report", "zoo", "curve", "sweep", "check", "detectors", "targeted"} <= set(
        main.commands)


@pytest.mark.subprocess
def test_help_does_not_import_torch():
    """`advbench --help` stays fast: importing the CLI must not pull in torch."""
    import subprocess
    import sys

    code = "import sys, advbench.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


@pytest.mark.subprocess
def test_python_dash_m_works():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "advbench", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "advbench" in out.stdout


def test_attack_then_report_in_every_format(isolated):
    result = invoke("attack", "cnn", "--attack", "pgd-linf", "--eps", "0.05", "--eps", "0.1", "--eps", "8/255",
                    "--steps", "5", "--samples", "30", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "0.03137" in result.output  # 8/255 parsed on the 0-1 scale
    runs = list((isolated / "results").iterdir())
    assert len(runs) == 1
    assert {"manifest.json", "summary.csv", "records"} <= set(os.listdir(runs[0]))
    for fmt, check in [("csv", "robust_accuracy"), ("markdown", "| defense |"), ("table", "pgd-linf (Linf)")]:
        result = invoke("report", "--format", fmt)
        assert result.exit_code == 0 and check in result.output, result.output
    data = json.loads(invoke("report", runs[0].name, "--format", "json").stdout)
    assert {row["epsilon"] for row in data["summary"]} == {0.03137254901960784, 0.05, 0.1}
    assert {"summary", "curves"} <= set(data)


def test_run_grid_file_and_resume(isolated):
    grid = isolated / "grid.toml"
    grid.write_text('samples = 20\nbatch_size = 10\ndefenses = ["cnn"]\nsanity = false\n'
                    '[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "deepfool-l2"\nepsilons = [1.0]\n')
    first = invoke("run", str(grid), "--format", "csv")
    assert first.exit_code == 0, first.output
    (run_dir,) = (isolated / "results").iterdir()
    from advbench.store import RunStore

    RunStore(run_dir).record_path("cnn__deepfool-l2").unlink()
    again = invoke("run", str(grid), "--format", "csv", "--resume")
    assert again.exit_code == 0
    assert "resuming: 1 of 2 cells already finished" in again.stderr
    assert len(list((isolated / "results").iterdir())) == 1
    timing = ["seconds_per_sample", "samples_per_second"]
    read = lambda text: pd.read_csv(io.StringIO(text)).drop(columns=timing)  # noqa: E731
    pd.testing.assert_frame_equal(read(first.stdout), read(again.stdout))


def test_train_writes_zoo_entry_and_refuses_to_overwrite(isolated):
    zoo_dir = isolated / "myzoo"
    result = invoke("train", "cnn", "--epochs", "1", "--zoo-dir", str(zoo_dir))
    assert result.exit_code == 0, result.output
    assert (zoo_dir / "cnn-digits.pt").exists() and (zoo_dir / "cnn-digits.json").exists()
    before = (zoo_dir / "cnn-digits.pt").read_bytes()
    same = invoke("train", "cnn", "--epochs", "1", "--zoo-dir", str(zoo_dir))
    assert same.exit_code == 0 and "already trained with these settings" in same.output
    other = invoke("train", "cnn", "--epochs", "2", "--zoo-dir", str(zoo_dir))
    assert other.exit_code != 0 and "exists with other settings" in other.output and "--force" in other.output
    assert (zoo_dir / "cnn-digits.pt").read_bytes() == before
    listing = invoke("zoo", "list", "--zoo-dir", str(zoo_dir))
    assert "cnn-digits" in listing.output


BAD_INPUTS = [
    (["attack", "cnnn", "--attack", "fgsm"], "unknown defense 'cnnn'; did you mean cnn"),
    (["attack", "cnn", "--attack", "pgd-lnf"], "unknown attack 'pgd-lnf'; did you mean pgd-linf"),
    (["attack", "cnn", "--attack", "fgsm", "--dataset", "digit"], "unknown dataset 'digit'; did you mean digits"),
    (["attack", "cnn", "--attack", "fgsm", "--eps", "-0.1"], "negative"),
    (["attack", "cnn", "--attack", "fgsm", "--eps", "nan"], "NaN"),
    (["attack", "cnn", "--attack", "fgsm", "--eps", "8"], "exceeds the data range"),
    (["attack", "cnn", "--attack", "fgsm", "--eps", "abc"], "not a number"),
    (["attack", "cnn", "--attack", "fgsm", "--batch-size", "0"], "batch size must be a positive integer"),
    (["attack", "cnn", "--attack", "fgsm", "--samples", "0"], "samples must be a positive integer"),
    (["attack", "cnn", "--attack", "fgsm", "--opt", "stpes=3"], "no option 'stpes'"),
    (["attack", "cnn", "--attack", "fgsm", "--dataset", "mnist", "--data-dir", "nowhere"], "pass --download"),
    (["run", "missing.toml"], "does not exist"),
    (["report", "no-such-run"], "no run 'no-such-run'"),
    (["train", "cnn", "--epochs", "0"], "epochs=0 is out of range: it must be >= 1"),
    (["attack", "cnn", "--attack", "fgsm", "--device", "tpu"], "unknown device"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_bad_input_gives_one_line_error(isolated, args, message):
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and result.output.strip().splitlines()[-1].startswith("error: "), result.output


def test_unreadable_and_invalid_grid_files(isolated):
    bad = isolated / "bad.toml"
    bad.write_text("defenses = [\n")
    result = invoke("run", str(bad))
    assert result.exit_code != 0 and "not valid TOML" in result.output
    bad.write_text('defenses = ["cnn"]\nattack = []\n')
    result = invoke("run", str(bad))
    assert result.exit_code != 0 and "unknown keys attack" in result.output


def test_missing_and_corrupt_checkpoints(isolated):
    (isolated / "zoo2").mkdir()
    (isolated / "zoo2" / "cnn-digits.pt").write_bytes(b"garbage")
    result = invoke("attack", "cnn", "--attack", "fgsm", "--zoo-dir", str(isolated / "zoo2"))
    assert result.exit_code != 0 and "corrupt" in result.output and "Traceback" not in result.output
    result = invoke("attack", "cnn", "--attack", "fgsm", "--dataset", "mnist", "--zoo-dir", str(isolated / "zoo2"),
                    "--data-dir", str(isolated))
    assert result.exit_code != 0
    result = invoke("attack", "cnn", "--attack", "fgsm", "--weights", str(isolated / "absent.pt"))
    assert result.exit_code != 0 and "does not exist" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_results_dir_keeps_earlier_results(isolated):
    _unwritable_check(isolated)


def test_unwritable_results_dir_is_refused(isolated):
    target = isolated / "file-not-dir"
    target.write_text("earlier content")
    result = invoke("attack", "cnn", "--attack", "fgsm", "--results-dir", str(target / "sub"))
    assert result.exit_code != 0 and "not writable" in result.output
    assert target.read_text() == "earlier content"


def _unwritable_check(isolated):
    results = isolated / "locked"
    results.mkdir()
    (results / "keep.txt").write_text("earlier")
    results.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = invoke("attack", "cnn", "--attack", "fgsm", "--results-dir", str(results))
        assert result.exit_code != 0 and "not writable" in result.output
        assert (results / "keep.txt").read_text() == "earlier"
    finally:
        results.chmod(stat.S_IRWXU)


def test_debug_shows_traceback(isolated):
    """Without --debug: one line, no traceback; with it, the error propagates with its traceback."""
    from advbench.errors import AdvbenchError

    plain = invoke("attack", "cnnn", "--attack", "fgsm")
    assert plain.exit_code == 2 and isinstance(plain.exception, SystemExit)
    assert plain.output.startswith("error: unknown defense 'cnnn'") and "Traceback" not in plain.output
    debug = invoke("--debug", "attack", "cnnn", "--attack", "fgsm")
    assert isinstance(debug.exception, AdvbenchError) and debug.exc_info[2] is not None


def test_run_with_own_python_model(isolated, monkeypatch):
    import torch

    (isolated / "usermodels.py").write_text(
        "import torch\n"
        "def linear(input_shape, num_classes):\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(isolated))
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).state_dict(), isolated / "w.pt")
    grid = isolated / "g.toml"
    grid.write_text('samples = 10\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n')
    result = invoke("run", str(grid), "--defense", "python:usermodels:linear", "--weights", str(isolated / "w.pt"),
                    "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "python:usermodels:linear,fgsm" in result.stdout
    result = invoke("run", str(grid), "--weights", str(isolated / "w.pt"))
    assert result.exit_code != 0 and "exactly one --defense" in result.output


class InterruptOnce:
    """Stands in for Ctrl-C during the second cell of a run."""

    armed = True


def test_interrupted_run_resumes(isolated, monkeypatch):
    from advbench.attacks.gradient import SingleStep
    from advbench.registry import attacks

    class Interrupting(SingleStep):
        def run(self, target, x, y, *, epsilon):
            if InterruptOnce.armed:
                raise KeyboardInterrupt
            return super().run(target, x, y, epsilon=epsilon)

    monkeypatch.setattr(InterruptOnce, "armed", True)
    with attacks.temporarily("ctrl-c", Interrupting):
        _interrupt_then_resume(isolated)


def _interrupt_then_resume(isolated):
    from advbench.store import RunStore

    grid = isolated / "grid.toml"
    grid.write_text('samples = 20\nsanity = false\n[[attacks]]\nname = "fgsm"\nepsilons = [0.1]\n'
                    '[[attacks]]\nname = "ctrl-c"\nepsilons = [0.1]\n')
    first = invoke("run", str(grid))
    assert first.exit_code == 130 and "rerun the same command with --resume" in first.output
    (run_dir,) = (isolated / "results").iterdir()
    store = RunStore(run_dir)
    done = store.record_path("cnn__fgsm")
    assert done.exists() and not store.record_path("cnn__ctrl-c").exists()
    before = done.stat().st_mtime_ns
    InterruptOnce.armed = False
    again = invoke("run", str(grid), "--resume", "--format", "csv")
    assert again.exit_code == 0, again.output
    assert "resuming: 1 of 2 cells already finished" in again.stderr
    assert done.stat().st_mtime_ns == before and store.record_path("cnn__ctrl-c").exists()


def test_ray_executor_without_ray_says_how_to_install(isolated, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = invoke("run", "--executor", "ray", "--samples", "4")
    assert result.exit_code != 0
    assert "pip install 'advbench[ray]'" in result.output and "Traceback" not in result.output
