"""Keypoints plus a person mask: the training loss of a network with a mask head (ODKD's senior teacher).

``L = sum_k MSE(o_k, G) + mu * BCE(M, mask)``: HRNet's JointsMSELoss with the ground-truth target weights on
every supervised stack, and binary cross-entropy of the mask logits ``M`` (``PoseOutput.mask``) against the
person's instance mask warped with the crop (``batch['mask']``, coverage in [0, 1], from ``data.with_mask``).
"""

from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from losses.joints_mse import PoseLoss, stack_mse_terms
from losses.registry import LOSSES
from models.output import PoseOutput
from utils.errors import ConfigError


def check_weight(key: str, value: float) -> float:
    """A loss weight as a float; a negative or non-finite one is a ConfigError naming ``loss.<key>``."""
    number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not (math.isfinite(number) and number >= 0.0):
        raise ConfigError(f"loss.{key} must be a finite number >= 0, got {value!r}", key=f"loss.{key}")
    return number


def mask_bce(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of mask logits (B, 1, h, w) against a mask in [0, 1] of the same shape."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


@LOSSES.register("pose_mask")
class PoseMaskLoss(PoseLoss):
    """Registered as loss ``pose_mask``; key ``mu`` (1.0), the weight of the mask term.

    Terms: ``mse/stack{k}``, ``mse``, ``mask`` (the BCE, before weighting) and ``total``. Reads the batch's
    ``mask``, so the data section needs ``with_mask: true``; the model needs ``mask_head: true``.
    """

    batch_keys = ("target", "target_weight", "mask")

    def __init__(self, *, mu: float = 1.0) -> None:
        super().__init__()
        self.mu = check_weight("mu", mu)

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        if output.mask is None:
            raise ConfigError(
                "loss 'pose_mask' needs a model with a mask head (model.mask_head: true); this model has none",
                key="model.mask_head",
            )
        terms = stack_mse_terms(output, batch["target"], batch["target_weight"])
        terms["mask"] = mask_bce(output.mask, batch["mask"])
        terms["total"] = terms["mse"] + self.mu * terms["mask"]
        return terms
