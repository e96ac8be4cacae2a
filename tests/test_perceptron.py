"""The Perceptron (Rosenblatt 1958), second pass: Novikoff's bound for every seed and order and
against an independent separator, XOR's endless mistakes epoch by epoch, the rule itself, input
errors that name the fix, the registry and MODEL_INFO, and the facts a fit leaves in a run.

Complements test_core_models_plots_cli.py (convergence on iris2/blobs, XOR, lr invariance).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from scratchlib import data, models, track
from scratchlib.models import ModelInfo
from scratchlib.models.perceptron import Perceptron, novikoff_bound
from scratchlib.train.loop import fit_epochs

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("name", ["iris2", "blobs"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shuffle", [True, False])
def test_converges_within_novikoffs_bound_whatever_the_order(name, seed, shuffle) -> None:
    b = data.load(name, seed=seed)
    p = Perceptron(2, seed=seed)
    h = p.fit(b.x_train, b.y_train, epochs=500, shuffle=shuffle)
    assert h["mistakes"][-1] == 0 and all(m > 0 for m in h["mistakes"][:-1])
    assert p.score(b.x_train, b.y_train) == 1.0
    total = sum(h["mistakes"])
    assert total <= novikoff_bound(b.x_train, b.y_train, p.w, p.b)
    # the theorem holds for any separator, e.g. one found independently (a max-margin SVM)
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=1e4, max_iter=200_000).fit(b.x_train, b.y_train)
    bound = novikoff_bound(b.x_train, b.y_train, svm.coef_[0], svm.intercept_[0])
    assert np.isfinite(bound) and total <= bound


def test_novikoff_bound_is_scale_free_and_infinite_for_a_non_separator() -> None:
    b = data.load("iris2")
    p = Perceptron(2)
    p.fit(b.x_train, b.y_train, epochs=500)
    bound = novikoff_bound(b.x_train, b.y_train, p.w, p.b)
    assert 1 <= bound < np.inf
    assert novikoff_bound(b.x_train, b.y_train, 7.5 * p.w, 7.5 * p.b) == pytest.approx(bound)
    assert novikoff_bound(b.x_train, b.y_train, -p.w, -p.b) == np.inf


@pytest.mark.parametrize("shuffle", [True, False])
def test_never_converges_on_the_four_xor_points(shuffle: bool) -> None:
    p = Perceptron(2, seed=3)
    h = p.fit(XOR_X, XOR_Y, epochs=60, shuffle=shuffle)
    assert len(h["mistakes"]) == 60  # never stopped early: it never converged
    assert all(m > 0 for m in h["mistakes"])
    assert p.score(XOR_X, XOR_Y) <= 0.75  # no line gets all four right
    h = Perceptron(2).fit(XOR_X, XOR_Y, epochs=20, stop_when_converged=False)
    assert min(h["mistakes"]) > 0


def test_the_rule_moves_the_weights_only_on_a_mistake() -> None:
    p = Perceptron(2, lr=0.5)
    assert p.update(np.array([1.0, 2.0]), 1) is True  # w·x + b = 0 counts as a mistake
    np.testing.assert_array_equal(p.w, [0.5, 1.0])
    assert p.b == 0.5
    assert p.update(np.array([1.0, 2.0]), 1) is False  # now on the right side: no change
    np.testing.assert_array_equal(p.w, [0.5, 1.0])
    assert p.update(np.array([2.0, 0.0]), 0) is True  # t = -1: w <- w - lr x, b <- b - lr
    np.testing.assert_array_equal(p.w, [-0.5, 1.0])
    assert p.b == 0.0
    assert p.predict(np.array([[0.0, 1.0], [1.0, 0.0]])).tolist() == [1, 0]


def test_same_seed_same_weights_other_seed_other_order() -> None:
    b = data.load("blobs")
    runs = [Perceptron(2, seed=s) for s in (5, 5, 6)]
    hs = [p.fit(b.x_train, b.y_train, epochs=50) for p in runs]
    np.testing.assert_array_equal(runs[0].w, runs[1].w)
    assert hs[0] == hs[1]
    assert not np.array_equal(runs[0].w, runs[2].w)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros((4, 3)), np.array([0, 1, 0, 1]), r"shape \(N, 2\); got \(4, 3\)"),
        (np.zeros(2), np.array([0]), r"shape \(N, 2\)"),
        (np.zeros((4, 2)), np.array([-1, 1, -1, 1]), "labels must be 0/1"),
        (np.zeros((4, 2)), np.array([0, 1, 2, 1]), "labels must be 0/1"),
    ],
)
def test_bad_input_raises_value_errors_that_name_the_fix(X, y, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Perceptron(2).fit(X, y, epochs=2)


@pytest.mark.parametrize(("n_x", "n_y"), [(4, 3), (3, 5)])
def test_inputs_and_labels_of_different_lengths_are_refused_clearly(n_x: int, n_y: int) -> None:
    """Today: an IndexError mid-epoch (fewer labels) or, after a whole epoch of training on the
    wrong pairs, a NumPy broadcasting error (more labels). It should be refused up front."""
    p = Perceptron(2)
    with pytest.raises(ValueError, match=rf"(?i)length.*\b{n_x}\b.*\b{n_y}\b"):
        p.fit(np.ones((n_x, 2)), np.arange(n_y) % 2, epochs=2)
    assert not p.w.any() and p.b == 0.0  # refused before any update


def test_bad_construction_and_prediction_inputs() -> None:
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        Perceptron(0)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        Perceptron(3).predict(np.zeros((2, 2)))
    assert Perceptron.for_data(data.load("iris")).n_features == 4
    assert Perceptron.for_data(data.load("digits", smoke=True)).n_features == 64


def test_registry_finds_it_and_unknown_names_list_the_valid_ones() -> None:
    assert models.get("perceptron") is Perceptron
    assert models.get("PERCEPTRON") is Perceptron and models.Perceptron is Perceptron
    with pytest.raises(KeyError) as err:
        models.get("perceptrons")
    msg = str(err.value)
    assert "unknown model 'perceptrons'" in msg and all(n in msg for n in models.names())
    with pytest.raises(AttributeError, match="NoSuchNet"):
        models.NoSuchNet  # noqa: B018


def test_model_info_fields() -> None:
    info = Perceptron.MODEL_INFO
    assert isinstance(info, ModelInfo) and models.info("perceptron") is info
    assert (info.name, info.authors, info.year) == ("Perceptron", "Frank Rosenblatt", 1958)
    assert info.paper.startswith("The perceptron: a probabilistic model")
    assert info.module == "01-Foundations" and info.category == "linear classifier"
    assert info.url == "https://doi.org/10.1037/h0042519"
    assert any("XOR" in lim for lim in info.limitations) and info.key_innovations
    assert "(R/gamma)^2" in info.paper_result
    d = json.loads(json.dumps(info.as_dict()))  # goes into config.json and wandb as is
    assert d["year"] == 1958 and isinstance(d["limitations"], list)
    md = info.markdown()
    assert md.startswith("**Perceptron** — Frank Rosenblatt (1958)") and "Cannot:" in md


def test_a_fit_leaves_its_facts_in_the_active_run() -> None:
    b = data.load("iris2")
    run = track.start(Perceptron, experiment="iris2", data=b)
    p = Perceptron.for_data(b)
    h = p.fit(b.x_train, b.y_train, epochs=100, X_val=b.x_test, y_val=b.y_test)
    scalars = track.load_scalars(run.dir)
    assert scalars.mistakes.tolist() == h["mistakes"] and scalars.mistakes.iloc[-1] == 0
    assert {"train_accuracy", "val_accuracy", "weight_norm"} <= set(scalars.columns)
    end = [e for e in track.load_events(run.dir) if e["event"] == "on_train_end"]
    assert end[0]["reason"] == "converged" and end[0]["epochs"] == len(h["mistakes"])
    cfg = track.load_config(run.dir)
    assert cfg["model"] == "perceptron" and cfg["model_info"]["year"] == 1958


def _notebook_bars(monkeypatch: pytest.MonkeyPatch) -> list:
    """Make ``utils.progress`` build tqdm's notebook widget bars, and collect them."""
    tqdm_notebook = pytest.importorskip("tqdm.notebook").tqdm
    from scratchlib import utils

    bars: list = []

    def progress(iterable=None, enabled=True, **kwargs):
        bars.append(tqdm_notebook(iterable, **kwargs))
        return bars[-1]

    monkeypatch.setattr(utils, "progress", progress)
    return bars


