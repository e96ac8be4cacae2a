"""Models, one file per family. Each model class carries ``MODEL_INFO`` (paper, authors, year, ...).

``MODEL_INFO`` is written once and feeds the notebook header, the wandb tags and the README's
curriculum map. ``models.get(name)`` and ``models.names()`` give every registered model by name.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from scratchlib.info import ModelInfo

__all__ = ["ModelInfo", "register", "get", "names", "info", "hparams_of", "REGISTRY"]


REGISTRY: dict[str, type] = {}
_BUILDING: set[int] = set()  # ids of instances whose registered constructor is running


def register(cls: type) -> type:
    """Class decorator: add a model (which must define ``MODEL_INFO``) to the registry.

    Every instance also gets ``self.hparams``: its constructor arguments as a JSON-able dict
    (defaults applied; functions, classes and modules by name), which resume compares."""
    info_ = getattr(cls, "MODEL_INFO", None)
    if not isinstance(info_, ModelInfo):
        raise TypeError(f"{cls.__name__} needs a MODEL_INFO = ModelInfo(...) class attribute")
    init = cls.__init__
    if not getattr(init, "_records_hparams", False):  # an inherited, already wrapped one records
        cls.__init__ = _recording_hparams(init)
    REGISTRY[cls.__name__.lower()] = cls
    return cls


def _recording_hparams(init: Any) -> Any:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        outermost = id(self) not in _BUILDING  # a registered subclass's constructor records
        _BUILDING.add(id(self))
        try:
            init(self, *args, **kwargs)
        finally:
            if outermost:
                _BUILDING.discard(id(self))
        if not outermost or "hparams" in vars(self):  # a model may set its own hparams
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self.hparams = hparams_of(bound.arguments, skip_first=True, signature=signature)

    __init__._records_hparams = True  # type: ignore[attr-defined]
    return __init__


def hparams_of(
    arguments: dict[str, Any], skip_first: bool = False, signature: inspect.Signature | None = None
) -> dict[str, Any]:
    """Bound constructor arguments as a JSON-able dict (``*args`` as a list, ``**kwargs`` merged)."""
    kinds = {n: p.kind for n, p in signature.parameters.items()} if signature else {}
    out: dict[str, Any] = {}
    for i, (name, value) in enumerate(arguments.items()):
        if skip_first and i == 0:
            continue  # self
        if kinds.get(name) == inspect.Parameter.VAR_KEYWORD:
            out.update({k: _plain_hparam(v) for k, v in value.items()})
        else:
            out[name] = _plain_hparam(value)
    return out


def _plain_hparam(v: Any) -> Any:
    """A value JSON can hold and ``==`` can compare: numbers, strings, lists, dicts, names."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain_hparam(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain_hparam(x) for k, x in v.items()}
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:
        return v.item()  # a NumPy or torch scalar
    if hasattr(v, "shape"):
        return f"{type(v).__name__}{tuple(v.shape)}"  # an array: its kind and shape, not its values
    if isinstance(v, type) or callable(v):  # classes, functions, modules (an nn.Module is callable)
        name = getattr(v, "__qualname__", None) or type(v).__qualname__
        return f"{getattr(v, '__module__', type(v).__module__)}.{name}"
    return repr(v)


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
