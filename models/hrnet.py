"""HRNet for pose estimation (Sun et al., CVPR 2019), with the module names of the reference ``pose_hrnet.py``.

Reads top to bottom like the paper's figure: ``BasicBlock`` / ``Bottleneck`` -> ``Transition`` (adds one
lower-resolution branch) -> ``HighResolutionModule`` (parallel branches of BasicBlocks, then fusion: every
output resolution sums every branch, upsampled by conv1x1 + BN + nearest or downsampled by strided conv3x3s)
-> ``HRNet`` (stem, layer1, transition1..3 with stage2..4, final_layer on the highest-resolution branch).

Parameter and buffer names are exactly those of leoxiaobin/deep-high-resolution-net.pytorch, so its published
state_dicts (``pose_hrnet_w32_256x192.pth``, ...) load with ``load_state_dict(strict=True)``; an optional
``mask_layer`` lives under a name the reference does not use. Where the reference stores ``None`` (a branch
that keeps its input, the diagonal of the fusion) this file uses ``nn.Identity``, and the fusion upsamples to
the size of the target branch, which is the reference's ``scale_factor`` result whenever that one works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from models.output import PoseModel, PoseOutput
from models.registry import MODELS
from models.single import check_bool, check_positive
from utils.errors import ConfigError

BN_MOMENTUM = 0.1  # the reference's value, in PyTorch's convention (PyTorch's default)


def conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, relu: bool = True
) -> nn.Sequential:
    """conv (no bias) + BN (+ ReLU): the unit of transitions and fusion downsampling."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU -> conv3x3-BN, plus the identity, then ReLU: the block of every HRNet branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class Bottleneck(nn.Module):
    """conv1x1 -> conv3x3 -> conv1x1 (4x planes), each with BN, plus a projected shortcut when widths differ."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Identity()
            if in_channels == out_channels
            else conv_bn(in_channels, out_channels, 1, relu=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.downsample(x))


class Transition(nn.ModuleList):
    """Between stages: every existing branch kept (or re-widened by conv3x3 + BN + ReLU), plus one new branch
    at half the lowest resolution, made from the lowest-resolution branch by a stride-2 conv3x3 + BN + ReLU."""

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int]) -> None:
        kept = [
            nn.Identity() if old == new else conv_bn(old, new, 3) for old, new in zip(in_widths, out_widths)
        ]
        added = nn.Sequential(conv_bn(in_widths[-1], out_widths[-1], 3, stride=2))
        super().__init__([*kept, added])

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        *kept, added = self
        return [layer(x) for layer, x in zip(kept, features)] + [added(features[-1])]


def fuse_path(widths: Sequence[int], source: int, target: int) -> nn.Module:
    """How branch ``source`` reaches the resolution of ``target`` before the sum: identity on the diagonal,
    conv1x1 + BN (then nearest upsampling) from a lower resolution, a chain of stride-2 conv3x3 + BN from a
    higher one (ReLU after all but the last, which also changes the width)."""
    if source == target:
        return nn.Identity()
    if source > target:
        return conv_bn(widths[source], widths[target], 1, relu=False)
    halvings = target - source
    steps = [
        conv_bn(widths[source], widths[source], 3, 2)
        if k < halvings - 1
        else conv_bn(widths[source], widths[target], 3, 2, relu=False)
        for k in range(halvings)
    ]
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """Parallel branches (``num_blocks`` BasicBlocks each), then a fusion per output resolution: ReLU of the
    sum of every branch brought to that resolution. ``multi_scale_output=False`` fuses the highest only."""

    def __init__(self, widths: Sequence[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width) for _ in range(num_blocks))) for width in widths
        )
        outputs = len(widths) if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(fuse_path(widths, j, i) for j in range(len(widths))) for i in range(outputs)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        features = [branch(x) for branch, x in zip(self.branches, features)]
        fused = []
        for i, paths in enumerate(self.fuse_layers):
            size = features[i].shape[-2:]
            total = 0
            for j, (path, x) in enumerate(zip(paths, features)):
                y = path(x)
                total = total + (F.interpolate(y, size=size, mode="nearest") if j > i else y)
            fused.append(self.relu(total))
        return fused


def stage(
    widths: Sequence[int], num_modules: int, num_blocks: int, multi_scale_output: bool
) -> nn.Sequential:
    """``num_modules`` HighResolutionModules; only the last may drop the lower-resolution outputs."""
    return nn.Sequential(
        *(
            HighResolutionModule(widths, num_blocks, multi_scale_output or k < num_modules - 1)
            for k in range(num_modules)
        )
    )


@MODELS.register("hrnet")
class HRNet(PoseModel):
    """HRNet-W``width``: stride-4 stem, layer1, stages 2-4 with 2/3/4 branches, heatmaps from branch 0.

    Registered as model ``hrnet``: the keyword arguments are the ``model:`` config keys. Defaults are
    HRNet-W32 for 17 COCO joints (28,536,113 parameters); ``width: 48`` is W48, ``width: 16`` the W16 student.
    Branch widths are ``width * [1, 2, 4, 8]``. Weights start as the reference's ``init_weights`` without a
    pretrained file: convs normal(std 0.001) with zero bias, BN weight 1 and bias 0.
    ``mask_head: true`` adds ``mask_layer``, a conv1x1 on branch 0's final feature -> one person-mask logit map
    at heatmap resolution (``PoseOutput.mask``); ``deploy`` drops it unless ``deploy_mask_head: true`` (a mask
    teacher such as ODKD's senior teacher, whose ``deploy.pth`` must keep the mask it teaches).
    ``freeze_keypoints: true`` trains the mask head alone: every other weight has ``requires_grad`` off and
    its BatchNorms stay in eval mode (how a published HRNet checkpoint gets a mask head without changing its
    heatmaps).
    """

    def __init__(
        self,
        *,
        num_joints: int = 17,
        width: int = 32,
        stage_modules: Sequence[int] = (1, 4, 3),
        stage_blocks: int = 4,
        final_conv_kernel: int = 1,
        mask_head: bool = False,
        deploy_mask_head: bool = False,
        freeze_keypoints: bool = False,
    ) -> None:
        super().__init__()
        check_positive("hrnet", num_joints=num_joints, width=width, stage_blocks=stage_blocks)
        if not isinstance(stage_modules, list | tuple) or len(stage_modules) != 3:
            raise ConfigError(
                f"model.stage_modules: hrnet needs 3 module counts (stages 2-4), got {stage_modules!r}"
            )
        check_positive("hrnet", **{f"stage_modules[{i}]": n for i, n in enumerate(stage_modules)})
        if type(final_conv_kernel) is not int or final_conv_kernel not in (1, 3):
            raise ConfigError(f"model.final_conv_kernel: hrnet supports 1 or 3, got {final_conv_kernel!r}")
        check_bool(
            "hrnet", mask_head=mask_head, deploy_mask_head=deploy_mask_head, freeze_keypoints=freeze_keypoints
        )
        for key, value in (("deploy_mask_head", deploy_mask_head), ("freeze_keypoints", freeze_keypoints)):
            if value and not mask_head:
                raise ConfigError(f"model.{key}: hrnet needs mask_head: true for {key}: true")
        self.config = {
            "num_joints": num_joints,
            "width": width,
            "stage_modules": list(stage_modules),
            "stage_blocks": stage_blocks,
            "final_conv_kernel": final_conv_kernel,
            "mask_head": mask_head,
        }
        # Written into the section only when on, so that the sections of existing networks stay as they were.
        self.options = {
            key: True
            for key, value in (("deploy_mask_head", deploy_mask_head), ("freeze_keypoints", freeze_keypoints))
            if value
        }
        widths = [width * 2**i for i in range(4)]

        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *(Bottleneck(256, 64) for _ in range(3)))

        self.transition1 = Transition([256], widths[:2])
        self.stage2 = stage(widths[:2], stage_modules[0], stage_blocks, multi_scale_output=True)
        self.transition2 = Transition(widths[:2], widths[:3])
        self.stage3 = stage(widths[:3], stage_modules[1], stage_blocks, multi_scale_output=True)
        self.transition3 = Transition(widths[:3], widths)
        self.stage4 = stage(widths, stage_modules[2], stage_blocks, multi_scale_output=False)

        padding = final_conv_kernel // 2
        self.final_layer = nn.Conv2d(width, num_joints, final_conv_kernel, padding=padding)
        self.mask_layer = nn.Conv2d(width, 1, 1) if mask_head else None
        self.init_weights()
        if freeze_keypoints:
            for name, parameter in self.named_parameters():
                parameter.requires_grad_(name.startswith("mask_layer."))

    def init_weights(self) -> None:
        """The reference's initialisation without a pretrained file: convs N(0, 0.001), zero biases, BN 1/0.

        A network built on the meta device (shapes only, for counting) has no values to draw: skipped there.
        """
        if self.conv1.weight.is_meta:
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> PoseOutput:
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        features = self.stage2(self.transition1([x]))
        features = self.stage3(self.transition2(features))
        highest = self.stage4(self.transition3(features))[0]
        heatmap = self.final_layer(highest)
        mask = self.mask_layer(highest) if self.mask_layer is not None else None
        return PoseOutput(stacks=[heatmap], branches=[heatmap], mask=mask)

    def train(self, mode: bool = True) -> HRNet:
        """Train / eval mode; with ``freeze_keypoints`` everything but the mask head stays in eval mode."""
        super().train(mode)
        if "freeze_keypoints" in self.options:
            for name, child in self.named_children():
                if name != "mask_layer":
                    child.eval()
        return self

    def input_multiple(self) -> int:
        """Inputs must be multiples of 4: the stem's stride (the fuse layers upsample to the sizes they meet)."""
        return 4

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part tables; stage k (k >= 2) includes the transition that feeds it."""
        parts: dict[str, nn.Module] = {
            "stem": nn.ModuleList([self.conv1, self.bn1, self.conv2, self.bn2]),
            "stage1": self.layer1,
            "stage2": nn.ModuleList([self.transition1, self.stage2]),
            "stage3": nn.ModuleList([self.transition2, self.stage3]),
            "stage4": nn.ModuleList([self.transition3, self.stage4]),
            "final_layer": self.final_layer,
        }
        if self.mask_layer is not None:
            parts["mask_layer"] = self.mask_layer
        return parts

    def config_section(self) -> dict[str, Any]:
        """The ``model:`` config section that rebuilds this network with ``build_model``."""
        section = {"name": "hrnet", **self.config, "stage_modules": list(self.config["stage_modules"])}
        return {**section, **self.options}

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        """The same network without the training-only mask head (kept with ``deploy_mask_head``), unfrozen."""
        self.check_head(head)
        section = {**self.config_section(), "mask_head": "deploy_mask_head" in self.options}
        section.pop("freeze_keypoints", None)
        return section
