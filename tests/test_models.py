"""Models: exact parameter / MAC counts (SPEC A), output order, FAU, branch extraction, one training step."""

from __future__ import annotations

import pytest
import torch

from losses.okdhp import OKDHPLoss
from models.fau import ReleasedFAU
from models.hourglass import HourglassNet
from models.mobile import MobilePoseNet
from models.output import PoseOutput
from models.registry import MODELS, build_model
from utils.errors import ConfigError
from utils.flops import count_params, layer_macs, part_counts

SMALL = {"num_features": 32, "depth": 3}  # tiny widths for fast CPU forward passes on 64x64 inputs


def meta_model(section: dict) -> torch.nn.Module:
    """Build a (possibly full-size) model on the meta device: exact counts, no memory, no arithmetic."""
    with torch.device("meta"):
        return build_model(section)


def meta_macs(model: torch.nn.Module, size: int = 256) -> int:
    return sum(layer_macs(model, torch.zeros(1, 3, size, size, device="meta")).values())


def warmed_eval(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Run one train-mode pass so BN running statistics are not the defaults, then switch to eval."""
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny networks are dominated by per-op overhead that extra threads only add to (conftest resets it)."""
    torch.set_num_threads(1)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 64)


def test_registered_names() -> None:
    build_model({"name": "hourglass", **SMALL, "num_stacks": 1})
    assert {"hourglass", "okdhp_hourglass", "mobile", "okdhp_mobile"} <= set(MODELS.names())


@pytest.mark.parametrize(
    ("num_stacks", "num_features", "expected"),
    [(4, 256, 13_018_816), (2, 256, 6_730_912), (8, 256, 25_594_624), (4, 128, 3_287_936)],
)
def test_hourglass_parameter_counts(num_stacks: int, num_features: int, expected: int) -> None:
    model = meta_model({"name": "hourglass", "num_stacks": num_stacks, "num_features": num_features})
    assert count_params(model) == expected


def test_balanced_okdhp_parameter_counts_per_part() -> None:
    model = meta_model({"name": "okdhp_hourglass", "shared_stacks": 2, "branch_stacks": [2, 2, 2]})
    assert count_params(model) == 30_915_696
    parts = {name: count_params(part) for name, part in model.parts().items()}
    assert parts == {
        "stem": 513_152,
        "shared_stacks": 6_287_904,
        "branch0": 6_217_760,
        "branch1": 6_217_760,
        "branch2": 6_217_760,
        "fau": 5_461_360,
    }


def test_released_fau_alone_parameter_count() -> None:
    assert count_params(ReleasedFAU(in_channels=256, num_branches=3, num_joints=16)) == 5_461_360


def test_conv_macs_at_256() -> None:
    hourglass = meta_model({"name": "hourglass", "num_stacks": 4})
    okdhp = meta_model({"name": "okdhp_hourglass"})
    assert meta_macs(hourglass) == pytest.approx(15.357e9, rel=0.005)
    assert meta_macs(okdhp) == pytest.approx(49.804e9, rel=0.005)
    fau_macs = part_counts(okdhp, okdhp.parts(), torch.zeros(1, 3, 256, 256, device="meta"))["fau"]["macs"]
    assert fau_macs == pytest.approx(22.28e9, rel=0.005)


def test_hourglass_forward_output(images: torch.Tensor) -> None:
    model = build_model({"name": "hourglass", "num_joints": 17, "num_stacks": 3, "num_blocks": 2, **SMALL})
    out = model(images)
    assert isinstance(out, PoseOutput)
    assert len(out.stacks) == 3 and out.ensemble is None
    assert out.branches[0] is out.stacks[-1]
    assert all(h.shape == (2, 17, 16, 16) for h in out.stacks)
    assert len(model.path.reinjects) == 2  # between consecutive stacks only


def test_okdhp_output_order_and_shapes(images: torch.Tensor) -> None:
    model = build_model({"name": "okdhp_hourglass", "branch_stacks": [1, 2, 3], **SMALL})
    out = model(images)
    assert len(out.stacks) == 2 + 1 + 2 + 3
    assert out.branches[0] is out.stacks[2] and out.branches[1] is out.stacks[4]
    assert out.branches[2] is out.stacks[7]
    assert out.ensemble.shape == (2, 16, 16, 16)
    assert [len(b.reinjects) for b in model.branches] == [0, 1, 2]
    assert len(model.shared.reinjects) == 2  # the last shared stack re-injects into every branch


