"""The model registry: ``build_model(config)`` is how every entry point makes a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from utils.registry import Registry

MODELS = Registry("model")


def build_model(section: Mapping[str, Any]) -> nn.Module:
    """Build the network described by a config's ``model`` section (a mapping with ``name`` + builder keys)."""
    _import_all()
    return MODELS.build(section, where="model")


def _import_all() -> None:
    """Import the model modules so that their ``@MODELS.register`` decorators run."""
    from models import hourglass, mobile, okdhp  # noqa: F401
