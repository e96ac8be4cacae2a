"""The model registry: names, MODEL_INFO (a leaf that tracking reads without importing the
models), and the constructor arguments every registered model records in ``hparams``."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from scratchlib import data, models
from scratchlib.info import ModelInfo
from scratchlib.models.perceptron import Perceptron

ROOT = Path(__file__).resolve().parents[1]
INFO = ModelInfo(
    name="Toy", paper="A toy", authors="Nobody", year=2024, module="00-Tests", category="toy"
)


def test_registry_and_model_info() -> None:
    assert models.get("Perceptron") is Perceptron and "perceptron" in models.names()
    with pytest.raises(KeyError, match="valid names: .*perceptron"):
        models.get("transformer-xxl")
    info = models.info("perceptron")
    assert info.year == 1958 and info.module == "01-Foundations" and info.limitations
    assert "Rosenblatt" in info.markdown()
    assert models.ModelInfo is ModelInfo  # re-exported from the leaf module


def test_every_registered_model_has_complete_model_info() -> None:
    for name in models.names():
        info = models.info(name)
        assert info.paper and info.authors and 1940 < info.year < 2030 and info.module[:2].isdigit()


def test_perceptron_learning_rate_does_not_change_mistakes() -> None:
    b = data.load("iris2")
    h1 = Perceptron(2, lr=1.0).fit(b.x_train, b.y_train, epochs=20)
    h2 = Perceptron(2, lr=0.001).fit(b.x_train, b.y_train, epochs=20)
    assert h1["mistakes"] == h2["mistakes"]  # from w=0 the rule is scale-free


# --- layering: metrics, info and track are leaves ----------------------------------------------------


def test_tracking_and_metrics_need_neither_the_models_nor_the_plots() -> None:
    """Run in a fresh interpreter: what a module imports shows only there."""
    code = textwrap.dedent(
        """
        import sys
        from scratchlib import metrics, track
        from scratchlib.info import ModelInfo

        class Toy:
            MODEL_INFO = ModelInfo(name="Toy", paper="p", authors="a", year=2024,
                                   module="00-Tests", category="toy")

        run = track.start(Toy(), experiment="leaf")
        assert run.model_info["name"] == "Toy", run.model_info
        assert metrics.accuracy([0, 1], [[0.9, 0.1], [0.2, 0.8]]) == 1.0
        loaded = sorted(m for m in sys.modules if m.startswith("scratchlib."))
        print(loaded)
        assert not [m for m in loaded if m.startswith(("scratchlib.models", "scratchlib.plots",
                                                        "scratchlib.train"))], loaded
        name, info = track.model_identity("perceptron")  # a name: resolved only when asked
        assert (name, info["year"]) == ("perceptron", 1958)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


# --- hparams: every registered model records its constructor arguments ---------------------------


def test_a_registered_model_records_its_bound_arguments_with_defaults() -> None:
    mlp = models.get("mlp")(4, hidden=(8, 8))
    assert mlp.hparams == {
        "in_features": 4,
        "hidden": [8, 8],
        "num_classes": 10,
        "activation": "relu",
        "dropout": 0.0,
        "input_dropout": 0.0,
    }
    assert json.loads(json.dumps(mlp.hparams)) == mlp.hparams  # JSON-able as it is
    assert Perceptron(3, 0.5).hparams == {"n_features": 3, "lr": 0.5, "seed": 0}


def test_for_data_records_what_the_data_decided() -> None:
    bundle = data.load("iris2")
    assert Perceptron.for_data(bundle, lr=0.1).hparams == {"n_features": 2, "lr": 0.1, "seed": 0}


def test_callables_modules_and_arrays_are_recorded_by_name(temporary_model) -> None:
    def swish(x):
        return x * torch.sigmoid(x)

    @temporary_model
    class Toy(nn.Module):
        MODEL_INFO = INFO

        def __init__(self, conv=nn.Conv2d, act=swish, norm: nn.Module | None = None, **extra):
            super().__init__()
            self.net = nn.Linear(2, 2)

    toy = Toy(norm=nn.BatchNorm1d(2), table=np.zeros((2, 3)), scale=np.float32(0.5))
    assert toy.hparams == {
        "conv": "torch.nn.modules.conv.Conv2d",
        "act": f"{__name__}.test_callables_modules_and_arrays_are_recorded_by_name.<locals>.swish",
        "norm": "torch.nn.modules.batchnorm.BatchNorm1d",
        "table": "ndarray(2, 3)",
        "scale": 0.5,
    }
    json.dumps(toy.hparams)


def test_the_outermost_registered_constructor_is_what_is_recorded(temporary_model) -> None:
    @temporary_model
    class Base(nn.Module):
        MODEL_INFO = INFO

        def __init__(self, width: int = 4) -> None:
            super().__init__()
            self.width = width

    @temporary_model
    class Wide(Base):
        MODEL_INFO = INFO

        def __init__(self, factor: int = 2) -> None:
            super().__init__(width=4 * factor)

    class Unregistered(Base):  # no constructor of its own: Base's arguments
        pass

    assert Base(8).hparams == {"width": 8}
    assert Wide(3).hparams == {"factor": 3}
    assert Unregistered(5).hparams == {"width": 5}


def test_a_model_that_sets_its_own_hparams_keeps_them(temporary_model) -> None:
    @temporary_model
    class Own(nn.Module):
        MODEL_INFO = INFO

        def __init__(self, size: int = 3) -> None:
            super().__init__()
            self.hparams = {"size": size, "note": "mine"}

    assert Own().hparams == {"size": 3, "note": "mine"}


def test_hparams_compare_equal_for_equal_models_and_survive_a_copy() -> None:
    cifar = models.get("cifarresnet")
    a, b, c = cifar(depth=8), cifar(depth=8), cifar(depth=14)
    assert a.hparams == b.hparams != c.hparams
    assert copy.deepcopy(a).hparams == a.hparams
    assert a.hparams["conv"] == "torch.nn.modules.conv.Conv2d"
