"""Pre-activation stacked hourglass (Newell et al., the FPD / OKDHP version), built from reusable stacks.

Reads top to bottom like the figure: ``Bottleneck`` -> ``Stem`` -> recursive ``Hourglass`` -> ``Stack``
(hourglass + head) -> ``Reinject`` (between consecutive stacks) -> ``StackPath`` (a run of stacks) ->
``HourglassNet`` (stem + one path). The multi-branch OKDHP network reuses the same parts, which is why a
branch extracted from it is literally a ``HourglassNet``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.output import PoseOutput
from models.registry import MODELS
from models.single import SingleNetwork, check_positive
from utils.errors import ConfigError


class Bottleneck(nn.Module):
    """Pre-activation residual unit BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (2x width) + shortcut."""

    expansion = 2

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + self.shortcut(x)


def residual(in_channels: int, planes: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` Bottlenecks in a row (the first adapts ``in_channels``): one "res" of the hourglass."""
    blocks = [Bottleneck(in_channels, planes)]
    blocks += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class Stem(nn.Sequential):
    """conv7x7/2 + BN + ReLU, Bottleneck, maxpool, two Bottlenecks: F channels at 1/4 resolution."""

    def __init__(self, num_features: int) -> None:
        if num_features % 4:
            raise ConfigError(f"model.num_features: must be divisible by 4, got {num_features}")
        quarter, half = num_features // 4, num_features // 2
        super().__init__(
            nn.Conv2d(3, quarter, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(quarter),
            nn.ReLU(inplace=True),
            Bottleneck(quarter, quarter),
            nn.MaxPool2d(2, stride=2),
            Bottleneck(half, half),
            Bottleneck(num_features, half),
        )


class Hourglass(nn.Module):
    """One recursive level: ``skip(x) + upsample(up(inner(down(maxpool(x)))))``; inner recurses to depth 1."""

    def __init__(self, depth: int, num_features: int, num_blocks: int) -> None:
        super().__init__()
        half = num_features // 2
        self.skip = residual(num_features, half, num_blocks)
        self.down = residual(num_features, half, num_blocks)
        self.inner = (
            Hourglass(depth - 1, num_features, num_blocks)
            if depth > 1
            else residual(num_features, half, num_blocks)
        )
        self.up = residual(num_features, half, num_blocks)

    def forward(self, x: Tensor) -> Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2, stride=2))))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class Stack(nn.Module):
    """One stack: hourglass -> residual -> conv1x1+BN+ReLU feature, and a raw conv1x1 heatmap head."""

    def __init__(self, num_features: int, num_joints: int, num_blocks: int, depth: int) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, num_features, num_blocks)
        self.residual = residual(num_features, num_features // 2, num_blocks)
        self.feature = nn.Sequential(
            nn.Conv2d(num_features, num_features, kernel_size=1),
            nn.BatchNorm2d(num_features),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(num_features, num_joints, kernel_size=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return (feature, heatmap) of this stack."""
        feature = self.feature(self.residual(self.hourglass(x)))
        return feature, self.heatmap(feature)


class Reinject(nn.Module):
    """Re-injection between consecutive stacks: ``x + conv1x1(feature) + conv1x1(heatmap)``."""

    def __init__(self, num_features: int, num_joints: int) -> None:
        super().__init__()
        self.feature = nn.Conv2d(num_features, num_features, kernel_size=1)
        self.heatmap = nn.Conv2d(num_joints, num_features, kernel_size=1)

    def forward(self, x: Tensor, feature: Tensor, heatmap: Tensor) -> Tensor:
        return x + self.feature(feature) + self.heatmap(heatmap)


class StackPath(nn.Module):
    """Consecutive stacks with re-injection between them, and after the last one when it feeds branches."""

    def __init__(
        self,
        num_stacks: int,
        *,
        reinject_last: bool,
        num_features: int,
        num_joints: int,
        num_blocks: int,
        depth: int,
    ) -> None:
        super().__init__()
        self.stacks = nn.ModuleList(
            Stack(num_features, num_joints, num_blocks, depth) for _ in range(num_stacks)
        )
        num_reinjects = num_stacks if reinject_last else max(num_stacks - 1, 0)
        self.reinjects = nn.ModuleList(Reinject(num_features, num_joints) for _ in range(num_reinjects))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Return (the feature stream after the path, every stack's heatmap in order)."""
        x, heatmaps, _ = self.run(x)
        return x, heatmaps

    def run(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor | None]:
        """Return the stream after the path, every stack's heatmap, and the last stack's feature (a mask
        head reads it; None for an empty path)."""
        heatmaps, feature = [], None
        for index, stack in enumerate(self.stacks):
            feature, heatmap = stack(x)
            heatmaps.append(heatmap)
            if index < len(self.reinjects):
                x = self.reinjects[index](x, feature, heatmap)
        return x, heatmaps, feature


@MODELS.register("hourglass")
class HourglassNet(SingleNetwork):
    """Stacked hourglass network: stem + ``num_stacks`` stacks, every stack's heatmap supervised.

    Registered as model ``hourglass``: the keyword arguments are the ``model:`` config keys.
    ``mask_head: true`` adds ``mask_layer``, a conv1x1 on the last stack's feature -> one person-mask logit
    map (``PoseOutput.mask``), a training-only head that ``deploy`` drops.
    """

    name = "hourglass"

    def __init__(
        self,
        *,
        num_joints: int = 16,
        num_stacks: int = 4,
        num_features: int = 256,
        num_blocks: int = 1,
        depth: int = 4,
        mask_head: bool = False,
    ) -> None:
        super().__init__()
        widths = {
            "num_features": num_features,
            "num_joints": num_joints,
            "num_blocks": num_blocks,
            "depth": depth,
        }
        self.config = {"num_stacks": num_stacks, **widths}
        check_positive("hourglass", **self.config)
        self.stem = Stem(num_features)
        self.path = StackPath(num_stacks, reinject_last=False, **widths)
        self.add_mask_head(num_features, mask_head)

    def forward(self, images: Tensor) -> PoseOutput:
        _, heatmaps, feature = self.path.run(self.stem(images))
        return PoseOutput(stacks=heatmaps, branches=[heatmaps[-1]], mask=self.mask_from(feature))

    def input_multiple(self) -> int:
        """Inputs must be multiples of 4: the stem's stride (the hourglass pools and upsamples to the sizes it meets)."""
        return 4

    def body_parts(self) -> dict[str, nn.Module]:
        return {"stem": self.stem, "stacks": self.path}
