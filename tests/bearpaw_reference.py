"""An independent re-implementation of bearpaw/pytorch-pose's ``HourglassNet``, used only as a test reference.

Written from the structure of bearpaw's ``pose/models/hourglass.py`` (read for its facts, not copied), with its
module names, so that ``state_dict()`` has bearpaw's keys: ``conv1``, ``bn1``, ``layer1-3`` (the stem),
per stack ``hg.i.hg.L.j.b`` (L = 0 is the innermost level, j = 0 skip, 1 down, 2 up, 3 the innermost
residual), ``res.i.b``, ``fc.i`` (0 conv, 1 BN), ``score.i``, and between stacks ``fc_.i``, ``score_.i``. Its
file format (``checkpoint.pth.tar`` / ``model_best.pth.tar``) is a dict with ``epoch``, ``arch``,
``state_dict`` (DataParallel's ``module.`` prefix), ``best_acc`` and ``optimizer``.

bearpaw fixes 64 stem channels and 128 ``num_feats`` (256 features) and depth 4; here both are parameters so
that a test can build a small network of the same structure. Nothing of the project is imported.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Bottleneck(nn.Module):
    """Pre-activation residual: (BN, ReLU, conv1x1) -> (BN, ReLU, conv3x3) -> (BN, ReLU, conv1x1 to 2x planes)."""

    expansion = 2

    def __init__(self, inplanes: int, planes: int, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=True)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=True)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=True)
        self.downsample = downsample  # bearpaw: a Sequential holding one conv1x1 (no BN) when widths differ

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def residual(inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """bearpaw's ``_make_residual``: the first block widens (with a conv shortcut) if needed, the others keep."""
    downsample = None
    if inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, kernel_size=1, bias=True)
        )
    layers = [Bottleneck(inplanes, planes, downsample)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Hourglass(nn.Module):
    """``hg[L]`` holds the residuals of level L (0 innermost): skip, down, up, and at level 0 the bottom one."""

    def __init__(self, num_blocks: int, planes: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        width = planes * Bottleneck.expansion
        self.hg = nn.ModuleList(
            nn.ModuleList(residual(width, planes, num_blocks) for _ in range(4 if level == 0 else 3))
            for level in range(depth)
        )

    def level(self, index: int, x: Tensor) -> Tensor:
        skip = self.hg[index][0](x)
        low = self.hg[index][1](F.max_pool2d(x, 2, stride=2))
        low = self.level(index - 1, low) if index > 0 else self.hg[0][3](low)
        low = self.hg[index][2](low)
        return skip + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self.level(self.depth - 1, x)


class HourglassNet(nn.Module):
    """bearpaw's stacked hourglass: returns the list of every stack's heatmaps (raw scores)."""

    def __init__(
        self, num_stacks: int, num_blocks: int, num_classes: int, num_feats: int = 128, depth: int = 4
    ) -> None:
        super().__init__()
        inplanes = num_feats // 2  # bearpaw: 64 for num_feats 128
        width = num_feats * Bottleneck.expansion
        self.num_stacks = num_stacks
        self.conv1 = nn.Conv2d(3, inplanes, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(inplanes)
        # bearpaw passes its running ``self.inplanes`` as the planes of layer1 and layer2: 64 then 128
        self.layer1 = residual(inplanes, inplanes, 1)  # 64 -> 128
        self.layer2 = residual(inplanes * 2, inplanes * 2, 1)  # 128 -> 256
        self.layer3 = residual(width, num_feats, 1)  # 256 -> 256
        self.hg = nn.ModuleList(Hourglass(num_blocks, num_feats, depth) for _ in range(num_stacks))
        self.res = nn.ModuleList(residual(width, num_feats, num_blocks) for _ in range(num_stacks))
        self.fc = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, kernel_size=1, bias=True), nn.BatchNorm2d(width), nn.ReLU())
            for _ in range(num_stacks)
        )
        self.score = nn.ModuleList(nn.Conv2d(width, num_classes, kernel_size=1) for _ in range(num_stacks))
        self.fc_ = nn.ModuleList(nn.Conv2d(width, width, kernel_size=1) for _ in range(num_stacks - 1))
        self.score_ = nn.ModuleList(
            nn.Conv2d(num_classes, width, kernel_size=1) for _ in range(num_stacks - 1)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = F.max_pool2d(x, 2, stride=2)
        x = self.layer3(self.layer2(x))
        out = []
        for i in range(self.num_stacks):
            y = self.fc[i](self.res[i](self.hg[i](x)))
            score = self.score[i](y)
            out.append(score)
            if i < self.num_stacks - 1:
                x = x + self.fc_[i](y) + self.score_[i](score)
        return out


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, BN affine parameters and running statistics included (as after training)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(module.running_mean.shape, generator=generator))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.num_batches_tracked.fill_(1000)
    return model.eval()


def save_bearpaw_checkpoint(model: HourglassNet, path: Path, arch: str = "hg") -> Path:
    """bearpaw's ``save_checkpoint`` dict, the network wrapped in DataParallel (``module.`` keys)."""
    state = {f"module.{key}": value.clone() for key, value in model.state_dict().items()}
    torch.save(
        {"epoch": 150, "arch": arch, "state_dict": state, "best_acc": 0.8695, "optimizer": {"state": {}}},
        path,
    )
    return path
