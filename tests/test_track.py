"""scratchlib.track: run folders (unique when many start at once), the facts files on disk
(whole lines only, appended, strict JSON), config updates, resuming a run, readers over many runs
(malformed folders skipped with one warning), run statuses, and every way wandb can fail."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import json
import logging
import os
import re
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from scratchlib import data, track
from scratchlib import utils as track_io
from scratchlib.track import run as run_mod

LOGGER = "scratchlib.track"


def _csv(run: track.Run) -> list[dict[str, str]]:
    with open(run.facts_dir / "scalars.csv", newline="") as f:
        return list(csv.DictReader(f))


def _events(run: track.Run) -> list[dict]:
    return [json.loads(line) for line in (run.facts_dir / "events.jsonl").read_text().splitlines()]


# --- folders and facts ---------------------------------------------------------------------------


def test_run_folder_is_named_run_timestamp_model_experiment(runs_dir: Path) -> None:
    run = track.start("perceptron", experiment="Iris 2 / lr=0.1")
    assert run.dir.parent == runs_dir
    assert re.fullmatch(r"run_\d{8}-\d{6}_perceptron_iris-2-lr-0\.1", run.dir.name), run.dir.name
    stamp = dt.datetime.strptime(run.dir.name.split("_")[1], "%Y%m%d-%H%M%S")
    assert abs((dt.datetime.now() - stamp).total_seconds()) < 60
    assert {p.name for p in run.dir.iterdir()} == {"config.json", "facts", "figures", "checkpoints"}


def test_two_runs_in_the_same_second_get_distinct_folders(frozen_clock: str) -> None:
    a = track.start("perceptron", experiment="same")
    b = track.start("perceptron", experiment="same")
    assert a.dir.name == "run_20300102-030405_perceptron_same"
    assert b.dir.name == "run_20300102-030405_perceptron_same-2"
    assert track.load_config(b.dir)["run_id"] == b.id != a.id


def test_scalars_csv_grows_columns_and_keeps_one_row_per_epoch() -> None:
    run = track.start("perceptron", experiment="columns")
    run.log_epoch(1, loss=1.0)
    assert (run.facts_dir / "scalars.csv").read_text().splitlines() == ["epoch,loss", "1,1.0"]
    run.log_epoch(
        2, loss=0.5, accuracy=0.75
    )  # a new scalar: the header grows, row 1 is blank there
    run.log_epoch(3, accuracy=0.8)  # one goes missing: blank, not shifted
    rows = _csv(run)
    assert list(rows[0]) == ["epoch", "loss", "accuracy"]
    assert rows == [
        {"epoch": "1", "loss": "1.0", "accuracy": ""},
        {"epoch": "2", "loss": "0.5", "accuracy": "0.75"},
        {"epoch": "3", "loss": "", "accuracy": "0.8"},
    ]
    df = run.scalars
    assert df.epoch.tolist() == [1, 2, 3] and df.loss.isna().tolist() == [False, False, True]


def test_numpy_and_torch_scalars_are_written_as_plain_numbers() -> None:
    run = track.start("perceptron", experiment="types", config={"lr": np.float32(0.5)})
    run.log_epoch(
        np.int64(1), loss=torch.tensor(0.25), acc=np.float32(0.5), n=np.int64(3), tag="warm"
    )
    run.log_eval(accuracy=torch.tensor(0.875))
    assert _csv(run) == [{"epoch": "1", "loss": "0.25", "acc": "0.5", "n": "3", "tag": "warm"}]
    last_epoch = [e for e in _events(run) if e["event"] == "on_epoch_end"][-1]
    assert last_epoch["loss"] == 0.25 and last_epoch["n"] == 3 and last_epoch["epoch"] == 1
    assert _events(run)[-1]["accuracy"] == 0.875
    assert track.load_config(run.dir)["config"] == {"lr": 0.5}


def test_every_event_line_is_versioned_and_in_lifecycle_order() -> None:
    run = track.start(
        "perceptron", experiment="life", config={"epochs": 2}, data=data.load("iris2")
    )
    run.log_epoch(1, loss=0.9)
    run.log_epoch(2, loss=0.4)
    run.train_end(epochs=2, reason="epochs")
    run.log_eval(split="val", accuracy=0.5)
    run.log_eval(accuracy=1.0)
    run.finish(note="done")
    run.finish()  # a second finish is a no-op: one on_finish only
    events = _events(run)
    assert [e["event"] for e in events] == [
        "on_start",
        "on_epoch_end",
        "on_epoch_end",
        "on_train_end",
        "on_eval",
        "on_eval",
        "on_finish",
    ]
    for e in events:
        assert e["schema_version"] == track.SCHEMA_VERSION == 1 and e["run_id"] == run.id
        assert dt.datetime.fromisoformat(e["time"]).tzinfo is not None
    assert events[0]["data"]["data_source"] == "real" and events[0]["config"] == {"epochs": 2}
    assert events[-1]["summary"] == {"val_accuracy": 0.5, "test_accuracy": 1.0, "note": "done"}


def test_readers_compare_many_runs_in_pandas(runs_dir: Path, capsys) -> None:
    mnist = data.load("mnist", smoke=True)  # the announced fallback: its source must show up
    capsys.readouterr()
    made = []
    for k, (model, bundle) in enumerate(
        [("perceptron", data.load("iris2")), ("adaline", mnist), ("perceptron", mnist)]
    ):
        run = track.start(model, experiment=f"cmp{k}", config={"lr": 0.1 * (k + 1)}, data=bundle)
        for e in range(1, k + 2):
            run.log_epoch(e, loss=1.0 / e)
        run.log_eval(accuracy=0.5 + k / 10)
        if k < 2:
            run.finish()
        made.append(run)  # the last one is left running: it reads as interrupted

    runs = track.load_runs().set_index("run_id").loc[[r.id for r in made]]
    assert runs.model.tolist() == ["perceptron", "adaline", "perceptron"]
    assert runs.data_source.tolist() == ["real", mnist.source, mnist.source]
    assert runs.status.tolist() == ["finished", "finished", "interrupted"]
    assert runs.epochs.tolist() == [1, 2, 3]
    assert runs.test_accuracy.tolist() == pytest.approx([0.5, 0.6, 0.7])
    assert runs["config.lr"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert runs.duration_s.isna().tolist() == [False, False, True]

    scalars = track.load_scalars()
    assert scalars.groupby("run_id").size().to_dict() == {
        made[0].id: 1,
        made[1].id: 2,
        made[2].id: 3,
    }
    assert set(scalars.columns) >= {"run_id", "model", "experiment", "epoch", "loss"}

    # the same readers take one run folder, a list of folders, or a filter
    assert track.load_runs(made[1].dir).run_id.tolist() == [made[1].id]
    assert len(track.load_scalars([made[0].dir, made[2].dir])) == 4
    assert sorted(track.find_runs(model="Perceptron")) == [made[0].dir, made[2].dir]
    assert [e["event"] for e in track.load_events(made[2].dir)][-1] == "on_eval"


def test_find_runs_accepts_the_experiment_name_the_run_was_started_with() -> None:
    run = track.start("perceptron", experiment="My Experiment")
    run.finish()
    assert track.find_runs(experiment="My Experiment") == [run.dir]


def test_runs_started_within_one_second_are_read_in_the_order_they_started(
    frozen_clock: str,
) -> None:
    """Smoke-mode runs take well under a second: a sweep's runs share one timestamp."""
    made = []
    for lr in ("lr-1.0", "lr-0.1", "lr-0.01"):
        run = track.start("perceptron", experiment=lr)
        run.finish()
        made.append(run.id)
    assert track.load_runs().run_id.tolist() == made
    assert [p.name for p in track.find_runs()] == made


