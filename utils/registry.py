"""Name -> builder registries whose keyword arguments are the config keys of a section.

A config section such as ``model: {name: okdhp_hourglass, shared_stacks: 2, ...}`` is checked against the
builder's signature, so an unknown or misspelt key is an error naming the closest valid key, and a key the
builder does not take can never be silently ignored.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from utils.errors import ConfigError, closest


class Registry:
    """A named collection of builder functions (models, losses, datasets)."""

    def __init__(self, kind: str, modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._modules = tuple(modules)
        self._loaded = False

    def _load(self) -> None:
        """Import the modules whose ``@register`` decorators fill this registry (once, on first use)."""
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)

    def register(self, name: str, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a builder under ``name``; ``meta`` holds facts about it (e.g. a skeleton)."""

        def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._builders:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._builders[name] = builder
            self._meta[name] = dict(meta)
            return builder

        return decorator

    def meta(self, name: str) -> dict[str, Any]:
        """The facts registered with a builder."""
        self.get(name)
        return self._meta[name]

    def resolved(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """A section's keys with the builder's defaults filled in (each default is written once: there)."""
        values = {k: p.default for k, p in self.parameters(section["name"]).items()}
        values.update({k: v for k, v in section.items() if k != "name"})
        return values

    def names(self) -> list[str]:
        self._load()
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., Any]:
        self._load()
        if name not in self._builders:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{closest(name, self._builders)}; "
                f"available: {', '.join(self.names())}"
            )
        return self._builders[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The config keys a builder accepts (its keyword parameters), with their defaults."""
        sig = inspect.signature(self.get(name))
        return {
            p.name: p
            for p in sig.parameters.values()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        }

    def check(self, section: Mapping[str, Any], where: str, reserved: Iterable[str] = ()) -> None:
        """Raise ConfigError for a missing name, an unknown key or a missing required key.

        ``reserved`` names builder arguments that the caller supplies (e.g. a dataset's split): they are not
        config keys.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping with a 'name' key, got {type(section).__name__}", key=where
            )
        if "name" not in section:
            raise ConfigError(f"{where}: missing 'name'; available: {', '.join(self.names())}", key=where)
        if not isinstance(section["name"], str):
            raise ConfigError(
                f"{where}.name: expected the name of a {self.kind}, got {section['name']!r}; "
                f"available: {', '.join(self.names())}",
                key=f"{where}.name",
            )
        reserved = set(reserved)
        try:
            builder_params = self.parameters(section["name"])
        except ConfigError as error:
            raise ConfigError(f"{where}.name: {error}", key=f"{where}.name") from None
        params = {k: p for k, p in builder_params.items() if k not in reserved}
        for key in section:
            if key != "name" and key not in params:
                raise ConfigError(
                    f"{where}.{key}: unknown key for {self.kind} '{section['name']}'{closest(key, params)}; "
                    f"valid keys: {', '.join(sorted(params))}",
                    key=f"{where}.{key}",
                )
        for key, p in params.items():
            if p.default is inspect.Parameter.empty and key not in section:
                raise ConfigError(f"{where}: {self.kind} '{section['name']}' needs '{key}'", key=where)

    def build(self, section: Mapping[str, Any], where: str = "", **extra: Any) -> Any:
        """Check a config section and call its builder with the section's keys (plus `extra`)."""
        where = where or self.kind
        self.check(section, where, reserved=extra)
        kwargs = {k: v for k, v in section.items() if k != "name"}
        return self.get(section["name"])(**kwargs, **extra)
