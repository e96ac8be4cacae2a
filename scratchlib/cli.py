"""Command line: the same models, data and trainer, headless.

    scratch list                          models (marked where the CLI cannot train them), datasets
    scratch info MODEL                    a model's MODEL_INFO
    scratch train MODEL --data NAME       train a registered model (--epochs, --lr, --smoke, --wandb, ...)
    scratch train --resume RUN            continue a run: its folder or its checkpoints/last.pt
    scratch runs                          the run table (outputs/runs) as text
    scratch doctor                        device, torch build, CUDA, groups, data cache, wandb (with hints)

Several GPUs: ``torchrun --nproc_per_node=N -m scratchlib.cli train ...`` (PyTorch's own engine;
rank 0 alone writes the run folder and prints the result).

Exit codes: 0 done; 1 the run failed (a non-finite loss, an unusable checkpoint, data that cannot
be had), with the run marked ``failed``; 2 a usage error, reported in one line before anything is
written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata as md
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["main", "doctor", "build_parser", "UsageError", "cli_limit"]

# Settings of `scratch train` and their defaults. Flags default to None so that, on --resume, a
# setting not given again is taken from the run being continued.
TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "lr": None,  # None: the model's own default (NumPy models), 1e-3 for the Trainer
    "batch_size": None,  # None: the model's own default (NumPy models), 128 for the Trainer
    "optimizer": "adam",
    "device": "auto",
    "seed": 0,
    "smoke": False,
    "experiment": None,
    "args": {},
}
TORCH_LR, TORCH_BATCH = 1e-3, 128
OPTIMIZERS = ("adam", "adamw", "sgd")

# Registered models the CLI cannot train, and why (the one line `scratch train` prints).
CLI_LIMITS = {
    "alexnet": "AlexNet takes 224x224 ImageNet images and no dataset here has them; "
    "train alexnetcifar (the paper's CIFAR-10 network) instead",
}


class UsageError(Exception):
    """A command line that cannot run as given; the message says what to change (exit code 2)."""


class _Failure(Exception):
    """Something outside the command line stops the command (exit code 1), e.g. no data."""


# --- argument types: each bad value names the fix ------------------------------------------------


def _whole(text: str, least: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if least is not None and value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, least=1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. --arg depth=56)")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw  # a plain string


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block; main() prints it
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --- which models the CLI can train ---------------------------------------------------------------


def _is_torch(cls: type) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return issubclass(cls, torch.nn.Module)


def cli_limit(name: str) -> str | None:
    """Why ``scratch train <name>`` cannot train that model, or None when it can."""
    from scratchlib import models

    cls = models.get(name)
    key = cls.__name__.lower()
    if key in CLI_LIMITS:
        return CLI_LIMITS[key]
    if not _is_torch(cls) and not (hasattr(cls, "fit") and hasattr(cls, "score")):
        return (
            f"{cls.__name__} is not trained by fit(X, y) / score(X, y) (a NumPy model of another "
            f"kind); use its notebook in {cls.MODEL_INFO.module}"
        )
    return None


# --- commands -------------------------------------------------------------------------------------


def _cmd_list(_: argparse.Namespace) -> int:
    from scratchlib import data, models

    print("models:")
    for n in models.names():
        i = models.info(n)
        limit = cli_limit(n)
        note = f"  -- not trainable from the CLI: {limit}" if limit else ""
        print(f"  {n:<16} {i.name} — {i.authors} ({i.year}) [{i.module}]{note}")
    print("datasets:")
    for n, d in data.describe().items():
        print(f"  {n:<16} {d}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from scratchlib import models

    try:
        info = models.info(args.model)
    except KeyError as exc:  # the message lists the valid names
        raise UsageError(exc.args[0]) from None
    print(json.dumps(info.as_dict(), indent=2))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from scratchlib import track

    try:
        df = track.load_runs(args.root)
    except NotADirectoryError as exc:
        raise UsageError(str(exc)) from None
    if df.empty:
        print(f"no runs under {track.runs_root(args.root)}")
        return 0
    cols = [
        c
        for c in ("run_id", "status", "data_source", "epochs", "test_accuracy", "duration_s")
        if c in df
    ]
    print(df[cols].to_string(index=False))
    return 0


# --- train ------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Everything `scratch train` checked before writing anything."""

    name: str
    cls: type
    settings: dict[str, Any]
    data: Any
    model: Any
    torch: bool
    rank: int
    checkpoint: Path | None = None
    fit_kwargs: dict[str, Any] = field(default_factory=dict)


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """The train settings: given flags, else (on --resume) the run's recorded ones, else defaults."""
    given = {k: getattr(args, k) for k in (*TRAIN_DEFAULTS, "model", "data") if k != "args"}
    given["args"] = dict(args.arg) if args.arg else None
    recorded: dict[str, Any] = {}
    checkpoint = None
    if args.resume:
        from scratchlib import track

        try:
            run_dir = track.find_run_dir(args.resume)
            recorded = track.load_config(run_dir).get("config") or {}
        except (FileNotFoundError, track.MalformedRunError) as exc:
            raise UsageError(str(exc)) from None
        given_path = Path(args.resume)
        checkpoint = given_path if given_path.is_file() else run_dir / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            raise UsageError(
                f"{run_dir} has no checkpoints/last.pt to resume from (it stopped before its "
                "first epoch ended); start a new run instead"
            )
    settings = {}
    for key in given:
        if given[key] is not None and given[key] is not False:
            settings[key] = given[key]
        elif key in recorded:
            settings[key] = recorded[key]
        else:
            settings[key] = TRAIN_DEFAULTS.get(key)
    if not settings.get("model") or not settings.get("data"):
        raise UsageError(
            "train needs a MODEL and --data NAME (e.g. `scratch train mlp --data digits`)"
        )
    return settings, checkpoint


