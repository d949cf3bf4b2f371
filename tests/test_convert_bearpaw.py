"""``--from bearpaw`` against bearpaw's own network: the same heatmaps, stack for stack.

A network written independently in bearpaw's structure and with its parameter names
(tests/bearpaw_reference.py) gets random weights and is saved in bearpaw's checkpoint format; the project's
converter (tools/convert_checkpoint.py) turns the file into a checkpoint of this project, which is loaded the
way evaluate.py loads one. No name table of the test is involved: only the converter's rules and the
reference's own module names meet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.inference.predictor import Predictor
from engine.runtime.execution import make_runtime
from tests.bearpaw_reference import HourglassNet, randomize, save_bearpaw_checkpoint
from tools.convert_checkpoint import main as convert_main
from utils.checkpoint import load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small convolutions: more threads only add overhead (conftest resets it)


def test_reference_is_bearpaws_network() -> None:
    """At bearpaw's size the reference has SPEC A's parameter counts and bearpaw's names."""
    counts = {}
    with torch.device("meta"):
        for stacks in (2, 4, 8):
            model = HourglassNet(num_stacks=stacks, num_blocks=1, num_classes=16)
            counts[stacks] = sum(p.numel() for p in model.parameters())
    assert counts == {2: 6_730_912, 4: 13_018_816, 8: 25_594_624}
    keys = set(model.state_dict())
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.bn1.weight",
        "layer1.0.downsample.0.weight",
        "layer3.0.conv3.bias",
        "hg.0.hg.0.3.0.conv2.weight",  # the innermost residual of the first hourglass
        "hg.7.hg.3.2.0.bn3.weight",
        "res.0.0.conv1.weight",
        "fc.0.0.weight",
        "fc.0.1.running_mean",
        "score.7.weight",
        "fc_.6.weight",
        "score_.6.bias",
    ):
        assert key in keys, key
    assert "layer2.0.downsample.0.weight" in keys  # 128 -> 256: a conv shortcut; layer3 keeps 256
    assert "fc_.7.weight" not in keys and "layer3.0.downsample.0.weight" not in keys


@pytest.mark.parametrize(("num_stacks", "num_blocks"), [(2, 1), (3, 2)])
def test_converted_bearpaw_file_gives_bearpaws_heatmaps(
    tmp_path: Path, num_stacks: int, num_blocks: int
) -> None:
    reference = randomize(HourglassNet(num_stacks, num_blocks, num_classes=16, num_feats=8, depth=4))
    source = save_bearpaw_checkpoint(reference, tmp_path / "model_best.pth.tar", arch=f"hg{num_stacks}")
    out = tmp_path / "converted.pth"
    sets = {"model.num_stacks": num_stacks, "model.num_blocks": num_blocks, "model.num_features": 16}
    arguments = [str(source), str(out), "--from", "bearpaw", "--config", "mpii/hg2_baseline"]
    for key, value in sets.items():
        arguments += ["--set", f"{key}={value}"]
    assert convert_main(arguments) == 0
    assert load_checkpoint(out)["model_config"]["depth"] == 4  # bearpaw's depth, from the config

    predictor = Predictor.from_checkpoint(out, make_runtime("cpu"), flip=False)  # as evaluate.py loads it
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(images)
        got = predictor.model.eval()(images).stacks
    assert len(got) == len(expected) == num_stacks
    for stack, (ours, theirs) in enumerate(zip(got, expected)):
        assert ours.shape == theirs.shape == (2, 16, 16, 16)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=f"stack {stack}")
        assert theirs.std() > 0.1  # the comparison is not between two near-constant maps
    torch.testing.assert_close(predictor.heatmaps(images)["branch0"], expected[-1], rtol=1e-4, atol=1e-5)
