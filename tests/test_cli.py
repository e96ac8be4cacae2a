"""The command line: list / info / train / runs / doctor; usage errors in one line with exit code 2
and nothing written; seeded runs that repeat; failed runs that say so; resume; every model.

Commands run in-process through ``cli.main([...])`` (it returns the exit code); one test runs the
real entry point to see what a shell sees.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scratchlib import cli, models, track, utils

ROOT = Path(__file__).resolve().parents[1]


def _train(*argv: str) -> int:
    return cli.main(["train", *argv, "--quiet"])


def _only_run(runs_dir: Path) -> Path:
    runs = track.find_runs(runs_dir)
    assert len(runs) == 1, runs
    return runs[0]


def _error_line(capsys, quiet: bool = False) -> str:
    """The one ``error: ...`` line on stderr (and, with ``quiet``, nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert not quiet or captured.out == "", captured.out
    return lines[0]


# --- list, info, train, runs, doctor ----------------------------------------------------------------


def test_list_info_train_and_runs(capsys, runs_dir: Path) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "perceptron" in out and "mnist" in out
    marked = {line.split()[0] for line in out.splitlines() if "not trainable from the CLI" in line}
    assert marked == {"hopfield", "alexnet"}
    assert cli.main(["info", "perceptron"]) == 0 and '"year": 1958' in capsys.readouterr().out
    assert _train("perceptron", "--data", "iris2", "--epochs", "5") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == 1.0 and Path(result["run"]) == _only_run(runs_dir)
    assert cli.main(["runs"]) == 0 and "perceptron_iris2" in capsys.readouterr().out


def test_a_numpy_model_logs_through_the_same_tracking(runs_dir: Path) -> None:
    assert _train("numpymlp", "--data", "xor", "--epochs", "3", "--lr", "0.5") == 0
    run = _only_run(runs_dir)
    names = [e["event"] for e in track.load_events(run)]
    assert names == ["on_start", *["on_epoch_end"] * 3, "on_train_end", "on_eval", "on_finish"]
    scalars = track.load_scalars(run)
    assert scalars.epoch.tolist() == [1, 2, 3] and {"train_loss", "val_loss"} <= set(scalars)
    cfg = track.load_config(run)
    assert cfg["config"]["lr"] == 0.5 and cfg["hparams"]["sizes"] == [2, 64, 2]


def test_doctor_reports_each_item_with_hints() -> None:
    buf = io.StringIO()
    problems = cli.doctor(buf)
    text = buf.getvalue()
    for item in ("python", "torch", "device", "group notebooks", "data cache", "wandb"):
        assert item in text
    assert problems == [] and "no problems" in text


# --- usage errors: one line, exit code 2, nothing written --------------------------------------------

USAGE_ERRORS = {
    "epochs 0": (["train", "mlp", "--data", "digits", "--epochs", "0"], "--epochs: must be >= 1"),
    "fractional batch": (
        ["train", "mlp", "--data", "digits", "--batch-size", "2.5"],
        "--batch-size: '2.5' is not a whole number",
    ),
    "negative lr": (["train", "mlp", "--data", "digits", "--lr", "-1"], "--lr: must be a positive"),
    "nan lr": (["train", "mlp", "--data", "digits", "--lr", "nan"], "--lr: must be a positive"),
    "unknown model": (["train", "gpt-7", "--data", "digits"], "valid names: .*perceptron"),
    "unknown dataset": (["train", "mlp", "--data", "imagenet"], "valid names: .*digits"),
    "unknown optimizer": (["train", "mlp", "--data", "digits", "--optimizer", "rmsprop"], "adamw"),
    "unknown device": (["train", "mlp", "--data", "digits", "--device", "tpu"], "unknown device"),
    "bad wandb mode": (["train", "mlp", "--data", "digits", "--wandb", "sometimes"], "wandb mode"),
    "ten classes for a two-class model": (["train", "perceptron", "--data", "digits"], "0/1"),
    "inputs the model cannot take": (
        ["train", "lenet5", "--data", "iris"],
        "cannot train on iris",
    ),
    "batch size a model lacks": (
        ["train", "perceptron", "--data", "iris2", "--batch-size", "8"],
        "drop --batch-size",
    ),
    "optimizer for a numpy model": (
        ["train", "perceptron", "--data", "iris2", "--optimizer", "sgd"],
        "drop --optimizer",
    ),
    "unknown model argument": (["train", "mlp", "--data", "digits", "--arg", "depth=3"], "depth"),
    "not a classifier": (["train", "hopfield", "--data", "digits"], "hopfield cannot be trained"),
    "no dataset fits": (["train", "alexnet", "--data", "cifar10"], "alexnetcifar"),
    "no model": (["train", "--data", "digits"], "needs a MODEL"),
    "nothing to resume": (["train", "--resume", "/no/such/run"], "nothing to resume"),
    "unknown info": (["info", "gpt-7"], "valid names"),
    "unknown command": (["frobnicate"], "invalid choice"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS)
def test_a_usage_error_is_one_line_exit_2_and_writes_nothing(case, capsys, runs_dir) -> None:
    argv, match = USAGE_ERRORS[case]
    assert cli.main(argv) == 2
    line = _error_line(capsys, quiet=True)
    assert re.search(match, line), line
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # no run folder was made


def test_runs_root_that_is_a_file_is_a_usage_error(tmp_path, capsys) -> None:
    afile = tmp_path / "runs.txt"
    afile.write_text("x")
    assert cli.main(["runs", "--root", str(afile)]) == 2
    assert "is a file" in _error_line(capsys)


def test_a_malformed_run_folder_does_not_stop_the_run_table(capsys, runs_dir) -> None:
    good = track.start("perceptron", experiment="good")
    good.finish()
    bad = track.start("perceptron", experiment="bad")
    bad.finish()
    (bad.dir / "config.json").write_bytes(b'{"run_id": "\xff')
    with pytest.warns(track.MalformedRunWarning, match=bad.dir.name):
        assert cli.main(["runs"]) == 0
    out = capsys.readouterr().out
    assert good.id in out and bad.id not in out


def test_the_real_entry_point_prints_one_line_and_no_traceback(runs_dir) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchlib.cli",
            "train",
            "mlp",
            "--data",
            "digits",
            "--epochs",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: argument --epochs: must be >= 1, got 0 (see `scratch train --help`)"
    ]
    assert not runs_dir.exists()


# --- seeded, honest runs ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_losses(runs_dir, one_torch_thread) -> None:
    losses = []
    for k, seed in enumerate(("0", "0", "1")):
        utils.seed_everything(100 + k)  # whatever state the process is in before the command
        assert _train("mlp", "--data", "digits", "--epochs", "2", "--seed", seed) == 0
        scalars = track.load_scalars(track.find_runs()[-1])
        losses.append(scalars[["train_loss", "val_loss"]].to_numpy().tolist())
    assert len(losses[0]) == 2
    assert losses[0] == losses[1]  # seeded before the model and the data were built
    assert losses[2] != losses[0]  # and the seed is what decides


def test_a_numpy_model_trains_with_the_learning_rate_it_is_given(runs_dir) -> None:
    assert _train("perceptron", "--data", "iris2", "--epochs", "3", "--lr", "0.001") == 0
    assert _train("perceptron", "--data", "iris2", "--epochs", "3", "--lr", "1") == 0
    small, unit = track.find_runs()
    assert track.load_config(small)["hparams"]["lr"] == 0.001
    assert track.load_config(small)["config"]["lr"] == 0.001
    # From zero weights the perceptron is scale-free: the same mistakes, weights 1000x smaller.
    a, b = track.load_scalars(small), track.load_scalars(unit)
    assert a.mistakes.tolist() == b.mistakes.tolist()
    assert a.weight_norm.to_numpy() == pytest.approx(b.weight_norm.to_numpy() * 0.001)


def test_a_non_finite_loss_fails_the_run_in_one_line(capsys, runs_dir, one_torch_thread) -> None:
    argv = ["mlp", "--data", "iris", "--epochs", "1", "--lr", "1e30", "--optimizer", "sgd"]
    assert _train(*argv) == 1
    line = _error_line(capsys)
    assert "nan" in line.lower() and "lr" in line
    assert track.load_runs().status.tolist() == ["failed"]


def test_a_numpy_model_that_diverges_fails_the_run(capsys, runs_dir) -> None:
    assert _train("adaline", "--data", "iris2", "--epochs", "20", "--lr", "100") == 1
    assert "lower --lr" in _error_line(capsys)
    assert track.load_runs().status.tolist() == ["failed"]


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_continues_the_same_run_with_more_epochs(capsys, runs_dir, one_torch_thread) -> None:
    assert _train("mlp", "--data", "digits", "--epochs", "1", "--batch-size", "64") == 0
    run = _only_run(runs_dir)
    capsys.readouterr()
    assert _train("--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "2") == 0
    assert json.loads(capsys.readouterr().out)["run"] == str(run)
    assert _only_run(runs_dir) == run  # the same folder, not a new one
    assert track.load_scalars(run).epoch.tolist() == [1, 2]
    cfg = track.load_config(run)["config"]
    assert cfg["epochs"] == 2 and cfg["batch_size"] == 64  # given again / kept from the run
    assert track.load_runs(run).status.tolist() == ["finished"]
    assert "on_resume" in [e["event"] for e in track.load_events(run)]


class _Payload:
    """A pickle that runs code when unpickled: it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["malicious", "corrupt"])
def test_resume_from_a_bad_checkpoint_fails_clearly_and_runs_no_code(
    kind, tmp_path, capsys, runs_dir, one_torch_thread
) -> None:
    import torch

    assert _train("mlp", "--data", "iris", "--epochs", "1") == 0
    run = _only_run(runs_dir)
    last = run / "checkpoints" / "last.pt"
    marker = tmp_path / "pwned"
    if kind == "malicious":
        pickle.loads(pickle.dumps(_Payload(marker)))  # unpickled unsafely, the payload runs:
        assert marker.exists()
        marker.unlink()
        torch.save({"model": _Payload(marker), "checkpoint_version": 2}, last)
    else:
        last.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    capsys.readouterr()
    assert _train("--resume", str(run), "--epochs", "2") != 0
    assert not marker.exists()
    assert "last.pt" in _error_line(capsys)
    assert track.load_runs(run).status.tolist() == ["failed"]


def test_a_numpy_run_cannot_be_resumed(capsys, runs_dir) -> None:
    assert _train("perceptron", "--data", "iris2", "--epochs", "2") == 0
    run = _only_run(runs_dir)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    capsys.readouterr()
    assert _train("--resume", str(run)) == 2
    assert "no checkpoints" in _error_line(capsys)


# --- torchrun: rank 0 alone writes and prints ------------------------------------------------------


def test_a_process_that_is_not_rank_0_writes_no_run_folder(monkeypatch, capsys, runs_dir) -> None:
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it in the second process
    assert _train("mlp", "--data", "iris", "--epochs", "1") == 0
    assert capsys.readouterr().out == ""
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_numpy_model_under_torchrun_is_a_usage_error(monkeypatch, capsys, runs_dir) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _train("perceptron", "--data", "iris2") == 2
    assert "without torchrun" in _error_line(capsys)


# --- every registered model trains, or says in one line why not ---------------------------------------

# A dataset each model is built for. The image models train here on a small random dataset of the
# right shape (the same code path as `--smoke` on mnist / cifar10, which takes minutes for all).
RECIPES = {
    "perceptron": (None, ["--data", "iris2"]),
    "adaline": (None, ["--data", "iris2"]),
    "numpymlp": (None, ["--data", "xor"]),
    "mlp": (None, ["--data", "digits", "--batch-size", "256"]),
    "lenet5": ((1, 28, 28), ["--batch-size", "16"]),
    "alexnetcifar": ((3, 32, 32), ["--batch-size", "16", "--arg", "width=0.125"]),
    "vgg": ((3, 32, 32), ["--batch-size", "16", "--arg", "width=0.125"]),
    "googlenet": ((3, 32, 32), ["--batch-size", "16", "--arg", "width=0.125"]),
    "cifarresnet": ((3, 32, 32), ["--batch-size", "16", "--arg", "depth=8"]),
    "resnet": ((3, 32, 32), ["--batch-size", "16"]),
}


@pytest.mark.parametrize("name", RECIPES)
def test_each_model_trains_from_the_command_line(
    name, temporary_dataset, runs_dir, capsys, one_torch_thread
) -> None:
    shape, argv = RECIPES[name]
    if shape is not None:
        argv = ["--data", temporary_dataset(f"images-{name}", shape), *argv]
    assert _train(name, *argv, "--epochs", "1") == 0, capsys.readouterr().err
    run = _only_run(runs_dir)
    assert track.load_runs(run).status.tolist() == ["finished"]
    assert track.load_scalars(run).epoch.tolist() == [1]
    assert track.load_config(run)["hparams"]  # the model's constructor arguments, recorded


def test_every_other_registered_model_trains_or_is_refused_in_one_line(capsys, runs_dir) -> None:
    """Models added later have no recipe here: on digits they either train, or exit 2 in one line
    (never a traceback, never a run folder)."""
    for name in models.names():
        if name in RECIPES:
            continue
        before = set(runs_dir.iterdir()) if runs_dir.exists() else set()
        code = _train(name, "--data", "digits", "--epochs", "1", "--smoke")
        if code == 2:
            _error_line(capsys)
            assert (set(runs_dir.iterdir()) if runs_dir.exists() else set()) == before, name
        else:
            assert code == 0, (name, capsys.readouterr().err)
        capsys.readouterr()
