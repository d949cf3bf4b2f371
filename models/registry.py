"""The model registry: ``build_model(config)`` is how every entry point makes a network."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from utils.registry import Registry

MODELS = Registry("model", modules=("models.hourglass", "models.okdhp", "models.mobile", "models.hrnet"))


def build_model(section: Mapping[str, Any]) -> nn.Module:
    """Build the network described by a config's ``model`` section (a mapping with ``name`` + builder keys)."""
    return MODELS.build(section, where="model")
