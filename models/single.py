"""What the single networks share: config value checks and the optional training-only person-mask head.

A single network (``hourglass``, ``mobile``) is rebuilt from ``{name, **config}``; with ``mask_head: true`` it
also has ``mask_layer``, a conv1x1 on the feature its joint conv reads -> one person-mask logit map
(``PoseOutput.mask``) that ODKD's mask loss trains and ``deploy`` drops.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from models.output import PoseModel
from utils.errors import ConfigError


def check_positive(model: str, **values: int) -> None:
    """Raise ConfigError naming the first config value that is not a positive integer."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model.{key}: {model} needs a positive integer, got {value!r}")


def check_bool(model: str, **values: bool) -> None:
    """Raise ConfigError naming the first config value that is not true or false."""
    for key, value in values.items():
        if not isinstance(value, bool):
            raise ConfigError(f"model.{key}: {model} needs true or false, got {value!r}")


class SingleNetwork(PoseModel):
    """A one-head network whose ``model:`` section is its registry name plus ``self.config``."""

    name: ClassVar[str]  # the registry name
    config: dict[str, Any]
    mask_layer: nn.Conv2d | None

    def add_mask_head(self, channels: int, enabled: bool) -> None:
        """``mask_layer`` (conv1x1, ``channels`` -> 1) when ``enabled``, else None."""
        check_bool(self.name, mask_head=enabled)
        self.mask_layer = nn.Conv2d(channels, 1, kernel_size=1) if enabled else None

    def mask_from(self, feature: Tensor) -> Tensor | None:
        """The mask logits of a feature map, or None without a mask head."""
        return self.mask_layer(feature) if self.mask_layer is not None else None

    def body_parts(self) -> dict[str, nn.Module]:
        """The named parts before the mask head (for parameter / MAC tables)."""
        raise NotImplementedError

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part parameter / MAC tables, the mask head last."""
        parts = self.body_parts()
        if self.mask_layer is not None:
            parts["mask_layer"] = self.mask_layer
        return parts

    def config_section(self) -> dict[str, Any]:
        """The ``model:`` section that rebuilds this network (``mask_head`` only when on, so the section of a
        plain network stays what it always was)."""
        mask = {"mask_head": True} if self.mask_layer is not None else {}
        return {"name": self.name, **self.config, **mask}

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        """The same network without the training-only mask head."""
        self.check_head(head)
        return {"name": self.name, **self.config}
