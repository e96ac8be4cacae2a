"""Models, one file per family. Each model class carries ``MODEL_INFO`` (paper, authors, year, ...).

``MODEL_INFO`` is written once and feeds the notebook header, the wandb tags and the README's
curriculum map. ``models.get(name)`` and ``models.names()`` give every registered model by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ModelInfo", "register", "get", "names", "info", "REGISTRY"]


@dataclass(frozen=True)
class ModelInfo:
    """What a learner (and the tracking) should know about a model, written once."""

    name: str
    paper: str
    authors: str
    year: int
    module: str  # e.g. "01-Foundations"
    category: str  # e.g. "linear classifier", "cnn", "rnn", "generative"
    key_innovations: tuple[str, ...] = ()
    limitations: tuple[str, ...] = ()
    paper_result: str = ""  # the headline number the notebook measures against
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["key_innovations"] = list(self.key_innovations)
        d["limitations"] = list(self.limitations)
        return d

    def markdown(self) -> str:
        """A short header for notebooks: paper, authors, year, ideas, limits."""
        lines = [f"**{self.name}** — {self.authors} ({self.year}), *{self.paper}*"]
        if self.paper_result:
            lines.append(f"- Paper's result: {self.paper_result}")
        lines += [f"- Key idea: {k}" for k in self.key_innovations]
        lines += [f"- Cannot: {k}" for k in self.limitations]
        return "\n".join(lines)


REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: add a model (which must define ``MODEL_INFO``) to the registry."""
    info_ = getattr(cls, "MODEL_INFO", None)
    if not isinstance(info_, ModelInfo):
        raise TypeError(f"{cls.__name__} needs a MODEL_INFO = ModelInfo(...) class attribute")
    REGISTRY[cls.__name__.lower()] = cls
    return cls


def _load_all() -> None:
    # Import every model file so its @register runs. Kept in one list: one obvious place.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def names() -> list[str]:
    """Every registered model name (lower case class names)."""
    _load_all()
    return sorted(REGISTRY)


def get(name: str) -> type:
    """The model class called ``name`` (case-insensitive); unknown names list the valid ones."""
    _load_all()
    key = name.lower().replace("-", "").replace("_", "")
    for k, cls in REGISTRY.items():
        if k.replace("_", "") == key:
            return cls
    raise KeyError(f"unknown model {name!r}; valid names: {', '.join(sorted(REGISTRY))}")


def info(name_or_model: Any) -> ModelInfo:
    """``MODEL_INFO`` of a model name, class or instance."""
    obj = get(name_or_model) if isinstance(name_or_model, str) else name_or_model
    return obj.MODEL_INFO


def __getattr__(attr: str) -> Any:
    # `models.Perceptron`, `models.LeNet5`, ... without importing every file up front.
    _load_all()
    for cls in REGISTRY.values():
        if cls.__name__ == attr:
            return cls
    raise AttributeError(f"module 'scratchlib.models' has no attribute {attr!r}")
