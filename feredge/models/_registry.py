"""Models register by name (as in timm) with the input spec the runtime needs to feed them.

The registry imports no architecture: `feredge.models` imports them all, so their decorators run
before anything can ask the registry for a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from feredge.artifact import InputSpec
from feredge.errors import FeredgeError, ModelKwargsError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable
    input_spec: InputSpec
    heads: dict[str, int] = field(default_factory=lambda: {"emotion": 7})
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, input_spec: InputSpec, heads: dict[str, int] | None = None, description: str = ""):
    """Decorator: register ``fn(num_classes=…, **kw) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(name, fn, input_spec, heads or {"emotion": 7}, description)
        return fn

    return wrap


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise FeredgeError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 7, **kwargs):
    """Build a registered model (torch needed); extra kwargs go to the architecture, which refuses ones it does
    not take (TypeError) or values that would build another network (ValueError): both are the caller's input."""
    builder = model_info(name).builder
    try:
        return builder(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelKwargsError(f"model_kwargs {kwargs} do not fit {name} ({exc})") from None

