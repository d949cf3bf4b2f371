"""Start-up checks that pair a model section with the data: the joint count and the input size.

Both would otherwise surface mid-epoch as a shape error deep inside the loss; here they are one paragraph
naming the config values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from datasets.codec import HeatmapCodec
from models.output import PoseOutput
from models.registry import MODELS
from utils.errors import ConfigError
from utils.flops import without_batch_norm


def model_section_for(section: Mapping[str, Any], num_joints: int) -> dict[str, Any]:
    """The model section with ``num_joints`` from the dataset's skeleton (the one source of the joint count).

    A section that states another count is refused, naming both numbers.
    """
    section = dict(section)
    if "num_joints" not in MODELS.parameters(section["name"]):
        return section
    given = section.get("num_joints")
    if given is not None and given != num_joints:
        raise ConfigError(
            f"model.num_joints is {given}, but the dataset's skeleton has {num_joints} joints; remove "
            f"model.num_joints (it is taken from the data) or set it to {num_joints}"
        )
    section["num_joints"] = num_joints
    return section


def check_input_size(section: Mapping[str, Any], codec: HeatmapCodec) -> PoseOutput:
    """Refuse an input size the network cannot take, or whose heatmaps are not the codec's heatmap size.

    The network is built on the meta device (no memory, no arithmetic) and run once on an input of the
    configured size; its output (meta tensors: the shapes and the heads it has) is returned for other
    start-up checks (e.g. a loss's of a teacher's mask head).
    """
    width, height = codec.input_size
    with torch.device("meta"):
        model = MODELS.build(section, where="model")
    multiple = model.input_multiple()
    if width % multiple or height % multiple:
        raise ConfigError(
            f"data.input_size {width}x{height}: model '{section['name']}' needs a width and height that are "
            f"multiples of {multiple} (its total down-sampling); e.g. {_round_up(width, multiple)}x"
            f"{_round_up(height, multiple)}"
        )
    # run outside the device context (its per-op hook is slow) and without BatchNorm (shapes only)
    with torch.no_grad():
        try:  # eval mode: a batch of one at a 1x1 resolution is a shape, not a BatchNorm statistics error
            output = without_batch_norm(model).eval()(torch.zeros(1, 3, height, width, device="meta"))
        except RuntimeError as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(
                f"data.input_size {width}x{height}: model '{section['name']}' cannot take this input ({first})"
            ) from None
    out_height, out_width = output.stacks[-1].shape[-2:]
    if (out_width, out_height) != tuple(codec.heatmap_size):
        raise ConfigError(
            f"data.heatmap_size is {list(codec.heatmap_size)} but model '{section['name']}' gives "
            f"{out_width}x{out_height} heatmaps for a {width}x{height} input; set data.heatmap_size: "
            f"[{out_width}, {out_height}]"
        )
    return output


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
