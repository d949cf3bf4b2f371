"""Feature Aggregation Unit (FAU): per-branch, per-joint weights that mix the branch heatmaps into an ensemble.

Generic over ``in_channels`` (the feature it reads), ``num_branches`` and ``num_joints``, so the hourglass and
the MobilePose-style multi-branch networks share it. Two variants:

- ``released`` (what produced the OKDHP authors' numbers): three parallel conv paths (kernel 3/5/7, padding
  1/2/3, each ``in -> channels`` + BN + ReLU), SUMMED; global average pool -> Linear(channels -> width), no
  activation -> one Linear(width -> J) head per branch. ``channels`` defaults to ``in_channels`` and
  ``width`` to 64, as released (5,461,360 parameters for 256 channels, J = 16, T = 3).
- ``paper`` (the paper's figure; widths are our choice): three paths kxk conv (in -> width) + BN + ReLU ->
  1x1 conv (width -> width) + BN + ReLU for k = 3, 5, 7, CONCATENATED and globally average-pooled, plus a
  pooled path global average pool -> 1x1 conv (in -> width) + ReLU; the 4*width vector v -> FC -> T*J.

Both normalise with a softmax over the branch axis, so for every image and joint the T weights are positive
and sum to 1 (the paper's figure does not name the normalisation; the released code uses this softmax).
The ensemble is ``E[:, j] = sum_t a[:, t, j] * H_t[:, j]``: weights constant over space.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from utils.errors import ConfigError

KERNEL_SIZES = (3, 5, 7)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """A same-padding conv (with bias, as released) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def mix(weights: Tensor, heatmaps: list[Tensor]) -> Tensor:
    """``sum_t weights[:, t, j] * heatmaps[t][:, j]`` for weights [B, T, J] and T heatmaps [B, J, H, W]."""
    if weights.shape[1] != len(heatmaps):
        raise ValueError(f"FAU has {weights.shape[1]} branch weights but got {len(heatmaps)} heatmaps")
    stacked = torch.stack(heatmaps, dim=1)
    return (weights[..., None, None] * stacked).sum(dim=1)


class FAU(nn.Module):
    """Base class: subclasses compute branch weights from a feature; ``forward`` mixes the heatmaps."""

    def __init__(self, num_branches: int, num_joints: int) -> None:
        super().__init__()
        self.num_branches = num_branches
        self.num_joints = num_joints

    def logits(self, feature: Tensor) -> Tensor:
        """Unnormalised branch scores [B, T * J] (or [B, T, J])."""
        raise NotImplementedError

    def branch_weights(self, feature: Tensor) -> Tensor:
        """Weights a[b, t, j], softmax-normalised over the branch axis t."""
        logits = self.logits(feature).reshape(-1, self.num_branches, self.num_joints)
        return logits.softmax(dim=1)

    def forward(self, feature: Tensor, heatmaps: list[Tensor]) -> Tensor:
        """The ensemble heatmap of ``heatmaps`` (one per branch) weighted from ``feature``."""
        return mix(self.branch_weights(feature), heatmaps)


class ReleasedFAU(FAU):
    """The released FAU: summed 3/5/7 conv paths -> pool -> Linear(width) -> one Linear(J) head per branch."""

    def __init__(
        self,
        in_channels: int,
        num_branches: int,
        num_joints: int,
        width: int = 64,
        channels: int | None = None,
    ) -> None:
        super().__init__(num_branches, num_joints)
        channels = channels or in_channels
        self.paths = nn.ModuleList(conv_bn_relu(in_channels, channels, k) for k in KERNEL_SIZES)
        self.squeeze = nn.Linear(channels, width)
        self.heads = nn.ModuleList(nn.Linear(width, num_joints) for _ in range(num_branches))

    def logits(self, feature: Tensor) -> Tensor:
        fused = sum(path(feature) for path in self.paths)
        vector = self.squeeze(fused.mean(dim=(2, 3)))
        return torch.stack([head(vector) for head in self.heads], dim=1)


class PaperFAU(FAU):
    """The paper-figure FAU: concatenated 3/5/7 conv->1x1 paths and a pooled 1x1 path -> FC -> T*J."""

    def __init__(self, in_channels: int, num_branches: int, num_joints: int, width: int = 64) -> None:
        super().__init__(num_branches, num_joints)
        self.conv_paths = nn.ModuleList(
            nn.Sequential(conv_bn_relu(in_channels, width, k), conv_bn_relu(width, width, 1))
            for k in KERNEL_SIZES
        )
        self.pool_path = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, width, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(width * (len(KERNEL_SIZES) + 1), num_branches * num_joints)

    def logits(self, feature: Tensor) -> Tensor:
        convs = torch.cat([path(feature) for path in self.conv_paths], dim=1).mean(dim=(2, 3))
        pooled = self.pool_path(feature).flatten(1)
        return self.fc(torch.cat([convs, pooled], dim=1))


def build_fau(
    variant: str,
    *,
    in_channels: int,
    num_branches: int,
    num_joints: int,
    width: int = 64,
    channels: int | None = None,
) -> FAU:
    """The FAU named by a config's ``fau`` key ('released' or 'paper')."""
    if variant == "released":
        return ReleasedFAU(in_channels, num_branches, num_joints, width=width, channels=channels)
    if variant == "paper":
        if channels is not None:
            raise ConfigError("model.fau_channels: only the 'released' FAU has conv paths of that width")
        return PaperFAU(in_channels, num_branches, num_joints, width=width)
    raise ConfigError(f"model.fau: unknown FAU variant {variant!r}; choose 'released' or 'paper'")
