"""The synthetic stick-figure set: an ordinary MPII folder that loads, encodes and scores like the real one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datasets.codec import HeatmapCodec
from datasets.mpii import MPIIDataset
from datasets.synthetic import LIMBS, make_synthetic_mpii
from datasets.transforms import read_image
from tools.make_synthetic import main as make_synthetic_cli


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return make_synthetic_mpii(
        tmp_path_factory.mktemp("synthetic"), num_train=8, num_valid=6, seed=3, image_size=96
    )


def test_folder_is_in_mpii_format(synthetic_root):
    train = json.loads((synthetic_root / "annot" / "train.json").read_text())
    valid = json.loads((synthetic_root / "annot" / "valid.json").read_text())
    assert len(train) == 8 and len(valid) == 6
    assert (synthetic_root / "annot" / "gt_valid.mat").is_file()
    for entry in train + valid:
        assert set(entry) == {"image", "center", "scale", "joints", "joints_vis"}
        joints = np.array(entry["joints"])
        assert joints.shape == (16, 2) and entry["joints_vis"] == [1] * 16
        assert np.all(joints >= 1) and np.all(joints <= 96)  # 1-based, inside the image
        image = read_image(synthetic_root / "images" / entry["image"])
        assert image.shape == (96, 96, 3)


def test_limbs_are_drawn_in_their_side_colours(synthetic_root):
    """Midpoints of the limbs carry the limb's colour (left and right differ), bar the odd overlap."""
    matches = total = 0
    for entry in json.loads((synthetic_root / "annot" / "train.json").read_text()):
        image = read_image(synthetic_root / "images" / entry["image"]).astype(int)
        joints = np.array(entry["joints"]) - 1
        for start, end, colour in LIMBS:
            x, y = np.round((joints[start] + joints[end]) / 2).astype(int)
            matches += np.abs(image[y, x] - colour).max() < 60
            total += 1
    assert matches / total > 0.8
    assert len({colour for _, _, colour in LIMBS}) == len(LIMBS)


def test_adjusted_box_holds_the_figure_and_gt_scores_100(synthetic_root):
    dataset = MPIIDataset(synthetic_root, "valid", train=False, codec=HeatmapCodec((64, 64), (16, 16), 2.0))
    for record in dataset.records:
        half_box = record.scale[0] * 200 / 2
        assert np.all(np.abs(record.joints - record.center) <= half_box / 1.25 + 1e-6)
    sample = dataset[0]
    assert sample["image"].shape == (3, 64, 64) and float(sample["target_weight"].sum()) == 16
    preds = np.stack([record.joints for record in dataset.records])
    result = dataset.evaluate(preds, np.ones((6, 16, 1)))
    assert result.metric == 100.0 and all(value == 100.0 for value in result.table.values())
    assert dataset.evaluate(preds + 30.0, None).metric < 10.0


def test_same_seed_same_files_and_cli(tmp_path, synthetic_root):
    again = make_synthetic_cli(
        [str(tmp_path / "again"), "--train", "8", "--valid", "6", "--size", "96", "--seed", "3"]
    )
    for name in ("train.json", "valid.json"):
        assert (again / "annot" / name).read_text() == (synthetic_root / "annot" / name).read_text()
    other = make_synthetic_mpii(tmp_path / "other", num_train=8, num_valid=0, seed=4, image_size=96)
    assert (other / "annot" / "train.json").read_text() != (
        synthetic_root / "annot" / "train.json"
    ).read_text()
    assert json.loads((other / "annot" / "valid.json").read_text()) == []
