"""The OKDHP training loss: supervised stacks + supervised ensemble + ramped-up KL distillation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from losses.joints_mse import PoseLoss, joints_mse, stack_mse_terms
from losses.pixel_kl import pixel_kl, rampup_weight
from losses.registry import LOSSES
from models.output import PoseOutput


@LOSSES.register("okdhp")
class OKDHPLoss(PoseLoss):
    """``L = sum_k MSE(o_k, G) + alpha * MSE(E, G) + beta * w(e) * sum_k KL(E || o_k)`` (paper Eq. 8).

    k runs over every entry of ``output.stacks`` (shared stacks once, every stack of every branch).
    Terms returned: ``mse/stack{k}``, ``mse``, ``ensemble_mse``, ``kl/stack{k}``, ``kl`` (sum over stacks,
    before weighting), ``kl_weight`` (beta * w(e)) and ``total``. For a single network (no ensemble) only
    the MSE terms, and ``total = mse``. Registered as loss ``okdhp``: the keyword arguments are the
    ``loss:`` config keys; the defaults are the paper's and the released code's.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 2.0,
        rampup_epochs: int = 90,
        temperature: float = 1.0,
        detach_ensemble: bool = False,
    ) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.rampup_epochs = rampup_epochs
        self.temperature = temperature
        self.detach_ensemble = detach_ensemble

    def forward(self, output: PoseOutput, batch: dict[str, Any], epoch: int = 0) -> dict[str, Tensor]:
        target, target_weight = batch["target"], batch["target_weight"]
        terms = stack_mse_terms(output, target, target_weight)
        if output.ensemble is None:
            terms["total"] = terms["mse"]
            return terms
        ensemble = output.ensemble
        terms["ensemble_mse"] = joints_mse(ensemble, target, target_weight)
        kls = [
            pixel_kl(h, ensemble, target_weight, self.temperature, self.detach_ensemble)
            for h in output.stacks
        ]
        terms.update({f"kl/stack{k}": kl for k, kl in enumerate(kls)})
        terms["kl"] = sum(kls)
        kl_weight = self.beta * rampup_weight(epoch, self.rampup_epochs)
        terms["kl_weight"] = torch.tensor(kl_weight, device=ensemble.device)
        terms["total"] = terms["mse"] + self.alpha * terms["ensemble_mse"] + kl_weight * terms["kl"]
        return terms
