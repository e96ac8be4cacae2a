"""Module 1 models: hand-written backprop equals autograd, ADALINE reaches least squares, Hopfield
energy never rises and stored patterns are fixed points; the diagnostic plots write figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchlib import plots, track
from scratchlib.models.adaline import Adaline, closed_form, max_stable_lr
from scratchlib.models.hopfield import Hopfield, capacity_curve, corrupt, half_recall_point
from scratchlib.models.mlp import MLP, NumpyMLP, numerical_gradients

TORCH_ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


def _autograd(net: NumpyMLP, X: np.ndarray, y: np.ndarray):
    Ws = [torch.tensor(W, requires_grad=True) for W in net.W]
    bs = [torch.tensor(b, requires_grad=True) for b in net.b]
    a = torch.tensor(X)
    for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        z = a @ W + b
        a = TORCH_ACT[net.activation](z) if i < len(Ws) - 1 else z
    if net.loss_name == "cross_entropy":
        loss = torch.nn.functional.cross_entropy(a, torch.tensor(y))
    else:
        Y = torch.nn.functional.one_hot(torch.tensor(y), net.sizes[-1]).double()
        loss = ((torch.sigmoid(a) - Y) ** 2).sum(1).mean() / 2
    loss.backward()
    return loss.item(), [W.grad.numpy() for W in Ws], [b.grad.numpy() for b in bs]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_handwritten_backprop_equals_autograd(activation: str, loss: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(13, 6)), rng.integers(0, 4, 13)
    net = NumpyMLP([6, 9, 7, 4], activation=activation, loss=loss, seed=seed)
    dW, db = net.backward(X, y)
    ref_loss, tW, tb = _autograd(net, X, y)
    assert net.loss(X, y) == pytest.approx(ref_loss, abs=1e-9)
    for ours, ref in zip(dW + db, tW + tb, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_handwritten_backprop_equals_numerical_gradients() -> None:
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    net = NumpyMLP([3, 4, 2], activation="tanh", seed=3)
    dW, db = net.backward(X, y)
    nW, nb = numerical_gradients(net, X, y)
    for ours, ref in zip(dW + db, nW + nb, strict=True):
        np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_mlp_learns_xor_and_rejects_bad_input() -> None:
    X, y = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], float), np.array([0, 1, 1, 0])
    net = NumpyMLP([2, 2, 2], activation="sigmoid", seed=0)
    h = net.fit(X, y, epochs=2000, lr=2.0, run=False)
    assert net.score(X, y) == 1.0 and h["train_loss"][-1] < 0.05 * h["train_loss"][0]
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        net.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="labels must be 0..1"):
        net.fit(X, np.array([0, 1, 2, 0]), epochs=1, run=False)
    with pytest.raises(ValueError, match="unknown activation"):
        NumpyMLP([2, 2], activation="swish")


def test_torch_mlp_matches_simards_size_and_trains_shapes() -> None:
    model = MLP(784, hidden=(800,), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 784 * 800 + 800 + 800 * 10 + 10
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules()), (
        "built from weight matrices"
    )
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(activation="gelu-ish")


def test_torch_mlp_forward_is_the_equation() -> None:
    torch.manual_seed(0)
    model = MLP(4, hidden=(3,), num_classes=2, activation="tanh")
    x = torch.randn(5, 4)
    W1, W2 = model.weights
    b1, b2 = model.biases
    torch.testing.assert_close(model(x), torch.tanh(x @ W1 + b1) @ W2 + b2)


def test_input_dropout_drops_pixels_only_while_training() -> None:
    """Hinton et al. (2012) drop 20% of the input pixels: with a zero hidden dropout and one input
    pixel, the training forward pass sees it zeroed (or scaled by 1/(1-p)); eval never drops."""
    torch.manual_seed(0)
    model = MLP(1, hidden=(1,), num_classes=1, activation="relu", input_dropout=0.5)
    with torch.no_grad():
        model.weights[0].fill_(1.0), model.weights[1].fill_(1.0)
    x = torch.ones(4000, 1)
    model.train()
    out = model(x).squeeze(1)
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1 - 0.5)
    assert abs((out == 0).float().mean().item() - 0.5) < 0.05
    model.eval()
    assert torch.equal(model(x).squeeze(1), torch.ones(4000))
    for bad in (dict(dropout=1.0), dict(input_dropout=-0.1)):
        with pytest.raises(ValueError, match="probability in \\[0, 1\\)"):
            MLP(**bad)


# --- ADALINE ---------------------------------------------------------------------------------------


def test_adaline_converges_to_the_least_squares_solution() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))  # well conditioned
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=200) > 0).astype(int)
    ada = Adaline(3, lr=0.9 * max_stable_lr(X), mode="batch")
    h = ada.fit(X, y, epochs=300, run=False)
    w, b = closed_form(X, y)
    np.testing.assert_allclose(np.r_[ada.w, ada.b], np.r_[w, b], atol=1e-8)
    assert h["mse"][-1] < h["mse"][0] and not ada.diverged
    # with the same lstsq as a direct reference
    ref, *_ = np.linalg.lstsq(np.c_[X, np.ones(200)], np.where(y == 1, 1.0, -1.0), rcond=None)
    np.testing.assert_allclose(np.r_[w, b], ref)


def test_adaline_lms_gets_close_and_large_steps_diverge() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] > 0).astype(int)
    w, b = closed_form(X, y)
    lms = Adaline(2, lr=0.002, mode="sgd", seed=1)
    lms.fit(X, y, epochs=40, run=False)
    assert np.abs(np.r_[lms.w, lms.b] - np.r_[w, b]).max() < 0.05
    boom = Adaline(2, lr=1.1 * max_stable_lr(X))
    h = boom.fit(X, y, epochs=500, run=False)
    assert boom.diverged and len(h["mse"]) < 500


def test_adaline_bad_input() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        Adaline(2, mode="minibatch")
    with pytest.raises(ValueError, match="labels must be 0/1"):
        Adaline(2).fit(np.zeros((3, 2)), np.array([0, 1, 5]), run=False)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        Adaline(2).predict(np.zeros(2))


# --- Hopfield --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(8, 60), p=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_hopfield_energy_never_increases(n: int, p: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = Hopfield(n, seed=seed).store(rng.choice([-1.0, 1.0], size=(p, n)))
    s0 = rng.choice([-1.0, 1.0], size=n)
    s, info = net.recall(s0, track_energy=True)
    e = np.array(info["energies"])
    assert np.all(np.diff(e) <= 1e-9), "an asynchronous update raised the energy"
    assert e[-1] == pytest.approx(net.energy(s))
    assert info["converged"]
    h = net.W @ s
    assert np.all(s * h >= -1e-12), (
        "a converged state is a fixed point: every neuron agrees with its field"
    )


@pytest.mark.parametrize("seed", range(5))
def test_stored_patterns_are_fixed_points_below_capacity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, p = 200, 5  # load 0.025, far below 0.138
    patterns = rng.choice([-1.0, 1.0], size=(p, n))
    net = Hopfield(n, seed=seed).store(patterns)
    assert np.allclose(np.diag(net.W), 0) and np.allclose(net.W, net.W.T)
    for xi in patterns:
        s, info = net.recall(xi)
        np.testing.assert_array_equal(s, xi)
        assert info["sweeps"] == 1
        s, _ = net.recall(corrupt(xi, 0.1, rng))  # and a 10%-corrupted cue completes to it
        assert net.overlap(s, xi) == 1.0


def test_capacity_curve_collapses_with_load() -> None:
    curve = capacity_curve(150, np.array([0.04, 0.1, 0.3]), trials=1, probes=10, seed=0)
    assert curve["recall"][0] == 1.0 and curve["recall"][-1] < 0.3
    assert 0.04 < half_recall_point(curve) < 0.3
    flat = {"load": np.array([0.1, 0.2]), "recall": np.array([1.0, 0.9])}
    assert np.isnan(half_recall_point(flat))


def test_hopfield_bad_input() -> None:
    net = Hopfield(4)
    with pytest.raises(ValueError, match="±1 values of length 4"):
        net.store(np.array([[0.2, 1, 1, 1]]))
    with pytest.raises(ValueError, match="length 4"):
        net.recall(np.ones(5))
    with pytest.raises(ValueError, match="n >= 2"):
        Hopfield(1)


# --- diagnostic plots ----------------------------------------------------------------------------


def test_diagnostic_plots_write_figures() -> None:
    run = track.start(Hopfield, experiment="plots")
    plots.gradient_norms({"sigmoid": [1e-4, 1e-2, 1.0], "relu": [0.5, 0.6, 0.7]})
    plots.energy_curves({"a": [0, -1, -3, -3], "b": [0, -2, -2]})
    plots.capacity_curves({100: {"load": [0.05, 0.1, 0.2], "recall": [1.0, 0.8, 0.1]}})
    pats = np.random.default_rng(0).choice([-1.0, 1.0], size=(6, 12))
    fig = plots.pattern_grid(pats, shape=(3, 4), ncols=3, row_labels=["stored", "recalled"])
    assert len(fig.axes) == 6
    names = sorted(p.name for p in run.figures_dir.glob("*.png"))
    assert names == ["capacity.png", "energy_descent.png", "gradient_norms.png", "patterns.png"]
    run.finish()
    with pytest.raises(ValueError):
        plots.gradient_norms({})
    with pytest.raises(ValueError, match="differ in length"):
        plots.capacity_curves({10: {"load": [0.1, 0.2], "recall": [1.0]}})
    with pytest.raises(ValueError, match="±1 values"):
        plots.pattern_grid(np.full((2, 4), 0.5), shape=(2, 2))
    with pytest.raises(ValueError, match="H\\*W = 4"):
        plots.pattern_grid(np.ones((2, 4)), shape=(3, 3))
    with pytest.raises(ValueError, match="2 labels for 1 rows"):
        plots.pattern_grid(np.ones((2, 2, 2)), row_labels=["a", "b"])


def _pixel(fig, x: float, y: float) -> np.ndarray:
    """The RGB colour the figure shows at data point (x, y) of its first axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure was closed after saving: draw it again
    canvas.draw()
    px, py = fig.axes[0].transData.transform((x, y))
    img = np.asarray(canvas.buffer_rgba())
    return img[int(img.shape[0] - py), int(px), :3].astype(int)


