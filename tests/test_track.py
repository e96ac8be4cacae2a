"""scratchlib.track, second pass: folder names, the facts files on disk, readers over many runs,
atomicity under a failing write, run statuses, and every way wandb can fail or be asked for.

Complements test_core_track.py (round trip, cut-off line, figures twice, wandb absent / init
raising / log raising / real offline files / online without a key).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import os
import re
import sys
import types
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


def test_two_runs_in_the_same_second_get_distinct_folders(monkeypatch) -> None:
    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(
        run_mod, "_dt", types.SimpleNamespace(datetime=Frozen, timezone=dt.timezone)
    )
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


def test_runs_started_within_one_second_are_read_in_the_order_they_started(monkeypatch) -> None:
    """Smoke-mode runs take well under a second: a sweep's runs share one timestamp."""

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(
        run_mod, "_dt", types.SimpleNamespace(datetime=Frozen, timezone=dt.timezone)
    )
    monkeypatch.setattr(  # folder names share one second; event times still tick
        run_mod, "_now", lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
    )
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


def test_a_write_that_fails_keeps_the_old_file_and_leaves_no_temp_file(monkeypatch) -> None:
    run = track.start("perceptron", experiment="atomic")
    run.log_epoch(1, loss=1.0)
    before = (run.facts_dir / "scalars.csv").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(track_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run.log_epoch(2, loss=0.5)
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


class FakeWandb(types.ModuleType):
    """A stand-in ``wandb`` module that records every call; ``fail`` names a call that raises."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__("wandb")
        self.fail = fail
        self.init_kwargs: dict | None = None
        self.calls: list[tuple[str, object]] = []
        fake = self

        class Settings:
            def __init__(self, **kw) -> None:
                self.kw = kw

        class Artifact:
            def __init__(self, name: str, type: str) -> None:
                self.name, self.type, self.files = name, type, []

            def add_file(self, path: str) -> None:
                self.files.append(path)

            def add_dir(self, path: str) -> None:
                self.files.append(path)

        class Summary:
            def update(self, d) -> None:
                fake._record("summary", dict(d))

        class WRun:
            name = "wandb-run"
            summary = Summary()

            def log(self, d, step=None) -> None:
                fake._record("log", (dict(d), step))

            def log_artifact(self, art, aliases=None) -> None:
                fake._record("artifact", (art.type, list(aliases or []), list(art.files)))

            def finish(self) -> None:
                fake._record("finish", None)

        self.Settings, self.Artifact, self._WRun = Settings, Artifact, WRun
        self.Image = lambda path: ("Image", path)

    def _record(self, what: str, payload: object) -> None:
        if self.fail == what:
            raise RuntimeError(f"wandb {what} blew up")
        self.calls.append((what, payload))

    def init(self, **kw):
        self.init_kwargs = kw
        if self.fail == "init":
            raise ConnectionError("wandb init: network unreachable")
        return self._WRun()

    def of(self, what: str) -> list:
        return [p for w, p in self.calls if w == what]


@pytest.fixture
def fake_wandb(monkeypatch):
    def install(fail: str | None = None) -> FakeWandb:
        fake = FakeWandb(fail)
        monkeypatch.setitem(sys.modules, "wandb", fake)
        return fake

    return install


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