def _data_facts(bundle: Any) -> dict[str, Any]:
    facts = bundle.facts() if callable(getattr(bundle, "facts", None)) else {}
    x = getattr(bundle, "x_train", None)
    if x is not None:
        facts.setdefault("input_shape", list(x.shape[1:]))
    with contextlib.suppress(AttributeError, ValueError):  # no classes: regression, text, ...
        facts.setdefault("num_classes", bundle.num_classes)
    return facts


def _derived(param: str, facts: dict[str, Any]) -> Any:
    """A constructor argument the data determines, or None."""
    shape = facts.get("input_shape") or []
    flat = math.prod(shape) if shape else None
    k = facts.get("num_classes")
    table = {
        "num_classes": k,
        "n_features": flat,
        "in_features": flat,
        "input_size": shape[-1] if shape else None,
        "in_channels": shape[0] if len(shape) == 3 else None,
        "sizes": [flat, 64, k] if flat and k else None,  # one hidden layer of 64 units
    }
    return table.get(param, facts.get(param))


def _build_model(cls: type, name: str, bundle: Any, kwargs: dict[str, Any]) -> Any:
    """``cls.for_data(bundle, **kwargs)``, else the constructor with what the data determines."""
    params = dict(inspect.signature(cls).parameters)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params and not takes_any]
    if unknown and not hasattr(cls, "for_data"):
        raise UsageError(
            f"{name} has no argument {', '.join(unknown)}; its arguments: "
            f"{', '.join(p for p in params if params[p].kind is params[p].POSITIONAL_OR_KEYWORD)}"
        )
    try:
        if hasattr(cls, "for_data"):
            return cls.for_data(bundle, **kwargs)
        facts = _data_facts(bundle)
        full = dict(kwargs)
        missing = []
        for p in params.values():
            if p.name in full or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = _derived(p.name, facts)
            if value is not None:
                full[p.name] = value
            elif p.default is p.empty:
                missing.append(p.name)
        if missing:
            raise UsageError(
                f"{name} needs {', '.join(missing)}, which the data does not give; "
                f"pass --arg {missing[0]}=VALUE or pick a dataset made for it"
            )
        return cls(**full)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot build {name} with {kwargs or 'its defaults'}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _first_batch(bundle: Any) -> Any:
    """Two training examples in the form the Trainer will get them (None if there is no way)."""
    loader = getattr(bundle, "train_loader", None)
    if callable(loader):
        return next(iter(loader(2)), None)
    x, y = getattr(bundle, "x_train", None), getattr(bundle, "y_train", None)
    if x is None or y is None or len(x) == 0:
        return None
    import torch

    return torch.as_tensor(x[:2]).float(), torch.as_tensor(y[:2]).long()