def test_readers_on_an_empty_or_missing_runs_folder(tmp_path: Path) -> None:
    assert track.find_runs(tmp_path / "nothing") == []
    assert track.load_runs(tmp_path / "nothing").empty
    assert track.load_scalars(tmp_path / "nothing").empty
    assert track.load_events(tmp_path / "nothing") == []


def test_a_cut_off_last_line_is_skipped_and_the_rest_is_read() -> None:
    run = track.start("perceptron", experiment="cut")
    run.log_epoch(1, loss=1.0)
    run.log_epoch(2, loss=0.5)
    path = run.facts_dir / "events.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 25])  # the last event lost its tail mid-write
    events = track.load_events(run.dir)
    assert [e["event"] for e in events] == ["on_start", "on_epoch_end"]
    assert events[-1]["epoch"] == 1
    assert track.load_runs(run.dir).epochs.tolist() == [1]


def test_a_rewrite_that_fails_keeps_the_old_file_and_leaves_no_temp_file(monkeypatch) -> None:
    run = track.start("perceptron", experiment="atomic")
    run.log_epoch(1, loss=1.0)
    before = (run.facts_dir / "scalars.csv").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(track_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run.log_epoch(2, loss=0.5, accuracy=0.5)  # a new column: the file is rewritten
    monkeypatch.undo()
    assert (run.facts_dir / "scalars.csv").read_bytes() == before
    assert not [p for p in run.dir.rglob("*") if p.suffix == ".tmp" or p.name.startswith(".")]


def test_atomic_json_handles_numpy_paths_and_tuples(tmp_path: Path) -> None:
    path = track_io.atomic_write_json(
        tmp_path / "x.json",
        {
            "a": np.arange(3),
            "b": np.float64(1.5),
            "p": Path("/x"),
            "t": (1, 2),
            "d": torch.device("cpu"),
        },
    )
    assert json.loads(path.read_text()) == {
        "a": [0, 1, 2],
        "b": 1.5,
        "p": "/x",
        "t": [1, 2],
        "d": "cpu",
    }
    assert os.listdir(tmp_path) == ["x.json"]


def test_figures_saved_twice_keep_both_and_are_recorded() -> None:
    run = track.start("perceptron", experiment="figs")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = [run.save_figure(fig, "Loss Curve") for _ in range(3)]
    plt.close(fig)
    assert [p.name for p in paths] == ["loss-curve.png", "loss-curve-2.png", "loss-curve-3.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    recorded = [e["path"] for e in _events(run) if e["event"] == "on_figure"]
    assert recorded == [f"figures/{p.name}" for p in paths]


def test_run_statuses_failed_superseded_and_active() -> None:
    with pytest.raises(RuntimeError), track.start("perceptron", experiment="boom") as failed:
        assert track.active() is failed
        raise RuntimeError("the cell crashed")
    assert failed.status == "failed" and track.active() is None
    first = track.start("perceptron", experiment="one")
    second = track.start("perceptron", experiment="two")
    assert first.status == "superseded" and track.active() is second
    second.finish()
    statuses = track.load_runs().set_index("experiment").status.to_dict()
    assert statuses == {"boom": "failed", "one": "superseded", "two": "finished"}


# --- wandb: first class, never required --------------------------------------------------------


def _full_run(**kw) -> track.Run:
    """A run that does everything wandb mirrors: epochs, eval, a figure, a checkpoint, finish."""
    run = track.start("perceptron", experiment="wb", config={"lr": 0.1}, **kw)
    run.log_epoch(1, loss=0.5)
    run.log_epoch(2, loss=0.25)
    run.log_eval(accuracy=0.9)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    run.save_figure(fig, "curve")
    plt.close(fig)
    ckpt = run.checkpoints_dir / "last.pt"
    ckpt.write_bytes(b"weights")
    run.checkpoint_saved(ckpt, "last")
    run.finish()
    return run


def _facts_complete(run: track.Run) -> None:
    assert [r["loss"] for r in _csv(run)] == ["0.5", "0.25"]
    names = [e["event"] for e in track.load_events(run.dir)]
    assert names.count("on_epoch_end") == 2 and names[-1] == "on_finish"
    assert (run.figures_dir / "curve.png").exists()
    assert track.load_runs(run.dir).status.tolist() == ["finished"]


def test_absent_package_warns_once_and_every_fact_is_still_written(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = _full_run(wandb=True, data=data.load("iris2"))
    warnings = [r for r in caplog.records if r.name == LOGGER]
    assert len(warnings) == 1 and "not installed" in warnings[0].getMessage()
    assert "install" in warnings[0].getMessage()  # says how to turn it on
    assert run.wandb is None
    _facts_complete(run)


def test_init_raising_warns_and_the_run_carries_on(fake_wandb, caplog) -> None:
    fake = fake_wandb(fail="init")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = _full_run(wandb="offline")
    assert "init failed" in caplog.text and "network unreachable" in caplog.text
    assert run.wandb is None and fake.calls == []
    wb = [e for e in track.load_events(run.dir) if e["event"] == "on_wandb"]
    assert wb == [{**wb[0], "mode": "offline", "active": False}]
    _facts_complete(run)


def test_wandb_receives_project_tags_config_scalars_summary_figures_artifacts(fake_wandb) -> None:
    fake = fake_wandb()
    bundle = data.load("mnist", smoke=True)  # a fallback source must be a tag too
    run = _full_run(wandb="offline", data=bundle)
    kw = fake.init_kwargs
    assert kw["project"] == "ai-from-scratch-perceptron" and kw["mode"] == "offline"
    assert kw["name"] == run.id and Path(kw["dir"]) == run.dir  # wandb's files live in the run
    assert {"perceptron", "01-Foundations", "linear classifier", "wb", bundle.source} <= set(
        kw["tags"]
    )
    assert kw["config"]["lr"] == 0.1 and kw["config"]["data"]["data_source"] == bundle.source
    assert kw["config"]["model_info"]["year"] == 1958
    assert fake.of("log")[:2] == [({"epoch": 1, "loss": 0.5}, 1), ({"epoch": 2, "loss": 0.25}, 2)]
    assert fake.of("log")[2][0] == {"figures/curve": ("Image", str(run.figures_dir / "curve.png"))}
    assert fake.of("summary") == [{"test/accuracy": 0.9}]
    model_art, fig_art = fake.of("artifact")
    assert model_art == ("model", ["last"], [str(run.checkpoints_dir / "last.pt")])
    assert fig_art == ("figures", [], [str(run.figures_dir)])
    assert fake.of("finish") == [None] and [w for w, _ in fake.calls][-1] == "finish"


@pytest.mark.parametrize("fail", ["log", "summary", "artifact", "finish"])
def test_a_wandb_call_raising_mid_run_warns_once_and_facts_carry_on(
    fake_wandb, caplog, fail: str
) -> None:
    fake_wandb(fail=fail)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = _full_run(wandb="offline")
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and f"wandb {fail} failed" in failures[0]
    _facts_complete(run)


def test_wandb_true_takes_the_mode_from_the_environment(fake_wandb, monkeypatch) -> None:
    fake = fake_wandb()
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # wandb's old name for offline
    track.start("perceptron", experiment="env", wandb=True)
    assert fake.init_kwargs["mode"] == "offline"
    fake = fake_wandb()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = track.start("perceptron", experiment="env2", wandb=True)
    assert fake.init_kwargs["mode"] == "disabled"
    last = track.load_events(run.dir)[-1]
    assert (last["event"], last["mode"]) == ("on_wandb", "disabled")
    fake = fake_wandb()
    track.start("perceptron", experiment="off", wandb=False)
    assert fake.init_kwargs is None  # off by default: wandb is not even called


def test_online_without_a_key_falls_back_to_offline_with_a_warning(
    fake_wandb, monkeypatch, tmp_path, caplog
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    fake = fake_wandb()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = track.start("perceptron", experiment="nokey", wandb="online")
    assert fake.init_kwargs["mode"] == "offline" and run.wandb.mode == "offline"
    assert "no API key" in caplog.text and "wandb sync" in caplog.text
    on_wandb = [e for e in track.load_events(run.dir) if e["event"] == "on_wandb"]
    assert on_wandb[0]["mode"] == "offline"


@pytest.mark.parametrize("how", ["env", "netrc"])
def test_online_with_a_key_stays_online(fake_wandb, monkeypatch, tmp_path, caplog, how) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    if how == "env":
        monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    else:
        netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
        netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fake = fake_wandb()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        track.start("perceptron", experiment="key", wandb="online")
    assert fake.init_kwargs["mode"] == "online" and "no API key" not in caplog.text


def test_a_bad_mode_raises_before_any_folder_is_made(runs_dir: Path) -> None:
    for bad in ("sometimes", 3):
        with pytest.raises(
            ValueError, match="unknown wandb mode.*'online', 'offline' or 'disabled'"
        ):
            track.start("perceptron", experiment="bad", wandb=bad)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # no stray 'interrupted' run


def test_wandb_gets_the_config_sections_added_later(fake_wandb) -> None:
    fake = fake_wandb()
    run = track.start("perceptron", experiment="cfg", wandb="offline")
    run.update_config(trainer={"lr": 0.1, "batch_size": 32})
    assert fake.of("config") == [{"trainer": {"lr": 0.1, "batch_size": 32}}]


def test_real_wandb_offline_mode_writes_its_files_inside_the_run() -> None:
    import wandb  # noqa: F401 - the tracking group is part of `make test` (install-all): required here

    run = track.start("perceptron", experiment="offline", wandb="offline")
    assert run.wandb is not None
    run.log_epoch(1, loss=0.5)
    run.finish()
    offline = list(run.dir.glob("wandb/offline-run-*"))
    assert offline and any(offline[0].rglob("*.wandb"))


def test_modes_resolve_from_flag_and_environment(monkeypatch) -> None:
    from scratchlib.track import wandb_bridge

    assert wandb_bridge.resolve_mode(False) is None and wandb_bridge.resolve_mode(None) is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_bridge.resolve_mode(True) == "offline"
    assert wandb_bridge.resolve_mode("disabled") == "disabled"


# --- a round trip through every reader -----------------------------------------------------------


def test_facts_round_trip_across_runs(runs_dir: Path) -> None:
    from scratchlib.models.perceptron import Perceptron

    ids = []
    for k in range(2):
        run = track.start(
            Perceptron,
            experiment=f"exp{k}",
            config={"lr": 1.0, "epochs": 3},
            data=data.load("iris2"),
        )
        for e in (1, 2, 3):
            run.log_epoch(e, loss=1.0 / e, accuracy=0.5 + 0.1 * e)
        run.log_epoch(4, loss=0.2, accuracy=0.95, extra=7.0)  # a new column appears
        run.train_end(epochs=4)
        run.log_eval(accuracy=0.9 + k / 100)
        run.finish()
        ids.append(run.id)
        assert run.dir.name.endswith(f"_perceptron_exp{k}") and run.dir.parent == runs_dir

    events = track.load_events(runs_dir / ids[0])
    assert [e["event"] for e in events] == [
        "on_start",
        *["on_epoch_end"] * 4,
        "on_train_end",
        "on_eval",
        "on_finish",
    ]
    assert events[0]["model_info"]["year"] == 1958 and events[0]["data"]["data_source"] == "real"
    runs = track.load_runs()
    assert list(runs.run_id) == ids and runs.epochs.tolist() == [4, 4]
    assert runs.test_accuracy.tolist() == pytest.approx([0.90, 0.91])
    one = track.load_scalars().query("run_id == @ids[0]")
    assert one.epoch.tolist() == [1, 2, 3, 4] and one.loss.tolist()[:2] == [1.0, 0.5]
    assert one.extra.isna().tolist() == [True, True, True, False]
    assert track.find_runs(experiment="exp1") == [runs_dir / ids[1]]


# --- run folders: unique however many start at once -----------------------------------------------


class Crowd:
    """A model with no MODEL_INFO: starting its runs needs no model registry."""


def _start_together(barrier) -> None:  # in a forked child, which inherits the frozen clock
    barrier.wait(timeout=60)
    track.start(Crowd(), experiment="crowd")


def test_twenty_processes_started_together_get_twenty_folders(frozen_clock, runs_dir) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(20)
    procs = [ctx.Process(target=_start_together, args=(barrier,)) for _ in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 20
    folders = sorted(runs_dir.iterdir())
    assert len(folders) == 20
    assert all(f.name.startswith(f"run_{frozen_clock}_crowd_crowd") for f in folders)
    for f in folders:  # each folder is one run's: one start, its own id everywhere
        events = track.load_events(f)
        assert [e["event"] for e in events] == ["on_start"]
        assert events[0]["run_id"] == track.load_config(f)["run_id"] == f.name


def test_a_runs_folder_that_is_a_file_is_refused_clearly(tmp_path, monkeypatch) -> None:
    afile = tmp_path / "runs.txt"
    afile.write_text("not a folder")
    for read in (track.find_runs, track.load_runs, track.load_scalars):
        with pytest.raises(NotADirectoryError, match="is a file, not a runs folder"):
            read(afile)
    monkeypatch.setenv("SCRATCHLIB_RUNS", str(afile))
    with pytest.raises(NotADirectoryError, match="SCRATCHLIB_RUNS"):
        track.start("perceptron")


# --- events.jsonl: whole lines only, strict JSON ----------------------------------------------------


def _strict(line: bytes) -> dict:
    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def test_a_torn_last_event_line_is_cut_before_the_next_append() -> None:
    run = track.start("perceptron", experiment="torn")
    run.log_epoch(1, loss=1.0)
    path = run.facts_dir / "events.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"schema_version": 1, "event": "on_epo')  # the process died mid-append
    run.log_epoch(2, loss=0.5)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends in a newline
    events = [_strict(line) for line in lines[:-1]]  # and every line is one whole event
    assert [(e["event"], e.get("epoch")) for e in events] == [
        ("on_start", None),
        ("on_epoch_end", 1),
        ("on_epoch_end", 2),
    ]


def test_an_append_that_fails_part_way_leaves_no_partial_line(monkeypatch) -> None:
    run = track.start("perceptron", experiment="full-disk")
    run.log_epoch(1, loss=1.0)
    path = run.facts_dir / "events.jsonl"
    before, ino = path.read_bytes(), path.stat().st_ino
    real_write = os.write

    def disk_fills(fd: int, data) -> int:  # half the line reaches the disk, then it is full
        if os.fstat(fd).st_ino != ino:
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills)
    with pytest.raises(OSError, match="No space left"):
        run.event("on_note", text="this one is lost, and says so")
    monkeypatch.undo()
    assert path.read_bytes() == before
    run.log_epoch(2, loss=0.5)
    events = [_strict(line) for line in path.read_bytes().splitlines()]
    assert [e.get("epoch") for e in events] == [None, 1, 2]


def test_nan_and_infinity_are_written_as_null() -> None:
    run = track.start("perceptron", experiment="nan", config={"bad": float("nan")})
    run.log_epoch(1, loss=float("nan"), grad=float("inf"), low=np.float32("-inf"))
    run.log_eval(accuracy=torch.tensor(float("nan")))
    run.finish(best=float("inf"))
    events = [_strict(line) for line in (run.facts_dir / "events.jsonl").read_bytes().splitlines()]
    epoch = next(e for e in events if e["event"] == "on_epoch_end")
    assert epoch["loss"] is None and epoch["grad"] is None and epoch["low"] is None
    assert events[-1]["summary"] == {"test_accuracy": None, "best": None}
    assert _strict((run.dir / "config.json").read_bytes())["config"] == {"bad": None}


# --- scalars.csv and steps.csv: appended, never rewritten while the columns stay ------------------


def test_scalars_csv_is_appended_and_rewritten_only_when_a_column_appears() -> None:
    run = track.start("perceptron", experiment="append")
    path = run.facts_dir / "scalars.csv"
    run.log_epoch(1, train_loss=1.0)
    first = path.stat().st_ino
    run.log_epoch(2, train_loss=0.5)
    assert path.stat().st_ino == first  # the same file, one row longer: appended
    run.log_epoch(3, train_loss=0.25, val_loss=0.5)  # the first validation brings new columns
    rewritten = path.stat().st_ino
    assert rewritten != first  # rewritten once (atomically: a new file renamed over the old)
    run.log_epoch(4, train_loss=0.2, val_loss=0.4)
    assert path.stat().st_ino == rewritten
    assert path.read_text().splitlines() == [
        "epoch,train_loss,val_loss",
        "1,1.0,",
        "2,0.5,",
        "3,0.25,0.5",
        "4,0.2,0.4",
    ]
    run.finish()
    assert not [p for p in run.dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_a_torn_csv_row_is_cut_before_the_next_row_and_skipped_by_readers() -> None:
    run = track.start("perceptron", experiment="torn-csv")
    run.log_epoch(1, loss=1.0)
    path = run.facts_dir / "scalars.csv"
    with open(path, "ab") as f:
        f.write(b"2,0.4")  # the process died mid-row (the whole row was 2,0.45)
    assert track.load_scalars(run.dir).epoch.tolist() == [1]
    resumed = track.resume(run.dir)  # a new process carries on
    resumed.log_epoch(2, loss=0.45)
    assert path.read_text().splitlines() == ["epoch,loss", "1,1.0", "2,0.45"]


def test_steps_are_appended_to_their_own_facts_file() -> None:
    run = track.start("perceptron", experiment="steps")
    path = run.facts_dir / "steps.csv"
    run.log_steps([{"step": 1, "loss": 2.0}, {"step": 2, "loss": torch.tensor(1.5)}])
    first = path.stat().st_ino
    run.log_steps([{"step": 3, "loss": np.float32(1.25)}])
    run.log_steps([])  # nothing to write: nothing changes
    assert path.stat().st_ino == first
    run.log_steps([{"step": 4, "loss": 1.0, "lr": 0.1}])  # a new column: rewritten once
    assert path.read_text().splitlines() == [
        "step,loss,lr",
        "1,2.0,",
        "2,1.5,",
        "3,1.25,",
        "4,1.0,0.1",
    ]
    steps = track.load_steps()
    assert steps.step.tolist() == [1, 2, 3, 4] and set(steps.run_id) == {run.id}
    assert run.steps.loss.tolist() == [2.0, 1.5, 1.25, 1.0]
    assert track.load_scalars(run.dir).empty  # steps never land among the epochs
    with pytest.raises(ValueError, match="'step' key"):
        run.log_steps([{"loss": 1.0}])


# --- config.json: sections added after the start ----------------------------------------------------


def test_update_config_merges_sections_and_readers_show_them() -> None:
    run = track.start("perceptron", experiment="cfg", config={"lr": 0.1, "epochs": 3})
    run.update_config(trainer={"lr": 0.1, "batch_size": 32}, config={"epochs": 5})
    run.update_config(trainer={"grad_clip": 1.0})
    cfg = track.load_config(run.dir)
    assert cfg["trainer"] == {"lr": 0.1, "batch_size": 32, "grad_clip": 1.0}
    assert cfg["config"] == {"lr": 0.1, "epochs": 5} == run.config
    assert cfg["run_id"] == run.id and cfg["model_info"]["year"] == 1958  # the rest is kept
    with pytest.raises(ValueError, match="identify the run"):
        run.update_config(run_id="another")
    row = track.load_runs(run.dir).iloc[0]
    assert row["trainer.batch_size"] == 32 and row["config.epochs"] == 5
    assert not [p for p in run.dir.rglob("*") if p.suffix == ".tmp"]


def test_a_model_instance_records_its_hyper_parameters() -> None:
    from scratchlib.models.perceptron import Perceptron

    run = track.start(Perceptron(3, lr=0.25), experiment="hp")
    assert track.load_config(run.dir)["hparams"] == {"n_features": 3, "lr": 0.25, "seed": 0}


# --- resume: the same folder carries on ------------------------------------------------------------


def test_resume_reopens_the_run_cleans_temporaries_and_becomes_active() -> None:
    run = track.start("perceptron", experiment="again", config={"epochs": 2})
    run.log_epoch(1, loss=1.0)
    ckpt = run.checkpoints_dir / "last.pt"
    ckpt.write_bytes(b"weights")
    stale = [run.facts_dir / ".scalars.csv.k2j3.tmp", run.checkpoints_dir / ".last.pt.x9.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")  # a write the crash interrupted
    run_mod.set_active(None)  # ... the process died here; a new one starts
    other = track.start("perceptron", experiment="other")

    again = track.resume(ckpt)
    assert (again.dir, again.id, again.status) == (run.dir, run.id, "running")
    assert track.active() is again and other.status == "superseded"
    assert not any(p.exists() for p in stale) and ckpt.read_bytes() == b"weights"
    last = track.load_events(run.dir)[-1]
    assert last["event"] == "on_resume" and last["checkpoint"] == "checkpoints/last.pt"
    assert sorted(last["removed_temporaries"]) == [
        "checkpoints/.last.pt.x9.tmp",
        "facts/.scalars.csv.k2j3.tmp",
    ]
    assert track.load_runs(run.dir).status.tolist() == ["interrupted"]  # running, not done

    again.log_epoch(2, loss=0.5)
    again.finish()
    runs = track.load_runs(run.dir)
    assert runs.status.tolist() == ["finished"] and runs.epochs.tolist() == [2]
    assert track.load_scalars(run.dir).epoch.tolist() == [1, 2]
    assert track.resume(run.dir).id == run.id  # the folder itself works too


def test_a_failed_run_that_is_resumed_is_no_longer_read_as_failed() -> None:
    run = track.start("perceptron", experiment="retry")
    run.finish("failed", error="the loss became NaN")
    again = track.resume(run.dir)
    assert track.load_runs(run.dir).status.tolist() == ["interrupted"]
    again.finish()
    assert track.load_runs(run.dir).status.tolist() == ["finished"]


def test_resume_of_something_that_is_not_a_run_names_the_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume.*run folder"):
        track.resume(tmp_path / "missing")
    stray = tmp_path / "last.pt"
    stray.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not inside a run folder"):
        track.resume(stray)
    run = track.start("perceptron", experiment="broken")
    (run.dir / "config.json").write_bytes(b'{"run_id": "run_')
    with pytest.raises(track.MalformedRunError, match="config.json"):
        track.resume(run.dir)


# --- readers skip a malformed run folder, with one warning naming it ------------------------------


def _damaged_runs() -> dict[str, Path]:
    made = {}
    for name in ("good", "truncated", "latin1", "garbled"):
        run = track.start("perceptron", experiment=name)
        run.log_epoch(1, loss=1.0)
        run.log_epoch(2, loss=0.5)
        run.finish()
        made[name] = run.dir
    cfg = made["truncated"] / "config.json"
    cfg.write_bytes(cfg.read_bytes()[:40])  # the disk filled while it was written (no atomic write)
    cfg = made["latin1"] / "config.json"
    cfg.write_bytes(cfg.read_bytes().replace(b'"latin1"', b'"latin1 \xe9"'))
    events = made["garbled"] / "facts" / "events.jsonl"
    lines = events.read_bytes().split(b"\n")
    lines[1] = lines[1][:20] + b"\xff\xfe" + lines[1][60:]  # a damaged line in the middle
    events.write_bytes(b"\n".join(lines))
    return made


def _warned(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, track.MalformedRunWarning)]


def test_readers_skip_each_malformed_run_folder_with_one_warning_naming_it() -> None:
    made = _damaged_runs()
    with pytest.warns(track.MalformedRunWarning) as record:
        runs = track.load_runs()
    assert runs.experiment.tolist() == ["good"]
    messages = _warned(record)
    assert len(messages) == 3
    for name in ("truncated", "latin1", "garbled"):
        assert sum(made[name].name in m for m in messages) == 1

    with pytest.warns(track.MalformedRunWarning) as record:
        scalars = track.load_scalars()
    assert sorted(set(scalars.experiment)) == ["garbled", "good"]  # its scalars are whole
    assert len(_warned(record)) == 2

    with pytest.warns(track.MalformedRunWarning):
        assert made["truncated"] not in track.find_runs()
    with pytest.raises(track.MalformedRunError, match="line 2"):
        track.load_events(made["garbled"])  # one run asked for by name: the error says where


def test_a_scalars_file_that_is_not_utf8_is_skipped_with_a_warning() -> None:
    good = track.start("perceptron", experiment="good")
    good.log_epoch(1, loss=1.0)
    bad = track.start("perceptron", experiment="bad")
    bad.log_epoch(1, loss=1.0)
    with open(bad.facts_dir / "scalars.csv", "ab") as f:
        f.write(b"2,\xff\xfe\n")
    with pytest.warns(track.MalformedRunWarning, match=bad.dir.name):
        scalars = track.load_scalars()
    assert scalars.experiment.tolist() == ["good"]
