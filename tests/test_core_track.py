"""scratchlib.track: facts written and read back, and wandb that never breaks a run."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from scratchlib import data, track
from scratchlib.models.perceptron import Perceptron
from scratchlib.track import wandb_bridge


def _run(experiment: str = "iris2", **kw) -> track.Run:
    return track.start(
        Perceptron,
        experiment=experiment,
        config={"lr": 1.0, "epochs": 3},
        data=data.load("iris2"),
        **kw,
    )


def test_facts_round_trip_across_runs(runs_dir: Path) -> None:
    ids = []
    for k in range(2):
        run = _run(f"exp{k}")
        for e in (1, 2, 3):
            run.log_epoch(e, loss=1.0 / e, accuracy=0.5 + 0.1 * e)
        run.log_epoch(4, loss=0.2, accuracy=0.95, extra=7.0)  # a new column appears
        run.train_end(epochs=4)
        run.log_eval(accuracy=0.9 + k / 100)
        run.finish()
        ids.append(run.id)
        assert run.dir.name.startswith("run_") and run.dir.name.endswith(f"_perceptron_exp{k}")
        assert run.dir.parent == runs_dir

    events = track.load_events(runs_dir / ids[0])
    assert [e["event"] for e in events] == [
        "on_start",
        *["on_epoch_end"] * 4,
        "on_train_end",
        "on_eval",
        "on_finish",
    ]
    assert all(
        e["schema_version"] == track.SCHEMA_VERSION and e["run_id"] == ids[0] for e in events
    )
    assert events[0]["model_info"]["year"] == 1958 and events[0]["data"]["data_source"] == "real"

    cfg = json.loads((runs_dir / ids[0] / "config.json").read_text())
    assert cfg["config"] == {"lr": 1.0, "epochs": 3} and cfg["model"] == "perceptron"

    runs = track.load_runs()
    assert list(runs.run_id) == ids
    assert runs.status.tolist() == ["finished", "finished"] and runs.epochs.tolist() == [4, 4]
    assert runs.test_accuracy.tolist() == pytest.approx([0.90, 0.91])
    assert runs["config.lr"].tolist() == [1.0, 1.0] and (runs.duration_s >= 0).all()

    scalars = track.load_scalars()
    assert len(scalars) == 8 and set(scalars.run_id) == set(ids)
    one = scalars[scalars.run_id == ids[0]]
    assert one.epoch.tolist() == [1, 2, 3, 4] and one.loss.tolist()[:2] == [1.0, 0.5]
    assert one.extra.isna().tolist() == [True, True, True, False]
    assert track.find_runs(experiment="exp1") == [runs_dir / ids[1]]


def test_readers_skip_a_cut_off_last_line_and_mark_interrupted(runs_dir: Path) -> None:
    run = _run()
    run.log_epoch(1, loss=1.0)
    with open(run.facts_dir / "events.jsonl", "a") as f:
        f.write('{"schema_version": 1, "event": "on_epo')  # the process died mid-write
    events = track.load_events(run.dir)
    assert [e["event"] for e in events] == ["on_start", "on_epoch_end"]
    assert track.load_runs().status.tolist() == ["interrupted"]


def test_atomic_writes_leave_no_temporary_files() -> None:
    run = _run()
    for e in range(1, 6):
        run.log_epoch(e, loss=1.0 / e)
    run.finish()
    leftovers = [p for p in run.dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers


def test_figures_are_saved_and_the_same_name_twice_keeps_both() -> None:
    run = _run()
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    p1, p2 = run.save_figure(fig, "curve"), run.save_figure(fig, "curve")
    assert p1 != p2 and p1.exists() and p2.exists() and p1.read_bytes()[:4] == b"\x89PNG"
    assert sum(e["event"] == "on_figure" for e in track.load_events(run.dir)) == 2


def test_a_second_start_finishes_the_previous_run() -> None:
    a = _run("a")
    b = _run("b")
    assert a.status == "superseded" and track.active() is b


# --- wandb: first class, never required --------------------------------------------------------


def test_wandb_package_absent_warns_and_keeps_local_facts(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with caplog.at_level(logging.WARNING, logger="scratchlib.track"):
        run = _run(wandb="offline")
    assert "not installed" in caplog.text and run.wandb is None
    run.log_epoch(1, loss=0.5)
    run.finish()
    assert (run.facts_dir / "scalars.csv").read_text().splitlines()[1].startswith("1,")


class FakeWandb(types.ModuleType):
    """Records what the bridge sends; can be told to fail at a given call."""

    def __init__(self, fail: str | None = None) -> None:
        super().__init__("wandb")
        self.fail, self.init_kwargs, self.logged, self.summaries, self.artifacts = (
            fail,
            None,
            [],
            [],
            [],
        )
        self.finished = False
        outer = self

        class Settings:
            def __init__(self, **kw) -> None:
                self.kw = kw

        class Artifact:
            def __init__(self, name: str, type: str) -> None:
                self.name, self.type, self.files = name, type, []

            def add_file(self, p: str) -> None:
                self.files.append(p)

            def add_dir(self, p: str) -> None:
                self.files.append(p)

        class FakeRun:
            name = "fake"
            summary = types.SimpleNamespace(
                update=lambda d: outer._call("summary", outer.summaries.append, d)
            )

            def log(self, d, step=None):
                outer._call("log", outer.logged.append, d)

            def log_artifact(self, art, aliases=None):
                outer._call("artifact", outer.artifacts.append, art)

            def finish(self):
                outer.finished = True

        self.Settings, self.Artifact, self._Run = Settings, Artifact, FakeRun
        self.Image = lambda path: ("image", path)

    def _call(self, what, fn, arg):
        if self.fail == what:
            raise RuntimeError(f"wandb {what} exploded")
        fn(arg)

    def init(self, **kw):
        self.init_kwargs = kw
        if self.fail == "init":
            raise RuntimeError("wandb init exploded (no network)")
        return self._Run()


def test_wandb_init_raising_warns_and_the_run_carries_on(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "wandb", FakeWandb(fail="init"))
    with caplog.at_level(logging.WARNING, logger="scratchlib.track"):
        run = _run(wandb="offline")
    assert "init failed" in caplog.text and run.wandb is None
    run.log_epoch(1, loss=0.3)
    run.finish()
    assert track.load_runs().status.tolist() == ["finished"]


def test_wandb_gets_project_tags_scalars_summary_and_artifacts(monkeypatch) -> None:
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = _run(wandb="offline")
    assert (
        fake.init_kwargs["project"] == "ai-from-scratch-perceptron"
        and fake.init_kwargs["mode"] == "offline"
    )
    assert {"perceptron", "01-Foundations", "linear classifier", "iris2", "real"} <= set(
        fake.init_kwargs["tags"]
    )
    run.log_epoch(1, loss=0.25)
    run.log_eval(accuracy=0.97)
    fig, ax = plt.subplots()
    run.save_figure(fig, "f")
    ckpt = run.checkpoints_dir / "best.pt"
    ckpt.write_bytes(b"x")
    run.checkpoint_saved(ckpt, "best")
    run.finish()
    assert {"epoch": 1, "loss": 0.25} in fake.logged
    assert fake.summaries == [{"test/accuracy": 0.97}]
    assert [a.type for a in fake.artifacts] == ["model", "figures"] and fake.finished


def test_wandb_failing_mid_run_warns_once_and_facts_continue(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "wandb", FakeWandb(fail="log"))
    run = _run(wandb="offline")
    with caplog.at_level(logging.WARNING, logger="scratchlib.track"):
        for e in (1, 2, 3):
            run.log_epoch(e, loss=1.0 / e)
    assert caplog.text.count("wandb log failed") == 1
    run.finish()
    assert len(track.load_scalars()) == 3


def test_wandb_offline_mode_writes_locally() -> None:
    import wandb  # noqa: F401 - the tracking group is part of `make test` (install-all): required here

    run = _run(wandb="offline")
    assert run.wandb is not None
    run.log_epoch(1, loss=0.5)
    run.finish()
    offline = list(run.dir.glob("wandb/offline-run-*"))
    assert offline and any(offline[0].rglob("*.wandb"))


def test_online_without_a_key_falls_back_to_offline(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with caplog.at_level(logging.WARNING, logger="scratchlib.track"):
        _run(wandb="online")
    assert fake.init_kwargs["mode"] == "offline" and "no API key" in caplog.text


def test_modes_resolve_from_flag_and_environment(monkeypatch) -> None:
    assert wandb_bridge.resolve_mode(False) is None and wandb_bridge.resolve_mode(None) is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_bridge.resolve_mode(True) == "offline"
    assert wandb_bridge.resolve_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="unknown wandb mode"):
        wandb_bridge.resolve_mode("sometimes")
