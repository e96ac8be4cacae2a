"""scratchlib.plots (and the metrics they share): where each figure goes (active run, a given
run, no run, wandb), what it shows (panels, titles, regions), other input forms (tensors,
DataFrames, RGB, axes) and input that must be refused instead of drawn wrongly."""

from __future__ import annotations

import time

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from scratchlib import data, metrics, plots, track

HISTORY = {
    "epoch": [1, 2, 3],
    "train_loss": [1.0, 0.6, 0.3],
    "val_loss": [1.1, 0.7, 0.5],
    "train_accuracy": [0.5, 0.7, 0.9],
    "val_accuracy": [0.45, 0.65, 0.8],
    "lr": [0.1, 0.1, 0.1],
    "epoch_time": [0.1, 0.1, 0.1],
}


@pytest.fixture
def moons():
    return data.load("moons", smoke=True)


def _pngs(run: track.Run) -> list[str]:
    return sorted(p.name for p in run.figures_dir.glob("*.png"))


def _all_plots(moons) -> list[Figure]:
    digits = data.load("digits", smoke=True)
    return [
        plots.learning_curves(HISTORY),
        plots.decision_boundary(lambda X: X[:, 0] > 0.5, moons.x_test, moons.y_test, resolution=50),
        plots.decision_boundary(
            torch.nn.Linear(2, 2), moons.x_test, moons.y_test, resolution=50, name="torch_db"
        ),
        plots.confusion_matrix(moons.y_test, moons.y_test, classes=["a", "b"]),
        plots.image_grid(digits.x_train[:6], labels=digits.y_train[:6]),
    ]


def test_each_plot_returns_a_figure_and_writes_a_png_into_the_active_run(moons, runs_dir) -> None:
    run = track.start("perceptron", experiment="plots")
    figs = _all_plots(moons)
    assert all(isinstance(f, Figure) for f in figs)
    assert _pngs(run) == [
        "confusion_matrix.png",
        "decision_boundary.png",
        "image_grid.png",
        "learning_curves.png",
        "torch_db.png",
    ]
    for p in run.figures_dir.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
    recorded = [e["figure"] for e in track.load_events(run.dir) if e["event"] == "on_figure"]
    assert sorted(recorded) == [n[:-4] for n in _pngs(run)]
    assert plt.get_fignums() == []  # outside a notebook each figure is closed after saving


def test_a_given_run_gets_the_figure_and_no_run_means_no_file(moons, runs_dir) -> None:
    other = track.start("perceptron", experiment="given")
    active = track.start("perceptron", experiment="active")
    plots.learning_curves(HISTORY, run=other)
    assert _pngs(other) == ["learning_curves.png"] and _pngs(active) == []
    active.finish()
    assert track.active() is None
    before = sorted(runs_dir.rglob("*.png"))
    assert isinstance(plots.confusion_matrix([0, 1], [1, 1]), Figure)
    assert sorted(runs_dir.rglob("*.png")) == before


def test_figures_reach_wandb_when_it_is_on(fake_wandb) -> None:
    fake = fake_wandb()
    run = track.start("perceptron", experiment="wb", wandb="offline")
    plots.learning_curves(HISTORY)
    assert fake.of("log") == [
        ({"figures/learning_curves": ("Image", str(run.figures_dir / "learning_curves.png"))}, None)
    ]


def test_learning_curves_one_panel_per_quantity_train_and_val_together() -> None:
    fig = plots.learning_curves(HISTORY, title="t")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "accuracy"]  # lr and epoch_time are not curves
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train", "val"]
    np.testing.assert_array_equal(fig.axes[0].get_lines()[1].get_ydata(), HISTORY["val_loss"])
    only = plots.learning_curves(HISTORY, metrics=["val_accuracy"])
    assert [ax.get_title() for ax in only.axes] == ["accuracy"]


def test_learning_curves_read_a_runs_scalars_dataframe() -> None:
    run = track.start("perceptron", experiment="df")
    for e in (1, 2, 3):
        run.log_epoch(e, train_loss=1.0 / e, mistakes=3 - e)
    fig = plots.learning_curves(track.load_scalars(run.dir), name="from_df")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mistakes"]
    np.testing.assert_array_equal(fig.axes[1].get_lines()[0].get_xdata(), [1, 2, 3])
    assert "from_df.png" in _pngs(run)


def test_decision_boundary_accepts_tensors_and_draws_into_a_given_axes(moons) -> None:
    run = track.start("perceptron", experiment="axes")
    fig, axes = plt.subplots(1, 2)
    out = plots.decision_boundary(
        lambda X: torch.as_tensor(X[:, 1] > 0),  # a predict that returns a tensor
        torch.as_tensor(moons.x_test),
        torch.as_tensor(moons.y_test),
        ax=axes[1],
        title="right",
        feature_names=["x1", "x2"],
        resolution=40,
    )
    assert out is fig and axes[1].get_title() == "right" and axes[1].get_xlabel() == "x1"
    assert _pngs(run) == []  # drawing into someone else's grid: the caller saves the grid
    plt.close(fig)


def test_decision_boundary_leaves_a_torch_model_in_the_mode_it_found(moons) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    model.train()
    plots.decision_boundary(model, moons.x_test, moons.y_test, resolution=30)
    assert model.training, "plotting mid-training must not switch dropout/batch-norm off"