@pytest.mark.parametrize("cls", [0, 1])
def test_a_line_that_puts_everything_in_one_class_is_drawn_in_that_class_colour(cls: int) -> None:
    """The perceptron's first lines often predict one class everywhere. The region must then take
    that class's colour (blue 0, red 1), like the points of that class — not always the lowest."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    fig = plots.decision_boundary(
        lambda Z: np.full(len(Z), cls), X, np.array([0, 1, 0, 1]), resolution=20
    )
    r, _, b = _pixel(fig, 0.5, 0.5)  # the middle: background only
    assert (r > b) if cls == 1 else (b > r), (cls, r, b)


def test_decision_boundary_draws_the_window_it_is_given() -> None:
    X = np.array([[4.0, 1.0], [6.0, 5.0]])
    fig = plots.decision_boundary(
        lambda Z: (Z[:, 1] > Z[:, 0]).astype(int), X, np.array([0, 1]), bounds=((-1, 8), (-2, 6))
    )
    ax = fig.axes[0]
    assert ax.get_xlim() == (-1, 8) and ax.get_ylim() == (-2, 6)
    r, _, b = _pixel(fig, -0.5, 5.0)  # far outside the points, above the line y = x: class 1
    assert r > b


def test_learning_curves_label_both_axes() -> None:
    fig = plots.learning_curves({"epoch": [1, 2], "train_loss": [1.0, 0.5], "mistakes": [3, 0]})
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [
        ("epoch", "loss"),
        ("epoch", "mistakes"),
    ]
