"""MobilePose-style networks: a torchvision encoder (stride 32) and SimpleBaseline deconvolution decoder(s).

``mobile`` is the single-decoder baseline. ``okdhp_mobile`` shares one encoder between ``num_branches``
full decoders (the branches) and mixes their heatmaps with the FAU applied on the encoder feature; a branch
extracted from it is literally a ``mobile`` network. Encoders are built with ``weights=None`` (never
downloaded) and PyTorch's default initialisation, like the rest of the project.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from models.fau import build_fau
from models.okdhp import transplant
from models.output import PoseModel, PoseOutput, build_like
from models.registry import MODELS
from models.single import SingleNetwork, check_positive
from utils.errors import ConfigError, closest


def _resnet18(zoo: ModuleType) -> tuple[nn.Module, int]:
    net = zoo.resnet18(weights=None)
    layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
    return nn.Sequential(*layers), net.fc.in_features


def _mobilenet_v2(zoo: ModuleType) -> tuple[nn.Module, int]:
    net = zoo.mobilenet_v2(weights=None)
    return net.features, net.last_channel


def _shufflenet_v2_x1_0(zoo: ModuleType) -> tuple[nn.Module, int]:
    net = zoo.shufflenet_v2_x1_0(weights=None)
    layers = [net.conv1, net.maxpool, net.stage2, net.stage3, net.stage4, net.conv5]
    return nn.Sequential(*layers), net.fc.in_features


ENCODERS: dict[str, Callable[[ModuleType], tuple[nn.Module, int]]] = {
    "resnet18": _resnet18,
    "mobilenet_v2": _mobilenet_v2,
    "shufflenet_v2_x1_0": _shufflenet_v2_x1_0,
}


def build_encoder(backbone: str) -> tuple[nn.Module, int]:
    """A torchvision backbone truncated to its last (stride 32) feature map, and that map's channels."""
    if backbone not in ENCODERS:
        raise ConfigError(
            f"model.backbone: unknown backbone {backbone!r}{closest(backbone, ENCODERS)}; "
            f"available: {', '.join(ENCODERS)}"
        )
    import torchvision.models  # imported here: it costs ~2 s and only these models need it

    return ENCODERS[backbone](torchvision.models)


