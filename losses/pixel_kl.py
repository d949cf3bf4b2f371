"""OKDHP's pixel-wise KL divergence KL(E || o) per joint, and its epoch ramp-up weight."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from losses.joints_mse import joint_weights


def pixel_kl(
    student: Tensor,
    ensemble: Tensor,
    target_weight: Tensor,
    temperature: float = 1.0,
    detach_ensemble: bool = False,
) -> Tensor:
    """``sum_{b, j, pixels} q * (log q - p) / (B * H * W)`` with ``p = log_softmax(o * w / T)`` and
    ``q = softmax(E * w / T)`` over the H*W pixels of each joint (SPEC B).

    The result is multiplied by ``T**2`` (Hinton's convention, so gradient magnitudes do not shrink as T
    grows); with T = 1 it is exactly the released formula. The ensemble is not detached by default (as
    released), so the KL also trains the FAU and the branches through E.
    """
    batch, joints, height, width = student.shape
    weight = joint_weights(target_weight, student)
    if detach_ensemble:
        ensemble = ensemble.detach()
    log_p = F.log_softmax((student * weight / temperature).reshape(batch, joints, -1), dim=2)
    log_q = F.log_softmax((ensemble * weight / temperature).reshape(batch, joints, -1), dim=2)
    kl = (log_q.exp() * (log_q - log_p)).sum()
    return kl * temperature**2 / (batch * height * width)


def rampup_weight(epoch: int, rampup_epochs: int = 90) -> float:
    """Sigmoid-shaped ramp-up ``exp(-5 * (1 - min(e, L) / L)^2)``: exp(-5) at epoch 0, 1 from epoch L on."""
    if rampup_epochs <= 0:
        return 1.0
    progress = min(max(epoch, 0), rampup_epochs) / rampup_epochs
    return math.exp(-5.0 * (1.0 - progress) ** 2)
