"""Published HRNet pose checkpoints (leoxiaobin/deep-high-resolution-net.pytorch) -> this project's ``hrnet``.

Their files (``pose_hrnet_w32_256x192.pth``, ``pose_hrnet_w48_256x192.pth``, ...) are plain state_dicts with the
reference ``pose_hrnet.py`` names, which ``models/hrnet.py`` keeps: a network without a mask head loads them
as they are (e.g. as an ODKD teacher with ``teachers.<name>.model``). A network WITH a mask head (ODKD's
senior teacher) has two weights the file lacks, ``mask_layer.weight`` and ``.bias``: ``--from hrnet`` copies
every other tensor by name, leaves those at the network's initialisation, reports them, and writes a
checkpoint of this project that ``train.init_from`` loads strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from engine.convert.fill import fill_model
from utils.checkpoint import strip_prefixes
from utils.errors import CheckpointError

INIT_ONLY_PREFIXES = ("mask_layer.",)  # weights a published HRNet file never has: left at initialisation


def hrnet_architecture(state: Mapping[str, Tensor], source_name: str = "the file") -> dict[str, int]:
    """Width and joint count of a reference-named HRNet state_dict, read from two tensors' shapes."""
    first_branch = state.get("transition1.0.0.weight")
    heatmaps = state.get("final_layer.weight")
    if first_branch is None or heatmaps is None or first_branch.dim() != 4 or heatmaps.dim() != 4:
        sample = ", ".join(list(state)[:4]) or "no keys at all"
        raise CheckpointError(
            f"{source_name} does not look like an HRNet pose checkpoint of deep-high-resolution-net.pytorch "
            f"(no transition1.0.0.weight / final_layer.weight convs; its first keys: {sample})"
        )
    return {"width": int(first_branch.shape[0]), "num_joints": int(heatmaps.shape[0])}


def convert_hrnet_state_dict(
    source_state: Mapping[str, Tensor], model: nn.Module, source_name: str = "the file"
) -> tuple[dict[str, Tensor], list[str]]:
    """Fill ``model`` (an ``hrnet``) from a published HRNet state_dict; returns (state_dict, keys left at init).

    Every weight of the model must come from the file under the same name and shape, except the mask head's,
    which keep the model's initial values; a tensor of the file that the model does not have is an error.
    """

    section = model.config_section() if hasattr(model, "config_section") else {}
    if section.get("name") != "hrnet":
        raise CheckpointError(
            f"--from hrnet fills an hrnet model; the config builds '{section.get('name', type(model).__name__)}'"
        )
    state = strip_prefixes(source_state, source_name)
    found = hrnet_architecture(state, source_name)
    wanted = {"width": section["width"], "num_joints": section["num_joints"]}
    if found != wanted:
        raise CheckpointError(
            f"{source_name} is an HRNet-W{found['width']} for {found['num_joints']} joints; the config builds "
            f"HRNet-W{wanted['width']} for {wanted['num_joints']} joints: set model.width: {found['width']} "
            "and use a dataset with that many joints"
        )
    own = model.state_dict()
    left_at_init = [k for k in own if k not in state and k.startswith(INIT_ONLY_PREFIXES)]
    converted = fill_model(
        model,
        state,
        problem=f"{source_name} looks like HRNet-W{found['width']}, but does not fit the model's layout (check "
        "model.stage_modules, stage_blocks and final_conv_kernel)",
        left_at_init=left_at_init,
    )
    return converted, left_at_init
