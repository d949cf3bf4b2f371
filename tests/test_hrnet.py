"""HRNet: exact counts and state_dict names of the reference pose_hrnet.py, heatmap shapes, mask heads.

The numbers and names written down here were measured once on the reference code
(leoxiaobin/deep-high-resolution-net.pytorch, lib/models/pose_hrnet.py, built with the W32/W48 yaml's stage
layout); the tests themselves never need that code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from models.registry import build_model
from tools.model_summary import main as summary_main
from tools.model_summary import summarize
from utils.errors import ConfigError
from utils.flops import count_params

TINY = {"name": "hrnet", "width": 4, "stage_modules": [1, 1, 1], "stage_blocks": 1}


def meta_model(section: dict) -> torch.nn.Module:
    """Build a (possibly full-size) model on the meta device: exact counts, no memory, no arithmetic."""
    with torch.device("meta"):
        return build_model(section)


def warmed_eval(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Run one train-mode pass so BN running statistics are not the defaults, then switch to eval."""
    with torch.no_grad():
        model.train()(images)
    return model.eval()


def keypoint_keys(model: torch.nn.Module) -> list[str]:
    return [k for k in model.state_dict() if not k.startswith("mask_layer.")]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny networks are dominated by per-op overhead that extra threads only add to (conftest resets it)."""
    torch.set_num_threads(1)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 48)


@pytest.mark.parametrize(("width", "expected"), [(16, 7_445_889), (32, 28_536_113), (48, 63_595_745)])
def test_parameter_counts_equal_the_reference(width: int, expected: int) -> None:
    assert count_params(meta_model({"name": "hrnet", "width": width})) == expected


def test_w32_parameters_per_top_level_module_and_key_count() -> None:
    model = meta_model({"name": "hrnet"})
    per_module: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        top = name.split(".")[0]
        per_module[top] = per_module.get(top, 0) + parameter.numel()
    assert per_module == {
        "conv1": 1728,
        "bn1": 128,
        "conv2": 36864,
        "bn2": 128,
        "layer1": 286208,
        "transition1": 221376,
        "stage2": 390848,
        "transition2": 73984,
        "stage3": 6821632,
        "transition3": 295424,
        "stage4": 20407232,
        "final_layer": 561,
    }
    assert len(model.state_dict()) == 1754  # the reference's W32 state_dict, num_batches_tracked included


def test_w32_representative_keys_and_shapes() -> None:
    state = meta_model({"name": "hrnet"}).state_dict()
    expected = {
        "conv1.weight": (64, 3, 3, 3),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.3.bn3.num_batches_tracked": (),
        "transition1.0.0.weight": (32, 256, 3, 3),
        "transition1.1.0.0.weight": (64, 256, 3, 3),
        "transition2.2.0.0.weight": (128, 64, 3, 3),
        "transition3.3.0.0.weight": (256, 128, 3, 3),
        "stage2.0.branches.0.0.conv1.weight": (32, 32, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
        "stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
        "stage4.1.fuse_layers.3.0.0.0.weight": (32, 32, 3, 3),
        "stage4.1.fuse_layers.3.0.2.0.weight": (256, 32, 3, 3),
        "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
        "stage4.2.branches.3.3.conv2.weight": (256, 256, 3, 3),
        "final_layer.weight": (17, 32, 1, 1),
        "final_layer.bias": (17,),
    }
    assert {k: tuple(state[k].shape) for k in expected} == expected
    # Branches that keep their width have no transition; the last module fuses to the highest branch only.
    assert not any(k.startswith(("transition2.0", "transition2.1", "transition3.2")) for k in state)
    assert not any(k.startswith("stage4.2.fuse_layers.1") for k in state)
    assert sum(k.startswith("stage4.2.fuse_layers.") for k in state) == 18


# Every module with weights in the reference network for TINY's layout (stage_modules [1, 1, 1],
# stage_blocks 1), in state_dict order; layer1 (4 Bottlenecks, the first with a downsample) is written below.
REFERENCE_TINY_MODULES = [
    "conv1", "bn1", "conv2", "bn2",
    "transition1.0.0", "transition1.0.1", "transition1.1.0.0", "transition1.1.0.1",
    *(f"stage2.0.branches.{b}.0.{m}" for b in range(2) for m in ("conv1", "bn1", "conv2", "bn2")),
    "stage2.0.fuse_layers.0.1.0", "stage2.0.fuse_layers.0.1.1",
    "stage2.0.fuse_layers.1.0.0.0", "stage2.0.fuse_layers.1.0.0.1",
    "transition2.2.0.0", "transition2.2.0.1",
    *(f"stage3.0.branches.{b}.0.{m}" for b in range(3) for m in ("conv1", "bn1", "conv2", "bn2")),
    "stage3.0.fuse_layers.0.1.0", "stage3.0.fuse_layers.0.1.1",
    "stage3.0.fuse_layers.0.2.0", "stage3.0.fuse_layers.0.2.1",
    "stage3.0.fuse_layers.1.0.0.0", "stage3.0.fuse_layers.1.0.0.1",
    "stage3.0.fuse_layers.1.2.0", "stage3.0.fuse_layers.1.2.1",
    "stage3.0.fuse_layers.2.0.0.0", "stage3.0.fuse_layers.2.0.0.1",
    "stage3.0.fuse_layers.2.0.1.0", "stage3.0.fuse_layers.2.0.1.1",
    "stage3.0.fuse_layers.2.1.0.0", "stage3.0.fuse_layers.2.1.0.1",
    "transition3.3.0.0", "transition3.3.0.1",
    *(f"stage4.0.branches.{b}.0.{m}" for b in range(4) for m in ("conv1", "bn1", "conv2", "bn2")),
    "stage4.0.fuse_layers.0.1.0", "stage4.0.fuse_layers.0.1.1",
    "stage4.0.fuse_layers.0.2.0", "stage4.0.fuse_layers.0.2.1",
    "stage4.0.fuse_layers.0.3.0", "stage4.0.fuse_layers.0.3.1",
    "final_layer",
]  # fmt: skip
LAYER1 = [
    f"layer1.{b}.{m}"
    for b in range(4)
    for m in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", *(("downsample.0", "downsample.1") * (b == 0)))
]
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def reference_keys(modules: list[str]) -> list[str]:
    """state_dict keys of the reference: convs have a weight (final_layer also a bias), BNs five entries."""
    keys = []
    for module in modules:
        last = module.rsplit(".", 1)[-1]
        if module == "final_layer":
            keys += ["final_layer.weight", "final_layer.bias"]
        elif last.startswith("bn") or last == "1":
            keys += [f"{module}.{key}" for key in BN_KEYS]
        else:
            assert last.startswith("conv") or last == "0", module
            keys.append(f"{module}.weight")
    return keys


def test_tiny_state_dict_keys_are_the_reference_names_in_order() -> None:
    expected = reference_keys(REFERENCE_TINY_MODULES[:4] + LAYER1 + REFERENCE_TINY_MODULES[4:])
    assert len(expected) == 296  # measured on the reference for this layout
    model = meta_model(TINY)
    assert list(model.state_dict()) == expected
    # A reference-named state_dict loads strictly; with the mask head only mask_layer is missing.
    fresh = build_model(TINY)
    assert not fresh.load_state_dict(build_model(TINY).state_dict(), strict=True).unexpected_keys
    masked = build_model({**TINY, "mask_head": True})
    result = masked.load_state_dict(fresh.state_dict(), strict=False)
    assert result.missing_keys == ["mask_layer.weight", "mask_layer.bias"] and not result.unexpected_keys


def test_bn_momentum_and_reference_init() -> None:
    model = build_model(TINY)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert model.final_layer.weight.std().item() == pytest.approx(0.001, rel=0.2)
    assert torch.equal(model.final_layer.bias, torch.zeros(17))


def test_heatmaps_at_256x192() -> None:
    out = meta_model({"name": "hrnet"})(torch.zeros(2, 3, 256, 192, device="meta"))
    assert out.final.shape == (2, 17, 64, 48) and out.stacks == out.branches and out.mask is None
    torch.manual_seed(0)
    real = build_model({**TINY, "final_conv_kernel": 3}).eval()
    with torch.no_grad():
        assert real(torch.randn(1, 3, 256, 192)).final.shape == (1, 17, 64, 48)


def test_sizes_not_divisible_by_32(images: torch.Tensor) -> None:
    """The fusion upsamples to the target branch's size, so a 100x76 crop (25x19 heatmaps) works."""
    model = build_model(TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 100, 76)).final.shape == (1, 17, 25, 19)