def test_a_one_logit_torch_model_is_coloured_by_its_predicted_class(moons) -> None:
    """A binary model with one output (logistic regression) is drawn by class (logit > 0),
    exactly like the same rule given as a function — not by raw logit values."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    w, b = model.weight.detach().numpy()[0], model.bias.item()
    t0 = time.perf_counter()
    by_model = plots.decision_boundary(model, moons.x_test, moons.y_test, resolution=60)
    elapsed = time.perf_counter() - t0
    by_rule = plots.decision_boundary(
        lambda X: (X @ w + b > 0).astype(int), moons.x_test, moons.y_test, resolution=60
    )
    levels_model = by_model.axes[0].collections[0].levels
    levels_rule = by_rule.axes[0].collections[0].levels
    np.testing.assert_allclose(levels_model, levels_rule)
    assert elapsed < 5


def test_confusion_matrix_counts_and_normalises(moons) -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = torch.tensor([0, 1, 0, 1, 1, 0])
    fig = plots.confusion_matrix(y_true, y_pred, classes=["a", "b", "c"])
    counts = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(counts, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    rates = plots.confusion_matrix(y_true, y_pred, normalize=True).axes[0].get_images()[0]
    np.testing.assert_allclose(rates.get_array().sum(1), [1, 1, 1])


def test_image_grid_titles_show_labels_and_wrong_predictions_in_red() -> None:
    images = torch.rand(5, 3, 8, 8)  # RGB tensors
    fig = plots.image_grid(
        images,
        labels=[0, 1, 2, 1, 0],
        preds=[0, 2, 2, 1, 1],
        ncols=3,
        classes=["cat", "dog", "eel"],
    )
    axes = fig.axes
    assert len(axes) == 6 and not axes[5].get_images()  # 2 x 3 grid, the last cell empty
    assert axes[0].get_images()[0].get_array().shape == (8, 8, 3)
    assert [ax.get_title() for ax in axes[:5]] == [
        "cat →cat",
        "dog →eel",
        "eel →eel",
        "dog →dog",
        "cat →dog",
    ]
    red = [matplotlib.colors.same_color(ax.title.get_color(), "red") for ax in axes[:5]]
    assert red == [False, True, False, False, True]
    gray = plots.image_grid(np.random.default_rng(0).random((3, 8, 8)))  # (N, H, W)
    assert gray.axes[0].get_images()[0].get_array().shape == (8, 8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: plots.decision_boundary(lambda X: X[:, 0], np.zeros((4, 3)), np.zeros(4)),
            r"\(N, 2\)",
        ),
        (lambda: plots.decision_boundary(lambda X: X[:, 0], np.zeros(4), np.zeros(4)), r"\(N, 2\)"),
        (lambda: plots.image_grid(np.zeros((2, 1, 1, 8, 8))), r"\(N, C, H, W\) or \(N, H, W\)"),
        (lambda: plots.image_grid(np.zeros(8)), r"\(N, C, H, W\) or \(N, H, W\)"),
        (lambda: plots.confusion_matrix([0, 1, 1], [0, 1]), "differ in length"),
        (lambda: plots.learning_curves({}), "history is empty"),
    ],
)
def test_bad_shapes_raise_value_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_learning_curves_name_the_metrics_that_are_not_there() -> None:
    with pytest.raises(KeyError, match="no \\['nope'\\]"):
        plots.learning_curves({"epoch": [1], "train_loss": [1.0]}, metrics=["nope"])


def test_points_and_labels_of_different_lengths_are_refused(moons) -> None:
    """Three labels for five points: matplotlib would read them as one RGB colour and draw
    a wrong picture without a word."""
    X = np.random.default_rng(0).random((5, 2))
    with pytest.raises(ValueError, match="5.*3|3.*5"):
        plots.decision_boundary(lambda G: G[:, 0] > 0.5, X, np.zeros(3), resolution=20)


def test_an_empty_image_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="(?i)no images|empty"):
        plots.image_grid(np.zeros((0, 1, 8, 8)))


@pytest.mark.parametrize(
    ("y_true", "y_pred", "classes"),
    [
        ([-1, 1, 1], [1, -1, 1], None),  # ±1 labels: -1 would silently count as the last class
        ([0, 2, 1], [0, 1, 1], ["a", "b"]),  # a label with no class name
    ],
)
def test_labels_outside_the_classes_are_refused_not_miscounted(y_true, y_pred, classes) -> None:
    with pytest.raises(ValueError, match="(?i)label"):
        plots.confusion_matrix(y_true, y_pred, classes=classes)


# --- metrics: the leaf the plots and models share ----------------------------------------------------


def test_confusion_counts_refuses_labels_outside_the_classes() -> None:
    assert metrics.confusion_counts([0, 1, 1], [0, 1, 0]).tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="class indices"):
        metrics.confusion_counts([-1, 1], [1, 1])
    with pytest.raises(ValueError, match="class indices"):
        metrics.confusion_counts([0, 2], [0, 1], num_classes=2)


def test_to_numpy_lives_in_metrics_and_the_plots_use_that_one() -> None:
    from scratchlib.plots import core

    assert core.to_numpy is metrics.to_numpy
    x = torch.arange(6.0, requires_grad=True).reshape(2, 3)
    np.testing.assert_array_equal(metrics.to_numpy(x * 2), [[0, 2, 4], [6, 8, 10]])
    assert metrics.accuracy(torch.tensor([1, 0]), torch.tensor([[0.2, 0.8], [0.9, 0.1]])) == 1.0
