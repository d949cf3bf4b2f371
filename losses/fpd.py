"""Fast Pose Distillation (FPD, Zhang et al. CVPR 2019): a frozen teacher's last heatmap teaches every stack.

``L = (1 - alpha) * sum_k MSE(o_k, G) + alpha * sum_k MSE(o_k, T)``, with HRNet's JointsMSELoss and the
ground-truth target weights on both terms, ``T`` the teacher's final heatmap and ``alpha = 0.5`` (FPD's
released ``KD.ALPHA``; SPEC B, "FPD"). The teacher is the experiment's ``teachers.<teacher>`` entry, run by the
``Distiller``; in an epoch outside the teacher's ``[start, end)`` the distillation term is absent (0).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losses.joints_mse import PoseLoss, joints_mse, stack_mse_terms
from losses.registry import LOSSES
from models.output import PoseOutput


@LOSSES.register("fpd")
class FPDLoss(PoseLoss):
    """FPD's loss. Registered as loss ``fpd``; keys: ``alpha`` (0.5) and ``teacher`` (its name, ``teacher``).

    Terms: ``mse/stack{k}`` and ``mse`` (ground truth), ``kd/stack{k}`` and ``kd`` (teacher), ``total``.
    """

    teacher_keys = ("teacher",)

    def __init__(self, *, alpha: float = 0.5, teacher: str = "teacher") -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.teacher = teacher

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        target_weight = batch["target_weight"]
        terms = stack_mse_terms(output, batch["target"], target_weight)
        teacher = output.teachers.get(self.teacher)
        if teacher is None:
            terms["kd"] = torch.zeros((), device=terms["mse"].device)
        else:
            soft_target = teacher.final.detach()
            kd = {
                f"kd/stack{k}": joints_mse(h, soft_target, target_weight) for k, h in enumerate(output.stacks)
            }
            terms.update(kd)
            terms["kd"] = sum(kd.values())
        terms["total"] = (1.0 - self.alpha) * terms["mse"] + self.alpha * terms["kd"]
        return terms
