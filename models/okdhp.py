"""The OKDHP multi-branch hourglass: stem -> shared stacks -> T branches of stacks -> FAU ensemble.

Each branch starts from the shared feature stream (after the re-injection of the last shared stack) and
continues its own stream; re-injection sits between consecutive stacks of a branch, not after its last.
Stem + shared stacks + branch t is a complete ``HourglassNet`` of ``shared_stacks + branch_stacks[t]`` stacks,
which ``extract_branch`` returns with copied weights for deployment.

``PoseOutput`` order: ``stacks`` = the shared stacks' heatmaps once, then every stack of branch 0, then of
branch 1, ...; ``branches`` = the final heatmap of each branch; ``ensemble`` = the FAU mix of the branch
finals, or with ``released_indices`` of the last T entries of ``stacks`` (the released code's indexing bug).
In released mode those same T tensors are the evaluated heads, as in the official script, named after what
they are: ``branch{b}`` for a branch's final stack, ``branch{b}_stack{k}`` for an intermediate stack of it
(``shared_stack{k}`` inside the shared stacks); each deploys as the (possibly shorter) network that ends there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from models.fau import build_fau
from models.hourglass import HourglassNet, StackPath, Stem
from models.output import PoseModel, PoseOutput, build_like, finish_like
from models.registry import MODELS
from models.single import check_positive
from utils.errors import ConfigError


def transplant(pairs: Iterable[tuple[nn.Module, nn.Module]], net: nn.Module, like: nn.Module) -> nn.Module:
    """Copy each source module's weights and buffers into its target, then give ``net`` the device, dtype
    and train/eval mode of ``like``: how a branch becomes a standalone network."""
    for target, source in pairs:
        target.load_state_dict(source.state_dict())
    return finish_like(net, like)


@dataclass(frozen=True)
class StackHead:
    """Where one entry of ``PoseOutput.stacks`` sits: its head name, its branch (None: shared) and stack."""

    name: str
    branch: int | None
    stack: int


@MODELS.register("okdhp_hourglass")
class OKDHPHourglass(PoseModel):
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
        self.fau_name, self.fau_width = fau, fau_width
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
        self.stack_heads = self._label_stacks()

    def _label_stacks(self) -> list[StackHead]:
        """A head name for every entry of ``PoseOutput.stacks``, in order."""
        labels = [StackHead(f"shared_stack{k}", None, k) for k in range(self.shared_stacks)]
        for b, count in enumerate(self.branch_stacks):
            labels += [
                StackHead(f"branch{b}" if k == count - 1 else f"branch{b}_stack{k}", b, k)
                for k in range(count)
            ]
        return labels

    def evaluated_heads(self) -> list[StackHead]:
        """The heads validation scores: the branch finals, or as released the last T stack outputs."""
        if self.released_indices:
            return self.stack_heads[-len(self.branch_stacks) :]
        return [
            h
            for h in self.stack_heads
            if h.branch is not None and h.stack == self.branch_stacks[h.branch] - 1
        ]

    def forward(self, images: Tensor) -> PoseOutput:
        stem_feature = self.stem(images)
        shared_stream, stacks = self.shared(stem_feature)
        finals = []
        for branch in self.branches:
            _, heatmaps = branch(shared_stream)
            stacks = stacks + heatmaps
            finals.append(heatmaps[-1])
        if not self.released_indices:
            return PoseOutput(stacks=stacks, branches=finals, ensemble=self.fau(stem_feature, finals))
        mixed = stacks[-len(finals) :]
        named = {head.name: heatmap for head, heatmap in zip(self.evaluated_heads(), mixed, strict=True)}
        return PoseOutput(
            stacks=stacks, branches=finals, ensemble=self.fau(stem_feature, mixed), named_heads=named
        )

    def ensemble_weights(self, images: Tensor) -> Tensor:
        """The FAU's weights (N, T, J): it reads the stem's feature."""
        return self.fau.branch_weights(self.stem(images))

    def input_multiple(self) -> int:
        """Inputs must be multiples of 4: the stem's stride, as for the stacked hourglass."""
        return 4

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part parameter / MAC tables."""
        parts: dict[str, nn.Module] = {"stem": self.stem, "shared_stacks": self.shared}
        parts.update({f"branch{i}": branch for i, branch in enumerate(self.branches)})
        parts["fau"] = self.fau
        return parts

    def config_section(self) -> dict[str, Any]:
        """The ``model:`` config section that rebuilds this multi-branch network."""
        return {
            "name": "okdhp_hourglass",
            **self.widths,
            "shared_stacks": self.shared_stacks,
            "branch_stacks": list(self.branch_stacks),
            "fau": self.fau_name,
            "fau_width": self.fau_width,
            "released_indices": self.released_indices,
        }

    def deployable_heads(self) -> list[str]:
        """Every branch final and every evaluated head (in released mode an intermediate stack among them)."""
        names = [f"branch{b}" for b in range(len(self.branch_stacks))]
        return names + [h.name for h in self.evaluated_heads() if h.name not in names]

    def _head(self, name: str) -> StackHead:
        self.check_head(name)
        return next(h for h in self.stack_heads if h.name == name)

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        """The ``hourglass`` section of the network that ends at ``head``'s stack."""
        label = self._head(head)
        num_stacks = label.stack + 1 + (self.shared_stacks if label.branch is not None else 0)
        return {"name": "hourglass", "num_stacks": num_stacks, **self.widths}

    def deploy(self, head: str = "branch0") -> tuple[HourglassNet, dict[str, Any]]:
        """Stem + shared stacks + the branch's stacks up to ``head`` as a standalone ``HourglassNet``."""
        section = self.deploy_section(head)
        label = self._head(head)
        net = build_like(section, self)
        stacks, reinjects = list(self.shared.stacks), list(self.shared.reinjects)
        if label.branch is not None:
            branch = self.branches[label.branch]
            stacks += list(branch.stacks)[: label.stack + 1]
            reinjects += list(branch.reinjects)
        stacks = stacks[: section["num_stacks"]]
        reinjects = reinjects[: section["num_stacks"] - 1]
        pairs = [
            (net.stem, self.stem),
            *zip(net.path.stacks, stacks, strict=True),
            *zip(net.path.reinjects, reinjects, strict=True),
        ]
        return transplant(pairs, net, like=self), section
