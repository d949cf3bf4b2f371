"""HRNet's JointsMSELoss with target weights, and its sum over every supervised stack of a PoseOutput."""

from __future__ import annotations

from torch import Tensor, nn

from losses.registry import LOSSES
from models.output import PoseOutput


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


@LOSSES.register("mse")
class PoseMSELoss(nn.Module):
    """Supervised loss of any network: the sum of every stack's JointsMSE (intermediate supervision).

    Registered as loss ``mse`` (no config keys besides ``name``).
    Terms: ``mse/stack{k}``, ``mse`` and ``total`` (= ``mse``). ``epoch`` is accepted, and unused, so that
    every loss has the engine's call signature.
    """

    def forward(
        self, output: PoseOutput, target: Tensor, target_weight: Tensor, epoch: int = 0
    ) -> dict[str, Tensor]:
        terms = stack_mse_terms(output, target, target_weight)
        terms["total"] = terms["mse"]
        return terms
