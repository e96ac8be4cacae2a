"""Weights & Biases, first class and never required.

Off by default; ``track.start(..., wandb=True)`` turns it on (mode from ``$WANDB_MODE``, else
online), or pass ``"online"`` / ``"offline"`` / ``"disabled"``. Project ``ai-from-scratch-<model>``;
tags: model, module, category, experiment, data source. A missing package, no network, no login
or any exception inside wandb logs one warning and the run carries on with its local facts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("scratchlib.track")

MODES = ("online", "offline", "disabled")


def resolve_mode(flag: bool | str | None) -> str | None:
    """``None`` (off) or one of :data:`MODES` from the user's flag and ``$WANDB_MODE``."""
    if flag is None or flag is False:
        return None
    if flag is True:
        mode = os.environ.get("WANDB_MODE", "online").strip().lower() or "online"
    else:
        mode = str(flag).strip().lower()
    if mode == "dryrun":
        mode = "offline"
    if mode not in MODES:
        raise ValueError(
            f"unknown wandb mode {flag!r}; use True, False, 'online', 'offline' or 'disabled'"
        )
    return mode


class WandbBridge:
    """Mirror a :class:`~scratchlib.track.run.Run` to wandb; every call is guarded."""

    def __init__(self, run: Any, mode: str, tags: list[str], project: str) -> None:
        self.mode, self.project, self.tags = mode, project, tags
        self._wb = None
        self._run = None
        try:
            import wandb
        except ImportError:
            log.warning(
                "wandb is not installed; this run is tracked locally only "
                "(to enable: `make install-tracking`, or `poetry install --with tracking`)."
            )
            return
        if mode == "online" and not _has_api_key(wandb):
            log.warning(
                "wandb online mode asked for but no API key is set (WANDB_API_KEY or "
                "`wandb login`); logging to wandb offline instead — `wandb sync` uploads it later."
            )
            self.mode = mode = "offline"
        self._wb = wandb
        self._guard("init", lambda: self._init(run, mode))

    def _init(self, run: Any, mode: str) -> None:
        wandb = self._wb
        settings = wandb.Settings(init_timeout=60, silent=True)
        self._run = wandb.init(
            project=self.project,
            name=run.id,
            dir=str(run.dir),
            mode=mode,
            config={**run.config, "model_info": run.model_info, "data": run.data_facts},
            tags=self.tags,
            job_type="train",
            settings=settings,
        )

    @property
    def active(self) -> bool:
        return self._run is not None

    def _guard(self, what: str, fn) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - wandb must never break a run
            log.warning(
                "wandb %s failed (%s: %s); carrying on with local facts only.",
                what,
                type(exc).__name__,
                exc,
            )
            self._run = None
            return None

    def log(self, row: dict[str, Any], step: int | None = None) -> None:
        if self.active:
            self._guard("log", lambda: self._run.log(dict(row), step=step))

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.active:
            self._guard("summary", lambda: self._run.summary.update(metrics))

    def config(self, sections: dict[str, Any]) -> None:
        """Add config sections recorded after the start (e.g. the Trainer's hyper-parameters)."""
        target = getattr(self._run, "config", None) if self.active else None
        if target is not None:
            self._guard("config", lambda: target.update(sections, allow_val_change=True))

    def image(self, name: str, path: Path) -> None:
        if self.active:
            self._guard(
                "image", lambda: self._run.log({f"figures/{name}": self._wb.Image(str(path))})
            )

    def artifact(self, path: Path, kind: str) -> None:
        if not self.active:
            return

        def _log() -> None:
            art = self._wb.Artifact(f"{self._run.name}-{kind}", type="model")
            art.add_file(str(path))
            self._run.log_artifact(art, aliases=[kind])

        self._guard("artifact", _log)

    def finish(self, figures_dir: Path | None = None) -> None:
        if not self.active:
            return

        def _finish() -> None:
            if figures_dir is not None and any(Path(figures_dir).glob("*.png")):
                art = self._wb.Artifact(f"{self._run.name}-figures", type="figures")
                art.add_dir(str(figures_dir))
                self._run.log_artifact(art)
            self._run.finish()

        self._guard("finish", _finish)
        self._run = None


def _has_api_key(wandb: Any) -> bool:
    """True if wandb can authenticate without prompting: ``$WANDB_API_KEY`` or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        hosts = netrc.netrc(os.environ.get("NETRC")).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)