def test_extract_branch_equals_branch_outputs(images: torch.Tensor) -> None:
    model = warmed_eval(build_model({"name": "okdhp_hourglass", **SMALL}), images)
    baseline_params = count_params(build_model({"name": "hourglass", "num_stacks": 4, **SMALL}))
    with torch.no_grad():
        out = model(images)
        for index in range(3):
            net = model.deploy(f"branch{index}")[0]
            assert isinstance(net, HourglassNet) and not net.training
            assert count_params(net) == baseline_params
            expected = out.stacks[:2] + out.stacks[2 + 2 * index : 4 + 2 * index]
            got = net(images).stacks
            assert len(got) == 4
            assert max((a - b).abs().max().item() for a, b in zip(got, expected)) == 0.0


def test_extract_is_a_deep_copy(images: torch.Tensor) -> None:
    model = build_model({"name": "okdhp_hourglass", **SMALL})
    net = model.deploy("branch0")[0]
    with torch.no_grad():
        model.stem[0].weight.add_(1.0)
    assert not torch.equal(net.stem[0].weight, model.stem[0].weight)


def test_extract_full_size_matches_baseline_and_config() -> None:
    balanced = meta_model({"name": "okdhp_hourglass"})
    deployed = balanced.deploy("branch1")[0]
    assert count_params(deployed) == 13_018_816
    assert balanced.deploy_section("branch1") == deployed.config_section()
    assert count_params(meta_model(balanced.deploy_section("branch1"))) == 13_018_816
    unbalanced = meta_model({"name": "okdhp_hourglass", "branch_stacks": [2, 4, 6]})
    assert count_params(unbalanced.deploy("branch0")[0]) == 13_018_816
    assert unbalanced.deploy_section("branch2")["num_stacks"] == 8
    assert count_params(unbalanced.deploy("branch2")[0]) == 25_594_624
    with pytest.raises(ValueError, match="deployable heads: branch0, branch1, branch2"):
        unbalanced.deploy("branch3")


def test_unbalanced_forward_backward_and_extract(images: torch.Tensor) -> None:
    model = build_model({"name": "okdhp_hourglass", "branch_stacks": [2, 4, 6], **SMALL})
    out = model(images)
    assert len(out.stacks) == 2 + 2 + 4 + 6
    target = torch.rand_like(out.branches[0])
    terms = OKDHPLoss()(out, {"target": target, "target_weight": torch.ones(2, 16, 1)}, epoch=3)
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())
    warmed_eval(model, images)
    net = model.deploy("branch0")[0]
    assert net.config_section()["num_stacks"] == 4 and len(net.path.stacks) == 4
    with torch.no_grad():
        expected = model(images).stacks[:4]
        assert all(torch.equal(a, b) for a, b in zip(net(images).stacks, expected))


def test_released_indices_ensemble_the_last_stacks(images: torch.Tensor) -> None:
    model = warmed_eval(build_model({"name": "okdhp_hourglass", "released_indices": True, **SMALL}), images)
    with torch.no_grad():
        out = model(images)
        weights = model.fau.branch_weights(model.stem(images))
    # [s0, s1, b0s0, b0s1, b1s0, b1s1, b2s0, b2s1]: branch-1 final, branch-2 intermediate, branch-2 final
    assert out.stacks[-3] is out.branches[1] and out.stacks[-1] is out.branches[2]
    mixed = [out.stacks[5], out.stacks[6], out.stacks[7]]
    assert list(out.heads()) == ["branch1", "branch2_stack0", "branch2", "ensemble"]
    assert all(a is b for a, b in zip(list(out.heads().values())[:3], mixed))
    expected = sum(weights[:, t, :, None, None] * mixed[t] for t in range(3))
    torch.testing.assert_close(out.ensemble, expected)
    assert len(out.branches) == 3 and out.branches[0] is out.stacks[3]  # branches stay the true finals


