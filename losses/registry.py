"""The loss registry: ``build_loss(config)`` turns a config's ``loss`` section into a loss module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from utils.registry import Registry

LOSSES = Registry(
    "loss", modules=("losses.joints_mse", "losses.okdhp", "losses.fpd", "losses.pose_mask", "losses.odkd")
)


def build_loss(section: Mapping[str, Any]) -> nn.Module:
    """Build the loss described by a config's ``loss`` section (a mapping with ``name`` + builder keys)."""
    return LOSSES.build(section, where="loss")
