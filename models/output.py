"""The one output structure every pose model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class PoseOutput:
    """Heatmaps of one forward pass, addressed by name rather than list position.

    stacks:   every supervised heatmap, in order: the shared stacks once, then every stack of branch 0,
              then of branch 1, ... (a single network: its stacks in order).
    branches: the final heatmap of each branch (a single network: [its last stack]).
    ensemble: the FAU ensemble, or None for a single network.
    ensemble_inputs: the tensors the FAU weighted into the ensemble (the branch finals by default).
    extras:   other named outputs (e.g. an auxiliary mask), empty by default.
    """

    stacks: list[Tensor]
    branches: list[Tensor]
    ensemble: Tensor | None = None
    ensemble_inputs: list[Tensor] | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def final(self) -> Tensor:
        """The prediction of a single network (branch 0's final heatmap)."""
        return self.branches[0]

    def heads(self) -> dict[str, Tensor]:
        """The heatmaps validation evaluates: branch0, branch1, ... and, for a multi-branch model, ensemble."""
        heads = {f"branch{i}": h for i, h in enumerate(self.branches)}
        if self.ensemble is not None:
            heads["ensemble"] = self.ensemble
        return heads