def test_default_ensemble_mixes_branch_finals(images: torch.Tensor) -> None:
    model = warmed_eval(build_model({"name": "okdhp_hourglass", **SMALL}), images)
    with torch.no_grad():
        out = model(images)
        weights = model.fau.branch_weights(model.stem(images))
    assert all(a is b for a, b in zip(list(out.heads().values())[:3], out.branches))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 16))
    expected = sum(weights[:, t, :, None, None] * out.branches[t] for t in range(3))
    torch.testing.assert_close(out.ensemble, expected)


def test_paper_fau_trains(images: torch.Tensor) -> None:
    model = build_model({"name": "okdhp_hourglass", "fau": "paper", "fau_width": 8, **SMALL})
    out = model(images)
    weights = model.fau.branch_weights(model.stem(images))
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 16))
    out.ensemble.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fau.parameters())


def test_nothing_hard_coded_to_16_joints_or_3_branches(images: torch.Tensor) -> None:
    section = {"name": "okdhp_hourglass", "num_joints": 17, "shared_stacks": 0, "branch_stacks": [1, 3]}
    model = warmed_eval(build_model({**section, **SMALL}), images)
    with torch.no_grad():
        out = model(images)
        assert out.ensemble.shape == (2, 17, 16, 16) and len(out.stacks) == 4
        net = model.deploy("branch1")[0]
        assert all(torch.equal(a, b) for a, b in zip(net(images).stacks, out.stacks[1:]))


@pytest.mark.parametrize(
    "section",
    [
        {"name": "hourglass", "num_stack": 4},
        {"name": "hourglass", "num_features": 30},
        {"name": "hourglass", "num_stacks": 0},
        {"name": "okdhp_hourglass", "branch_stacks": []},
        {"name": "okdhp_hourglass", "shared_stacks": -1},
        {"name": "okdhp_hourglass", "fau": "mystery"},
        {"name": "okdhp_hourglass", "fau": "paper", "fau_channels": 8},
        {"name": "mobile", "backbone": "resnet19"},
    ],
)
def test_config_errors(section: dict) -> None:
    with pytest.raises(ConfigError):
        meta_model(section)


def test_adam_steps_lower_the_okdhp_loss(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = build_model(
        {"name": "okdhp_hourglass", "shared_stacks": 1, "branch_stacks": [1, 1, 1], **SMALL}
    ).train()
    loss_fn = OKDHPLoss()
    target = torch.rand(2, 16, 16, 16)
    target_weight = torch.ones(2, 16, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        total = loss_fn(model(images), {"target": target, "target_weight": target_weight}, epoch=10)["total"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("backbone", "channels"), [("resnet18", 512), ("mobilenet_v2", 1280)])
def test_mobile_baseline_stride_4(images: torch.Tensor, backbone: str, channels: int) -> None:
    model = build_model({"name": "mobile", "backbone": backbone, "deconv_channels": 16})
    out = model(images)
    assert out.stacks[0].shape == (2, 16, 16, 16) and out.ensemble is None
    assert model.decoder[0].in_channels == channels


def test_mobile_shufflenet_full_size_heatmaps() -> None:
    model = meta_model({"name": "mobile", "backbone": "shufflenet_v2_x1_0", "num_joints": 17})
    out = model(torch.zeros(1, 3, 256, 192, device="meta"))
    assert out.final.shape == (1, 17, 64, 48)


def test_okdhp_mobile_extract_and_fau_on_encoder(images: torch.Tensor) -> None:
    section = {"name": "okdhp_mobile", "deconv_channels": 16, "fau_channels": 16, "num_branches": 2}
    model = warmed_eval(build_model(section), images)
    assert model.fau.paths[0][0].in_channels == 512  # the encoder's channels
    with torch.no_grad():
        out = model(images)
        assert len(out.stacks) == 2 and out.ensemble.shape == (2, 16, 16, 16)
        net = model.deploy("branch1")[0]
        assert isinstance(net, MobilePoseNet)
        assert torch.equal(net(images).final, out.branches[1])
    baseline = build_model({"name": "mobile", "deconv_channels": 16})
    assert count_params(net) == count_params(baseline)
    assert model.deploy_section("branch1") == baseline.config_section()


def test_okdhp_mobile_released_fau_reads_encoder_width() -> None:
    model = meta_model({"name": "okdhp_mobile", "backbone": "shufflenet_v2_x1_0"})
    assert model.fau.paths[0][0].in_channels == model.fau.paths[0][0].out_channels == 1024
    assert len(model.decoders) == 3
