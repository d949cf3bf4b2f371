"""The flip test of ``Predictor`` checked directly: a probe network whose heatmaps are a known function of
the input, and the flip-test average written out here index by index (SPEC B: flip the input, flip the
heatmaps back, swap the left/right joints, shift right by one pixel, average).

The predictor is the one evaluate.py makes from a checkpoint of a paper experiment, so its flip switch, its
heatmap shift and its flip pairs are those the experiment's config and dataset give.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from datasets.registry import build_codec
from engine.experiment.config import load_config
from engine.inference.predictor import Predictor
from engine.runtime.execution import make_runtime
from models.output import PoseOutput
from models.registry import build_model
from utils.checkpoint import save_checkpoint

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# left/right pairs written from the datasets' joint lists (MPII: data/MANIFEST.md; COCO: its keypoint names)
PAIRS = {
    16: ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    17: ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
}


class Probe(nn.Module):
    """Heatmaps that tell joints and positions apart: joint j is colour plane j % 3 at stride 4, times j + 1."""

    def __init__(self, joints: int) -> None:
        super().__init__()
        self.joints = joints

    def forward(self, images: Tensor) -> PoseOutput:
        planes = images[:, [j % 3 for j in range(self.joints)], 1::4, 2::4]
        heatmaps = planes * torch.arange(1, self.joints + 1, dtype=images.dtype).view(1, -1, 1, 1)
        return PoseOutput(stacks=[heatmaps], branches=[heatmaps])


def expected_flip_test(probe: Probe, images: Tensor, joints: int) -> Tensor:
    """0.5 * (H(x) + shifted, swapped, mirrored H(mirrored x)), loop by loop."""
    direct = probe(images).final
    mirrored = probe(images.flip(3)).final  # the network's view of the mirrored image
    partner = list(range(joints))
    for a, b in PAIRS[joints]:
        partner[a], partner[b] = b, a
    width = direct.shape[3]
    expected = torch.empty_like(direct)
    for j in range(joints):
        for column in range(width):
            # mirrored back, column c comes from column width - 1 - c; shifted right, column c takes c - 1
            source = width - 1 - max(column - 1, 0)
            expected[:, j, :, column] = 0.5 * (direct[:, j, :, column] + mirrored[:, partner[j], :, source])
    return expected


@pytest.mark.parametrize("experiment", ["mpii/hg4_okdhp", "coco/hg4_okdhp"])
def test_flip_test_swaps_left_and_right_and_shifts_one_pixel(experiment: str, tmp_path: Path) -> None:
    config = load_config(EXPERIMENTS / f"{experiment}.yaml")
    joints = int(config.model["num_joints"])
    codec = build_codec(config.data)
    tiny = {"name": "hourglass", "num_joints": joints, "num_stacks": 1, "num_features": 8, "depth": 1}
    state = {"kind": "deploy", "model": build_model(tiny).state_dict(), "model_config": tiny}
    checkpoint = tmp_path / "deploy.pth"
    save_checkpoint({**state, "codec": codec.to_dict(), "config": config.to_dict()}, checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint, make_runtime("cpu"))
    assert (
        predictor.pipeline.flip and predictor.pipeline.shift_heatmap
    )  # SPEC B's flip test, from the experiment
    probe = Probe(joints)
    predictor.model = probe
    width, height = codec.input_size
    images = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    got = predictor.heatmaps(images)["branch0"]
    assert got.shape == (2, joints, height // 4, width // 4)
    torch.testing.assert_close(got, expected_flip_test(probe, images, joints), rtol=0, atol=1e-6)
