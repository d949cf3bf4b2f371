"""The one output structure every pose model returns, and the interface every pose model offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

WIDE = (torch.float32, torch.float64)  # what a loss takes as it is


@dataclass
class PoseOutput:
    """Heatmaps of one forward pass, addressed by name rather than list position.

    stacks:   every supervised heatmap, in order: the shared stacks once, then every stack of branch 0,
              then of branch 1, ... (a single network: its stacks in order).
    branches: the final heatmap of each branch (a single network: [its last stack]).
    ensemble: the FAU ensemble, or None for a single network.
    named_heads: the heatmaps validation scores, by name, when they are not the branch finals (the released
              code's ``outputs[-3:]``); None means ``branch0, branch1, ...`` = ``branches``.
    mask:     a person-mask logit map (B, 1, h, w) at heatmap resolution, for models with a mask head.
    teachers: the outputs of frozen teachers by name (a distiller fills it; empty otherwise).
    """

    stacks: list[Tensor]
    branches: list[Tensor]
    ensemble: Tensor | None = None
    named_heads: dict[str, Tensor] | None = None
    mask: Tensor | None = None
    teachers: dict[str, PoseOutput] = field(default_factory=dict)

    @property
    def final(self) -> Tensor:
        """The prediction of a single network (branch 0's final heatmap)."""
        return self.branches[0]

    def float(self) -> PoseOutput:
        """The same output with every tensor in fp32 or wider (losses are computed in fp32 after an autocast
        forward; a float64 forward, ``runtime.precision: fp64``, stays float64)."""

        def cast(t: Tensor | None) -> Tensor | None:
            return t if t is None or t.dtype in WIDE else t.float()

        if all(t.dtype in WIDE for t in self.stacks) and not self.teachers:
            return self
        return PoseOutput(
            stacks=[cast(t) for t in self.stacks],
            branches=[cast(t) for t in self.branches],
            ensemble=cast(self.ensemble),
            named_heads=None
            if self.named_heads is None
            else {k: cast(v) for k, v in self.named_heads.items()},
            mask=cast(self.mask),
            teachers={name: out.float() for name, out in self.teachers.items()},
        )

    def heads(self) -> dict[str, Tensor]:
        """The heatmaps validation evaluates: the branches by name and, for a multi-branch model, the ensemble."""
        if self.named_heads is not None:
            heads = dict(self.named_heads)
        else:
            heads = {f"branch{i}": h for i, h in enumerate(self.branches)}
        if self.ensemble is not None:
            heads["ensemble"] = self.ensemble
        return heads


class PoseModel(nn.Module):
    """Base class of every pose network: ``forward(images) -> PoseOutput`` plus the deployment interface.

    ``deploy(head)`` returns the standalone network that computes one evaluated head (a copy with its own
    weights, training-only parts such as an auxiliary mask head dropped) and the ``model:`` section that
    rebuilds it; ``deployable_heads()`` lists the heads it accepts. A single network deploys itself.
    """

    def forward(self, images: Tensor) -> PoseOutput:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def config_section(self) -> dict[str, Any]:
        """The ``model:`` config section that rebuilds this network with ``build_model``."""
        raise NotImplementedError

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part parameter / MAC tables (default: the direct children)."""
        return dict(self.named_children())

    def set_epoch(self, epoch: int) -> list[str]:
        """Called by the engine at the start of every epoch; returns the teachers in use (none by default)."""
        return []

    def input_multiple(self) -> int:
        """Input width and height must be multiples of this (the network's total down-sampling)."""
        return 1

    def ensemble_weights(self, images: Tensor) -> Tensor | None:
        """The ensemble's weight of every branch for every joint (N, T, J) on a batch; None without an ensemble."""
        return None

    def teacher_records(self) -> dict[str, dict[str, str]]:
        """What a checkpoint stores of each frozen teacher (a distiller's); a plain network has none."""
        return {}

    def deployable_heads(self) -> list[str]:
        """The head names ``deploy`` accepts (a single network: ``branch0``)."""
        return ["branch0"]

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        """The ``model:`` section of the network ``deploy(head)`` returns."""
        self.check_head(head)
        return self.config_section()

    def deploy(self, head: str = "branch0") -> tuple[nn.Module, dict[str, Any]]:
        """The standalone network computing ``head`` (weights copied) and the section that rebuilds it."""
        section = self.deploy_section(head)
        net = build_like(section, self)
        own = net.state_dict()
        kept = {k: v for k, v in self.state_dict().items() if k in own}
        net.load_state_dict(kept, strict=True)
        return finish_like(net, self), section

    def check_head(self, head: str) -> None:
        """Raise ValueError for a head this model cannot deploy, naming the ones it can."""
        if head not in self.deployable_heads():
            raise ValueError(
                f"head '{head}' cannot be deployed as a standalone network; deployable heads: "
                f"{', '.join(self.deployable_heads())}"
            )


def build_like(section: dict[str, Any], like: nn.Module) -> nn.Module:
    """Build the model a config section names on the device of ``like`` (e.g. the meta device)."""
    from models.registry import MODELS

    with torch.device(next(like.parameters()).device):
        return MODELS.build(section, where="model")


def finish_like(net: nn.Module, like: nn.Module) -> nn.Module:
    """Give ``net`` the device, dtype and train/eval mode of ``like``."""
    reference = next(like.parameters())
    return net.to(device=reference.device, dtype=reference.dtype).train(like.training)
