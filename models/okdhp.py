"""The OKDHP multi-branch hourglass: stem -> shared stacks -> T branches of stacks -> FAU ensemble.

Each branch starts from the shared feature stream (after the re-injection of the last shared stack) and
continues its own stream; re-injection sits between consecutive stacks of a branch, not after its last.
Stem + shared stacks + branch t is a complete ``HourglassNet`` of ``shared_stacks + branch_stacks[t]`` stacks,
which ``extract_branch`` returns with copied weights for deployment.

``PoseOutput`` order: ``stacks`` = the shared stacks' heatmaps once, then every stack of branch 0, then of
branch 1, ...; ``branches`` = the final heatmap of each branch; ``ensemble`` = the FAU mix of
``ensemble_inputs``, which are the branch finals, or with ``released_indices`` the last T entries of
``stacks`` (the released code's indexing bug).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from models.fau import build_fau
from models.hourglass import HourglassNet, StackPath, Stem, check_positive
from models.output import PoseOutput
from models.registry import MODELS
from utils.errors import ConfigError


def check_branch_index(index: int, num_branches: int) -> None:
    """Raise IndexError for a branch index outside ``0 .. num_branches - 1``."""
    if not 0 <= index < num_branches:
        raise IndexError(f"branch {index} does not exist; the model has {num_branches} branches")


def build_beside(section: dict[str, Any], like: nn.Module) -> nn.Module:
    """Build the model a config section names on the device of ``like`` (e.g. the meta device)."""
    with torch.device(next(like.parameters()).device):
        return MODELS.build(section, where="model")


def transplant(pairs: Iterable[tuple[nn.Module, nn.Module]], net: nn.Module, like: nn.Module) -> nn.Module:
    """Copy each source module's weights and buffers into its target, then give ``net`` the device, dtype
    and train/eval mode of ``like``: how a branch becomes a standalone network."""
    for target, source in pairs:
        target.load_state_dict(source.state_dict())
    reference = next(like.parameters())
    return net.to(device=reference.device, dtype=reference.dtype).train(like.training)


@MODELS.register("okdhp_hourglass")
class OKDHPHourglass(nn.Module):
    """Multi-branch stacked hourglass trained by online distillation from its own FAU ensemble.

    Registered as model ``okdhp_hourglass``: the keyword arguments are the ``model:`` config keys; the
    defaults are the balanced 4-stack network with the released FAU.
    """

    def __init__(
        self,
        *,
        num_joints: int = 16,
        num_features: int = 256,
        num_blocks: int = 1,
        depth: int = 4,
        shared_stacks: int = 2,
        branch_stacks: Sequence[int] = (2, 2, 2),
        fau: str = "released",
        fau_width: int = 64,
        released_indices: bool = False,
    ) -> None:
        super().__init__()
        self.widths = {
            "num_features": num_features,
            "num_joints": num_joints,
            "num_blocks": num_blocks,
            "depth": depth,
        }
        check_positive("okdhp_hourglass", fau_width=fau_width, **self.widths)
        if not isinstance(shared_stacks, int) or shared_stacks < 0:
            raise ConfigError(f"model.shared_stacks: needs an integer >= 0, got {shared_stacks!r}")
        if not branch_stacks:
            raise ConfigError("model.branch_stacks: needs at least one branch, e.g. [2, 2, 2]")
        check_positive("okdhp_hourglass", **{f"branch_stacks[{i}]": n for i, n in enumerate(branch_stacks)})
        self.shared_stacks, self.branch_stacks = shared_stacks, list(branch_stacks)
        self.released_indices = released_indices
        self.stem = Stem(num_features)
        self.shared = StackPath(shared_stacks, reinject_last=True, **self.widths)
        self.branches = nn.ModuleList(
            StackPath(n, reinject_last=False, **self.widths) for n in self.branch_stacks
        )
        self.fau = build_fau(
            fau,
            in_channels=num_features,
            num_branches=len(self.branch_stacks),
            num_joints=num_joints,
            width=fau_width,
        )

    def forward(self, images: Tensor) -> PoseOutput:
        stem_feature = self.stem(images)
        shared_stream, stacks = self.shared(stem_feature)
        finals = []
        for branch in self.branches:
            _, heatmaps = branch(shared_stream)
            stacks = stacks + heatmaps
            finals.append(heatmaps[-1])
        mixed = stacks[-len(finals) :] if self.released_indices else finals
        return PoseOutput(
            stacks=stacks,
            branches=finals,
            ensemble=self.fau(stem_feature, mixed),
            ensemble_inputs=mixed,
        )

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part parameter / MAC tables."""
        parts: dict[str, nn.Module] = {"stem": self.stem, "shared_stacks": self.shared}
        parts.update({f"branch{i}": branch for i, branch in enumerate(self.branches)})
        parts["fau"] = self.fau
        return parts

    def deploy_config(self, index: int) -> dict[str, Any]:
        """The ``model:`` config section of the standalone network ``extract_branch(index)`` returns."""
        check_branch_index(index, len(self.branches))
        num_stacks = self.shared_stacks + self.branch_stacks[index]
        return {"name": "hourglass", "num_stacks": num_stacks, **self.widths}

    def extract_branch(self, index: int) -> HourglassNet:
        """Stem + shared stacks + branch ``index`` as a standalone ``HourglassNet`` with copied weights."""
        net = build_beside(self.deploy_config(index), like=self)
        branch = self.branches[index]
        stacks = zip(net.path.stacks, [*self.shared.stacks, *branch.stacks], strict=True)
        reinjects = zip(net.path.reinjects, [*self.shared.reinjects, *branch.reinjects], strict=True)
        return transplant([(net.stem, self.stem), *stacks, *reinjects], net, like=self)