class DeconvDecoder(nn.Sequential):
    """SimpleBaseline head: 3 x (deconv 4x4 stride 2 + BN + ReLU) then conv1x1 to J: stride 32 -> stride 4."""

    def __init__(self, in_channels: int, num_joints: int, channels: int = 256, num_layers: int = 3) -> None:
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            layers += [
                nn.ConvTranspose2d(in_channels, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = channels
        layers.append(nn.Conv2d(channels, num_joints, kernel_size=1))
        super().__init__(*layers)

    def feature(self, x: Tensor) -> Tensor:
        """The last deconv block's output, i.e. the input of the joint conv (a mask head reads it)."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x


@MODELS.register("mobile")
class MobilePoseNet(SingleNetwork):
    """Single-decoder baseline: encoder -> deconv decoder -> heatmaps at stride 4.

    Registered as model ``mobile``: the keyword arguments are the ``model:`` config keys.
    ``mask_head: true`` adds ``mask_layer``, a conv1x1 on the decoder's last feature (the input of its joint
    conv) -> one person-mask logit map (``PoseOutput.mask``), a training-only head that ``deploy`` drops.
    """

    name = "mobile"

    def __init__(
        self,
        *,
        num_joints: int = 16,
        backbone: str = "resnet18",
        deconv_channels: int = 256,
        mask_head: bool = False,
    ) -> None:
        super().__init__()
        check_positive("mobile", num_joints=num_joints, deconv_channels=deconv_channels)
        self.config = {"num_joints": num_joints, "backbone": backbone, "deconv_channels": deconv_channels}
        self.encoder, channels = build_encoder(backbone)
        self.decoder = DeconvDecoder(channels, num_joints, deconv_channels)
        self.add_mask_head(deconv_channels, mask_head)

    def forward(self, images: Tensor) -> PoseOutput:
        feature = self.decoder.feature(self.encoder(images))
        heatmap = self.decoder[-1](feature)
        return PoseOutput(stacks=[heatmap], branches=[heatmap], mask=self.mask_from(feature))

    def input_multiple(self) -> int:
        """Inputs must be multiples of 32: the encoder's stride, undone exactly by three stride-2 deconvolutions."""
        return 32

    def body_parts(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder}


@MODELS.register("okdhp_mobile")
class OKDHPMobile(PoseModel):
    """One shared encoder, ``num_branches`` full decoders as branches, FAU on the encoder feature.

    Registered as model ``okdhp_mobile``: the keyword arguments are the ``model:`` config keys.
    ``fau_channels`` None gives the FAU's conv paths the encoder's width, as in the released FAU.
    """

    def __init__(
        self,
        *,
        num_joints: int = 16,
        backbone: str = "resnet18",
        deconv_channels: int = 256,
        num_branches: int = 3,
        fau: str = "released",
        fau_width: int = 64,
        fau_channels: int | None = None,
    ) -> None:
        super().__init__()
        optional = {} if fau_channels is None else {"fau_channels": fau_channels}
        check_positive("okdhp_mobile", num_branches=num_branches, fau_width=fau_width, **optional)
        self.fau_config = {"fau": fau, "fau_width": fau_width, "fau_channels": fau_channels}
        self.branch_config = {
            "num_joints": num_joints,
            "backbone": backbone,
            "deconv_channels": deconv_channels,
        }
        check_positive("okdhp_mobile", num_joints=num_joints, deconv_channels=deconv_channels)
        self.encoder, channels = build_encoder(backbone)
        self.decoders = nn.ModuleList(
            DeconvDecoder(channels, num_joints, deconv_channels) for _ in range(num_branches)
        )
        self.fau = build_fau(
            fau,
            in_channels=channels,
            num_branches=num_branches,
            num_joints=num_joints,
            width=fau_width,
            channels=fau_channels,
        )

    def forward(self, images: Tensor) -> PoseOutput:
        feature = self.encoder(images)
        heatmaps = [decoder(feature) for decoder in self.decoders]
        return PoseOutput(stacks=heatmaps, branches=list(heatmaps), ensemble=self.fau(feature, heatmaps))

    def ensemble_weights(self, images: Tensor) -> Tensor:
        """The FAU's weights (N, T, J): it reads the encoder's feature."""
        return self.fau.branch_weights(self.encoder(images))

    def input_multiple(self) -> int:
        """Inputs must be multiples of 32: the encoder's stride, undone exactly by three stride-2 deconvolutions."""
        return 32

    def parts(self) -> dict[str, nn.Module]:
        """Named parts for per-part parameter / MAC tables."""
        parts: dict[str, nn.Module] = {"encoder": self.encoder}
        parts.update({f"branch{i}": decoder for i, decoder in enumerate(self.decoders)})
        parts["fau"] = self.fau
        return parts

    def config_section(self) -> dict[str, Any]:
        """The ``model:`` config section that rebuilds this multi-decoder network."""
        return {
            "name": "okdhp_mobile",
            **self.branch_config,
            "num_branches": len(self.decoders),
            **self.fau_config,
        }

    def deployable_heads(self) -> list[str]:
        """One head per decoder: ``branch0``, ``branch1``, ..."""
        return [f"branch{b}" for b in range(len(self.decoders))]

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        """The ``mobile`` section of one branch (encoder + one decoder)."""
        self.check_head(head)
        return {"name": "mobile", **self.branch_config}

    def deploy(self, head: str = "branch0") -> tuple[MobilePoseNet, dict[str, Any]]:
        """Encoder + the decoder of ``head`` as a standalone ``mobile`` network with copied weights."""
        section = self.deploy_section(head)
        net = build_like(section, self)
        decoder = self.decoders[self.deployable_heads().index(head)]
        return transplant([(net.encoder, self.encoder), (net.decoder, decoder)], net, like=self), section