def _preflight_torch(model: Any, name: str, data_name: str, bundle: Any) -> None:
    """One step on two training examples (in eval mode, without gradients: nothing changes): a
    model that cannot take this data is a usage error now, not a failed run later."""
    import torch

    if not getattr(model, "automatic_optimization", True):
        return  # a model that steps its own optimizers needs the Trainer to take a step
    batch = _first_batch(bundle)
    if batch is None:
        return
    step = getattr(model, "training_step", None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = step(batch, 0) if callable(step) else model(batch[0])
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError, AttributeError) as exc:
        x = getattr(bundle, "x_train", None)
        shape = f", inputs of shape {tuple(x.shape[1:])}" if x is not None else ""
        raise UsageError(
            f"{name} cannot train on {data_name}{shape} ({_first_line(exc)}); "
            "pick a dataset it is built for (see `scratch list`)"
        ) from None
    finally:
        model.train(was_training)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    k = getattr(bundle, "num_classes", None) if not callable(step) else None
    if k and isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.shape[1] < k:
        raise UsageError(
            f"{name} gives {logits.shape[1]} outputs but {data_name} has {k} classes; "
            f"pass --arg num_classes={k}"
        )


def _flat(a: Any) -> Any:
    return a.reshape(len(a), -1)


def _numpy_plan(plan: _Plan, given: dict[str, Any]) -> None:
    """Route --lr / --batch-size / --seed to where a NumPy model takes them, checking the fit."""
    cls, s, bundle = plan.cls, plan.settings, plan.data
    fit_params = inspect.signature(cls.fit).parameters
    kwargs: dict[str, Any] = {"epochs": s["epochs"], "progress": not s.get("quiet")}
    for key in ("lr", "batch_size", "seed"):
        if key in fit_params:
            if s.get(key) is not None:
                kwargs[key] = s[key]
        elif given.get(key) is not None and key not in getattr(plan.model, "hparams", {}):
            raise UsageError(
                f"{plan.name} has no {key.replace('_', '-')}; drop --{key.replace('_', '-')}"
            )
    if given.get("optimizer") is not None:
        raise UsageError(f"{plan.name} trains with its own learning rule; drop --optimizer")
    x_val = getattr(bundle, "x_val", None)
    if x_val is not None and len(x_val):
        kwargs.update(X_val=_flat(x_val), y_val=bundle.y_val)
    plan.fit_kwargs = {k: v for k, v in kwargs.items() if k in fit_params}
    # a dry run on a copy with one example of each class: wrong labels or shapes fail here
    import numpy as np

    y = np.asarray(bundle.y_train)
    _, first = np.unique(y, return_index=True)
    dry = {k: v for k, v in plan.fit_kwargs.items() if k not in ("X_val", "y_val")}
    dry.update(epochs=1, **{k: False for k in ("progress", "run") if k in fit_params})
    try:
        copy.deepcopy(plan.model).fit(_flat(bundle.x_train[first]), y[first], **dry)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{plan.name} cannot train on {s['data']}: {exc}") from None


