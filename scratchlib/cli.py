"""Command line: the same models, data and trainer, headless.

    scratch list                      models and datasets
    scratch info MODEL                a model's MODEL_INFO
    scratch train MODEL --data NAME   train a registered model (--epochs, --smoke, --wandb, ...)
    scratch runs                      the run table (outputs/runs) as text
    scratch doctor                    device, torch build, CUDA, groups, data cache, wandb (with hints)

Multi-GPU: ``torchrun --nproc_per_node=N -m scratchlib.cli train ...`` (PyTorch's own engine).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import sys
from typing import Any

__all__ = ["main", "doctor"]


def _cmd_list(_: argparse.Namespace) -> int:
    from scratchlib import data, models

    print("models:")
    for n in models.names():
        i = models.info(n)
        print(f"  {n:<16} {i.name} — {i.authors} ({i.year}) [{i.module}]")
    print("datasets:")
    for n, d in data.describe().items():
        print(f"  {n:<16} {d}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from scratchlib import models

    print(json.dumps(models.info(args.model).as_dict(), indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from scratchlib import data, models, track
    from scratchlib.train import Trainer

    cls = models.get(args.model)
    bundle = data.load(args.data, smoke=args.smoke, seed=args.seed)
    model = cls.for_data(bundle) if hasattr(cls, "for_data") else cls()
    config = {k: v for k, v in vars(args).items() if k not in {"func"}}
    run = track.start(
        model,
        experiment=args.experiment or args.data,
        config=config,
        data=bundle,
        wandb=args.wandb or False,
    )
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            Trainer(
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                device=args.device,
                seed=args.seed,
                optimizer=args.optimizer,
                progress=not args.quiet,
            ).fit(model, bundle)
            result = Trainer.evaluate(model, bundle)
        else:  # NumPy models: fit(X, y, ...) and score(X, y)
            flat = lambda a: a.reshape(len(a), -1)
            model.fit(
                flat(bundle.x_train),
                bundle.y_train,
                epochs=args.epochs,
                X_val=flat(bundle.x_test),
                y_val=bundle.y_test,
            )
            result = {"accuracy": model.score(flat(bundle.x_test), bundle.y_test)}
            run.log_eval(**result)
    except BaseException:
        run.finish("failed")
        raise
    run.finish()
    print(json.dumps({"run": str(run.dir), **result}, indent=2))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from scratchlib import track

    df = track.load_runs(args.root)
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
    p = argparse.ArgumentParser(prog="scratch", description="AI From Scratch to Scale, headless.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="models and datasets").set_defaults(func=_cmd_list)
    i = sub.add_parser("info", help="a model's MODEL_INFO")
    i.add_argument("model")
    i.set_defaults(func=_cmd_info)
    t = sub.add_parser("train", help="train a registered model on a dataset")
    t.add_argument("model")
    t.add_argument("--data", required=True)
    t.add_argument("--experiment", default=None)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--optimizer", default="adam")
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--smoke", action="store_true")
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
    r.add_argument("--root", default=None)
    r.set_defaults(func=_cmd_runs)
    sub.add_parser("doctor", help="check the set-up, with hints").set_defaults(func=_cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyError as exc:  # unknown model / dataset: the message lists the valid names
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