def test_an_early_convergence_closes_the_notebook_bar_green_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A perceptron that converges after 2 of 20 epochs finished; its bar must not turn red
    ("danger"), which tqdm's notebook bar does when it closes short of its total."""
    bars = _notebook_bars(monkeypatch)
    b = data.load("blobs")
    h = Perceptron(2).fit(b.x_train, b.y_train, epochs=20, progress=True, run=False)
    capsys.readouterr()  # the widget's text form, printed outside a notebook
    assert len(h["mistakes"]) < 20 and h["mistakes"][-1] == 0
    (bar,) = bars
    assert bar.n == bar.total == len(h["mistakes"])
    assert bar.container.children[1].bar_style == "success"
    assert f"converged after {len(h['mistakes'])} of 20 epochs" in bar.desc


def test_an_error_mid_training_still_turns_the_bar_red(monkeypatch: pytest.MonkeyPatch) -> None:
    bars = _notebook_bars(monkeypatch)

    def epoch(e: int) -> dict:
        if e == 3:
            raise RuntimeError("boom")
        return {"loss": 1.0 / e}

    with pytest.raises(RuntimeError, match="boom"):
        fit_epochs(epoch, epochs=10, run=False, progress=True)
    (bar,) = bars
    assert bar.n == 2 and bar.container.children[1].bar_style == "danger"