def test_hrnet_mask_head_and_deploy(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = warmed_eval(build_model({**TINY, "num_joints": 5, "mask_head": True}), images)
    assert keypoint_keys(model) == list(build_model({**TINY, "num_joints": 5}).state_dict())
    with torch.no_grad():
        out = model(images)
        assert out.final.shape == (2, 5, 16, 12) and out.mask.shape == (2, 1, 16, 12)
        net, section = model.deploy("branch0")
        assert section == {**model.config_section(), "mask_head": False} and not net.training
        assert net.mask_layer is None and net(images).mask is None
        assert list(net.state_dict()) == keypoint_keys(model)
        assert torch.equal(net(images).final, out.final)
    assert "mask_layer" in model.parts() and "mask_layer" not in net.parts()


def test_summary_of_an_hrnet_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    section = {"name": "hrnet", "width": 48, "mask_head": True}
    summary = summarize(section, 256, 192)
    assert list(summary["parts"]) == [
        "stem",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "final_layer",
        "mask_layer",
    ]
    assert summary["params"] == 63_595_745 + 48 + 1
    assert summary["deploy_params"] == 63_595_745 and summary["deploy_config"]["mask_head"] is False
    assert summary["macs"] - summary["deploy_macs"] == 48 * 64 * 48  # the mask conv1x1 at 64x48
    path = tmp_path / "w16.yaml"
    path.write_text(
        yaml.safe_dump({"model": {"name": "hrnet", "width": 16}, "data": {"input_size": [192, 256]}})
    )
    assert summary_main([str(path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["input_size"] == [256, 192] and printed["params"] == 7_445_889


@pytest.mark.parametrize(
    "section",
    [
        {"name": "hrnet", "width": 0},
        {"name": "hrnet", "widht": 32},
        {"name": "hrnet", "stage_modules": [1, 4]},
        {"name": "hrnet", "stage_modules": 3},
        {"name": "hrnet", "stage_modules": [1, 0, 3]},
        {"name": "hrnet", "stage_blocks": 0},
        {"name": "hrnet", "final_conv_kernel": 5},
        {"name": "hrnet", "mask_head": "yes"},
        {"name": "hourglass", "mask_head": 1},
        {"name": "mobile", "mask_head": "true"},
    ],
)
def test_config_errors(section: dict) -> None:
    with pytest.raises(ConfigError, match=r"^model\."):
        meta_model(section)


HOURGLASS = {"name": "hourglass", "num_stacks": 2, "num_features": 32, "depth": 3}
MOBILE = {"name": "mobile", "deconv_channels": 16}


@pytest.mark.parametrize(("section", "channels"), [(HOURGLASS, 32), (MOBILE, 16)])
def test_student_mask_heads(images: torch.Tensor, section: dict, channels: int) -> None:
    plain = build_model(section)
    full = plain.config_section()
    assert "mask_head" not in full and plain.mask_layer is None  # default off: the section is unchanged
    torch.manual_seed(0)
    model = warmed_eval(build_model({**section, "mask_head": True}), images)
    assert keypoint_keys(model) == list(plain.state_dict())
    assert count_params(model) == count_params(plain) + channels + 1
    assert model.config_section() == {**full, "mask_head": True}
    with torch.no_grad():
        out = model(images)
        assert out.final.shape[:2] == (2, 16) and out.mask.shape == (2, 1, *out.final.shape[-2:])
        net, deployed_section = model.deploy("branch0")
        assert deployed_section == full and net.mask_layer is None
        assert count_params(net) == count_params(plain)
        got = net(images)
        assert got.mask is None and all(torch.equal(a, b) for a, b in zip(got.stacks, out.stacks))
