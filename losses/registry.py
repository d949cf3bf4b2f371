"""The loss registry: ``build_loss(config)`` turns a config's ``loss`` section into a loss module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from utils.registry import Registry

LOSSES = Registry("loss")


def build_loss(section: Mapping[str, Any]) -> nn.Module:
    """Build the loss described by a config's ``loss`` section (a mapping with ``name`` + builder keys)."""
    _import_all()
    return LOSSES.build(section, where="loss")


def _import_all() -> None:
    """Import the loss modules so that their ``@LOSSES.register`` decorators run."""
    from losses import joints_mse, okdhp  # noqa: F401