def _prepare(args: argparse.Namespace) -> _Plan:
    """Check everything and build the data and the model, seeded; nothing is written yet."""
    from scratchlib import data, models, track, utils

    settings, checkpoint = _settings(args)
    settings["quiet"] = args.quiet
    given = {k: getattr(args, k) for k in ("lr", "batch_size", "seed", "optimizer")}
    try:
        cls = models.get(settings["model"])
    except KeyError as exc:
        raise UsageError(exc.args[0]) from None
    name = cls.__name__.lower()
    limit = cli_limit(name)
    if limit:
        raise UsageError(f"{name} cannot be trained from the CLI: {limit}")
    is_torch = _is_torch(cls)
    rank = int(os.environ.get("RANK", "0") or 0)
    if not is_torch and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UsageError(
            f"{name} is a NumPy model and trains in one process; run it without torchrun"
        )
    if checkpoint is not None and not is_torch:
        raise UsageError(f"{name} is a NumPy model and has no checkpoints; start a new run")
    try:
        track.resolve_mode(args.wandb or False)
        if is_torch:
            utils.choose_device(settings["device"])
    except (ValueError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None

    utils.seed_everything(settings["seed"])  # before the data and the model: same seed, same run
    try:
        bundle = data.load(settings["data"], smoke=settings["smoke"], seed=settings["seed"])
    except data.UnknownDatasetError as exc:  # the message lists the valid names
        raise UsageError(str(exc)) from None
    except data.DataUnavailableError as exc:  # offline with nothing cached: it names the fix
        raise _Failure(_first_line(exc)) from None
    kwargs = dict(settings["args"] or {})
    if not is_torch:
        ctor = inspect.signature(cls).parameters
        for key in ("lr", "seed"):  # e.g. Perceptron(lr=...): the rate it trains with
            if key in ctor and key not in kwargs and settings.get(key) is not None:
                kwargs[key] = settings[key]
    model = _build_model(cls, name, bundle, kwargs)
    plan = _Plan(name, cls, settings, bundle, model, is_torch, rank, checkpoint)
    if is_torch:
        if given["optimizer"] is None and settings["optimizer"] not in OPTIMIZERS:
            raise UsageError(
                f"unknown optimizer {settings['optimizer']!r}; use {', '.join(OPTIMIZERS)}"
            )
        settings["lr"] = settings["lr"] if settings["lr"] is not None else TORCH_LR
        settings["batch_size"] = settings["batch_size"] or TORCH_BATCH
        _preflight_torch(model, name, settings["data"], bundle)
    else:
        _numpy_plan(plan, given)
        hp = getattr(model, "hparams", {})
        settings["lr"] = plan.fit_kwargs.get("lr", hp.get("lr", settings["lr"]))
        settings["optimizer"] = None
    return plan


def _check_finite(history: dict[str, list[Any]], model: Any) -> None:
    """A loss (or accuracy) that ended non-finite, or a model that says it diverged, is a failed
    run. The Trainer stops at the first non-finite loss itself; NumPy models stop and say so."""
    for key, values in history.items():
        last = values[-1] if values else None
        watched = any(w in key for w in ("loss", "mse", "accuracy"))
        if watched and isinstance(last, float) and not math.isfinite(last):
            raise FloatingPointError(
                f"{key} became {last} in epoch {len(values)}; lower --lr and start a new run"
            )
    if getattr(model, "diverged", False):
        raise FloatingPointError(
            f"{type(model).__name__} diverged (its weights blew up); lower --lr and start a new run"
        )


def _train(plan: _Plan, run: Any) -> dict[str, Any]:
    s = plan.settings
    if not plan.torch:
        x, y = plan.data.x_train, plan.data.y_train
        tracking = {"run": run if run is not None else False}
        if "run" not in inspect.signature(plan.model.fit).parameters:
            tracking = {}
        history = plan.model.fit(_flat(x), y, **tracking, **plan.fit_kwargs)
        _check_finite(history, plan.model)
        result = {"accuracy": plan.model.score(_flat(plan.data.x_test), plan.data.y_test)}
        if run is not None:
            run.log_eval(split="test", **result)
        return result
    from scratchlib.train import Trainer

    trainer = Trainer(
        epochs=s["epochs"],
        lr=s["lr"],
        batch_size=s["batch_size"],
        optimizer=s["optimizer"],
        device=s["device"],
        seed=s["seed"],
        progress=not s["quiet"],
        run=run,
        resume=plan.checkpoint or False,
    )
    history = trainer.fit(plan.model, plan.data)
    _check_finite(history, plan.model)
    return trainer.test(plan.model, plan.data)


def _cmd_train(args: argparse.Namespace) -> int:
    from scratchlib import track

    plan = _prepare(args)
    s = plan.settings
    config = {k: v for k, v in s.items() if k != "quiet"}
    config["model"] = plan.name
    run = None
    if plan.rank == 0:  # under torchrun, rank 0 alone writes the run folder
        if plan.checkpoint is not None:
            run = track.resume(plan.checkpoint, wandb=args.wandb or False)
            run.update_config(config=config)
        else:
            run = track.start(
                plan.model,
                experiment=s["experiment"] or s["data"],
                config=config,
                data=plan.data,
                wandb=args.wandb or False,
            )
    from scratchlib.train import CheckpointError

    try:
        result = _train(plan, run)
    except (FloatingPointError, CheckpointError) as exc:  # NonFiniteLossError: FloatingPointError
        if run is not None:
            run.finish("failed", error=str(exc))
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if run is not None:
            run.finish("interrupted")
        print("interrupted: `scratch train --resume RUN_FOLDER` continues it", file=sys.stderr)
        return 130
    except BaseException as exc:
        if run is not None:
            run.finish("failed", error=_first_line(exc))
        raise
    if run is not None:
        run.finish()
        print(json.dumps({"run": str(run.dir), **result}, indent=2))
    return 0


# --- doctor ------------------------------------------------------------------------------------


def _groups() -> dict[str, list[str]]:
    from scratchlib.utils import project_root

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    pyproject = project_root() / "pyproject.toml"
    if not pyproject.exists():
        return {}
    return tomllib.loads(pyproject.read_text())["dependency-groups"]


def _dist_name(req: str) -> str:
    import re

    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip()


def doctor(out: Any = None) -> list[str]:
    """Print what this machine can run, with a hint beside each thing that is missing.

    Returns the list of problems (empty when everything a learner needs is there)."""
    out = out or sys.stdout
    problems: list[str] = []

    def line(ok: bool | None, what: str, detail: str, hint: str = "") -> None:
        mark = {True: "ok ", False: "!! ", None: "-- "}[ok]
        out.write(f"{mark} {what:<14} {detail}\n")
        if hint and ok is not True:
            out.write(f"{'':>18}hint: {hint}\n")
        if ok is False:
            problems.append(f"{what}: {detail}")

    line(sys.version_info >= (3, 10), "python", sys.version.split()[0], "Python >= 3.10 is needed")
    try:
        import torch

        cuda_build = torch.version.cuda or "none (CPU build)"
        line(True, "torch", f"{torch.__version__}, CUDA build {cuda_build}")
        if torch.cuda.is_available():
            names = ", ".join(
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            )
            line(
                True,
                "device",
                f"cuda x{torch.cuda.device_count()}: {names}; bf16={torch.cuda.is_bf16_supported()}",
            )
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            line(True, "device", "Apple MPS")
        else:
            hint = (
                (
                    "torch has CUDA but sees no GPU: check `nvidia-smi`, the driver, and in Docker the "
                    "NVIDIA Container Toolkit (`docker compose up` reserves the GPU)"
                )
                if torch.version.cuda
                else "a CPU build of torch: fine for the default and smoke modes; FULL mode wants a GPU"
            )
            line(
                None,
                "device",
                "cpu only (notebooks run in default/SMOKE mode; FULL wants a GPU)",
                hint,
            )
    except Exception as exc:  # noqa: BLE001 - report any import failure
        line(False, "torch", f"cannot import ({exc})", "run `make install`")
    for group, reqs in _groups().items():
        missing = []
        for r in reqs:
            try:
                md.version(_dist_name(r))
            except md.PackageNotFoundError:
                missing.append(_dist_name(r))
        line(
            True if not missing else None,
            f"group {group}",
            "installed" if not missing else f"missing {', '.join(missing)}",
            f"make install-{group}",
        )
    from scratchlib.data.core import cache_dir, offline

    cache = cache_dir()
    present = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    line(
        None if not present else True,
        "data cache",
        f"{cache} ({', '.join(present) if present else 'empty'})"
        + ("; OFFLINE" if offline() else ""),
        "datasets download on first use; offline, loaders fall back to bundled data and say so",
    )
    mode = os.environ.get("WANDB_MODE", "")
    try:
        import wandb  # noqa: F401

        from scratchlib.track.wandb_bridge import _has_api_key

        key = _has_api_key(None)
        line(
            True,
            "wandb",
            f"installed; WANDB_MODE={mode or '(unset)'}; API key {'set' if key else 'not set'}",
            ""
            if key
            else "USE_WANDB=True logs offline until you `wandb login` (or set WANDB_API_KEY)",
        )
    except ImportError:
        line(None, "wandb", "not installed (tracking stays local)", "make install-tracking")
    out.write(f"\n{'no problems' if not problems else f'{len(problems)} problem(s)'} found\n")
    return problems


def _cmd_doctor(_: argparse.Namespace) -> int:
    return 1 if doctor() else 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="scratch",
        description="AI From Scratch to Scale, headless.",
        epilog="Several GPUs: torchrun --nproc_per_node=N -m scratchlib.cli train MODEL --data NAME. "
        "Exit codes: 0 done, 1 the run failed, 2 a usage error (nothing written).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "list", help="models (and whether the CLI can train them) and datasets"
    ).set_defaults(func=_cmd_list)
    i = sub.add_parser("info", help="a model's MODEL_INFO")
    i.add_argument("model")
    i.set_defaults(func=_cmd_info)
    t = sub.add_parser(
        "train",
        help="train a registered model on a dataset, or continue a run",
        description="Train a registered model on a named dataset (seeded before anything is built), "
        "or continue an interrupted run with --resume.",
    )
    t.add_argument("model", nargs="?", help="a name from `scratch list` (on --resume: the run's)")
    t.add_argument("--data", help="a dataset name from `scratch list` (on --resume: the run's)")
    t.add_argument("--experiment", default=None, help="run name part (default: the dataset)")
    t.add_argument("--epochs", type=_positive_int, help="passes over the data (default 10)")
    t.add_argument(
        "--lr", type=_positive_float, help="learning rate (default 1e-3; NumPy models: their own)"
    )
    t.add_argument(
        "--batch-size", type=_positive_int, help="batch size (default 128; NumPy models: their own)"
    )
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="torch models (default adam)")
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    t.add_argument("--seed", type=_whole, help="seeds Python, NumPy and torch first (default 0)")
    t.add_argument("--smoke", action="store_true", default=None, help="tiny data, seconds")
    t.add_argument(
        "--arg",
        action="append",
        type=_model_arg,
        metavar="KEY=VALUE",
        help="a model constructor argument (VALUE as JSON, else text), e.g. --arg width=0.25",
    )
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run: its folder or its checkpoints/last.pt (settings not given are the run's)",
    )
    t.add_argument(
        "--wandb",
        nargs="?",
        const=True,
        default=False,
        help="log to wandb too (optionally: online/offline/disabled)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)
    r = sub.add_parser("runs", help="the table of runs")
    r.add_argument("--root", default=None, help="a runs folder (default outputs/runs)")
    r.set_defaults(func=_cmd_runs)
    sub.add_parser("doctor", help="check the set-up, with hints").set_defaults(func=_cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (a usage error: one ``error:`` line and 2)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
