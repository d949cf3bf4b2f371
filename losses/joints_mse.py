"""HRNet's JointsMSELoss with target weights, and its sum over every supervised stack of a PoseOutput.

Every loss of the project has the engine's one signature, ``loss(output, batch, epoch) -> {name: tensor}``
with ``total`` among the terms, and declares in ``batch_keys`` which entries of the collated batch it reads,
so that a config pairing it with a dataset that lacks one is refused at start-up (``check_batch_keys``).
A term named ``count/...`` is a count over the batch (e.g. joints), not a loss: the training loop sums it
over an epoch and over processes instead of averaging it per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from losses.registry import LOSSES
from models.output import PoseOutput

COUNT_PREFIX = "count/"


def is_count(name: str) -> bool:
    """True for a term that counts (summed over an epoch and over processes), false for a loss term."""
    return name.startswith(COUNT_PREFIX)


def joint_weights(target_weight: Tensor, heatmaps: Tensor) -> Tensor:
    """Target weights [B, J] or [B, J, 1] reshaped to [B, J, 1, 1] to broadcast over heatmaps [B, J, H, W]."""
    return target_weight.reshape(heatmaps.shape[0], heatmaps.shape[1], 1, 1).to(heatmaps.dtype)


def joints_mse(output: Tensor, target: Tensor, target_weight: Tensor) -> Tensor:
    """Per joint ``0.5 * mean_{batch, pixels}((o * w - G * w)^2)``, averaged over joints (HRNet's JointsMSELoss).

    Every joint has the same number of elements, so this is ``0.5 * mean((o * w - G * w)^2)`` overall.
    """
    weight = joint_weights(target_weight, output)
    return 0.5 * (output * weight - target * weight).pow(2).mean()


def stack_mse_terms(output: PoseOutput, target: Tensor, target_weight: Tensor) -> dict[str, Tensor]:
    """``mse/stack{k}`` for every supervised heatmap (the order of ``PoseOutput.stacks``) and their sum ``mse``."""
    terms = {f"mse/stack{k}": joints_mse(h, target, target_weight) for k, h in enumerate(output.stacks)}
    terms["mse"] = sum(terms.values())
    return terms


class PoseLoss(nn.Module):
    """Base of every loss: ``forward(output, batch, epoch)``; ``batch_keys`` names what it reads of the batch."""

    batch_keys: tuple[str, ...] = ("target", "target_weight")
    teacher_keys: tuple[str, ...] = ()  # config keys that name the teachers it learns from (distillation)

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        raise NotImplementedError

    @classmethod
    def teacher_windows(
        cls, values: Mapping[str, Any], teachers: Iterable[str]
    ) -> dict[str, tuple[float, float]]:
        """The default ``(start, end)`` of teachers whose config gives neither, from the resolved loss keys
        ``values``; a teacher left out here teaches the whole run, (0, 1)."""
        return {}

    def check_outputs(self, student: PoseOutput, teachers: Mapping[str, PoseOutput]) -> None:
        """Refuse, before the first step, a student or teacher lacking a head this loss reads (a ConfigError
        whose ``key`` is ``teachers.<name>`` when a teacher is at fault). The outputs come from one forward on
        the meta device: their tensors have shapes and no values."""


def check_batch_keys(loss: nn.Module, provided: Iterable[str], loss_name: str, data_name: str) -> None:
    """Raise ConfigError when the loss reads batch entries the dataset does not provide."""
    from utils.errors import ConfigError

    provided = set(provided)
    missing = [key for key in getattr(loss, "batch_keys", ()) if key not in provided]
    if missing:
        raise ConfigError(
            f"loss '{loss_name}' needs the batch entries {', '.join(missing)}, which dataset '{data_name}' "
            f"does not provide with this config (it provides {', '.join(sorted(provided))}). For a mask, set "
            "data.with_mask: true on COCO; otherwise choose a loss that fits the data."
        )


@LOSSES.register("mse")
class PoseMSELoss(PoseLoss):
    """Supervised loss of any network: the sum of every stack's JointsMSE (intermediate supervision).

    Registered as loss ``mse`` (no config keys besides ``name``).
    Terms: ``mse/stack{k}``, ``mse`` and ``total`` (= ``mse``).
    """

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        terms = stack_mse_terms(output, batch["target"], batch["target_weight"])
        terms["total"] = terms["mse"]
        return terms
