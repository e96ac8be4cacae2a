"""The Perceptron, the model registry, the plots and the command line."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch

from scratchlib import cli, data, models, plots, track
from scratchlib.models.perceptron import Perceptron, novikoff_bound


@pytest.mark.parametrize("name", ["iris2", "blobs"])
def test_perceptron_converges_within_novikoffs_bound(name: str) -> None:
    b = data.load(name)
    p = Perceptron(2, seed=1)
    h = p.fit(b.x_train, b.y_train, epochs=200)
    assert h["mistakes"][-1] == 0 and p.score(b.x_train, b.y_train) == 1.0
    assert sum(h["mistakes"]) <= novikoff_bound(b.x_train, b.y_train, p.w, p.b)


def test_perceptron_never_converges_on_xor() -> None:
    X, y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([0, 1, 1, 0])
    p = Perceptron(2)
    h = p.fit(X, y, epochs=100)
    assert len(h["mistakes"]) == 100 and min(h["mistakes"]) > 0
    assert p.score(X, y) <= 0.75
    assert novikoff_bound(X, y, p.w, p.b) == float("inf")


def test_perceptron_learning_rate_does_not_change_mistakes() -> None:
    b = data.load("iris2")
    h1 = Perceptron(2, lr=1.0).fit(b.x_train, b.y_train, epochs=20)
    h2 = Perceptron(2, lr=0.001).fit(b.x_train, b.y_train, epochs=20)
    assert h1["mistakes"] == h2["mistakes"]  # from w=0 the rule is scale-free


def test_perceptron_bad_input_names_the_fix() -> None:
    p = Perceptron(2)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        p.predict(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="labels must be 0/1"):
        p.fit(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="n_features"):
        Perceptron(0)


def test_registry_and_model_info() -> None:
    assert models.get("Perceptron") is Perceptron and "perceptron" in models.names()
    with pytest.raises(KeyError, match="valid names: .*perceptron"):
        models.get("transformer-xxl")
    info = models.info("perceptron")
    assert info.year == 1958 and info.module == "01-Foundations" and info.limitations
    assert "Rosenblatt" in info.markdown()


def test_every_registered_model_has_complete_model_info() -> None:
    for name in models.names():
        info = models.info(name)
        assert info.paper and info.authors and 1940 < info.year < 2030 and info.module[:2].isdigit()


# --- plots -----------------------------------------------------------------------------------------


@pytest.fixture
def run():
    return track.start(Perceptron, experiment="plots")


def _pngs(run) -> list[str]:
    return sorted(p.name for p in run.figures_dir.glob("*.png"))


def test_each_plot_writes_a_figure_into_the_active_run(run) -> None:
    b = data.load("moons", smoke=True)
    hist = {
        "epoch": [1, 2, 3],
        "train_loss": [1.0, 0.5, 0.2],
        "val_loss": [1.1, 0.6, 0.4],
        "val_accuracy": [0.5, 0.7, 0.9],
    }
    figs = [
        plots.learning_curves(hist),
        plots.decision_boundary(lambda X: (X[:, 1] > 0).astype(int), b.x_test, b.y_test),
        plots.decision_boundary(torch.nn.Linear(2, 2), b.x_test, b.y_test, name="torch_boundary"),
        plots.confusion_matrix(b.y_test, 1 - b.y_test, classes=["a", "b"], normalize=True),
        plots.image_grid(
            data.load("digits").x_train[:10], labels=list(range(10)), preds=list(range(10))
        ),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    assert _pngs(run) == [
        "confusion_matrix.png",
        "decision_boundary.png",
        "image_grid.png",
        "learning_curves.png",
        "torch_boundary.png",
    ]
    for p in run.figures_dir.glob("*.png"):
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 2000


def test_plots_reject_bad_shapes_clearly() -> None:
    with pytest.raises(ValueError, match=r"2-D points, shape \(N, 2\)"):
        plots.decision_boundary(lambda X: X[:, 0], np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="differ in length"):
        plots.confusion_matrix([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        plots.image_grid(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="history is empty"):
        plots.learning_curves({})
    with pytest.raises(KeyError, match="no \\['nope'\\]"):
        plots.learning_curves({"epoch": [1], "train_loss": [1.0]}, metrics=["nope"])


def test_plots_without_a_run_still_return_figures() -> None:
    fig = plots.learning_curves({"train_loss": [3, 2, 1]})
    assert isinstance(fig, matplotlib.figure.Figure)


# --- command line ------------------------------------------------------------------------------------


def test_cli_list_info_train_runs(capsys) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "perceptron" in out and "mnist" in out
    assert cli.main(["info", "perceptron"]) == 0 and '"year": 1958' in capsys.readouterr().out
    assert cli.main(["train", "perceptron", "--data", "iris2", "--epochs", "5", "--quiet"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    assert cli.main(["runs"]) == 0 and "perceptron_iris2" in capsys.readouterr().out


def test_cli_unknown_names_list_the_valid_ones(capsys) -> None:
    assert cli.main(["train", "gpt-7", "--data", "iris2"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert cli.main(["train", "perceptron", "--data", "imagenet"]) == 2
    assert "valid names" in capsys.readouterr().err


def test_doctor_reports_each_item_with_hints() -> None:
    buf = io.StringIO()
    problems = cli.doctor(buf)
    text = buf.getvalue()
    for item in ("python", "torch", "device", "group notebooks", "data cache", "wandb"):
        assert item in text
    assert problems == [] and "no problems" in text


def test_confusion_counts_refuses_labels_outside_the_classes() -> None:
    from scratchlib import metrics

    assert metrics.confusion_counts([0, 1, 1], [0, 1, 0]).tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="class indices"):
        metrics.confusion_counts([-1, 1], [1, 1])
    with pytest.raises(ValueError, match="class indices"):
        metrics.confusion_counts([0, 2], [0, 1], num_classes=2)
