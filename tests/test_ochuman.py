"""OCHuman through the COCO-format reader: real sample loads, RLE masks, AP with ground-truth boxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from datasets.coco import CocoDataset
from datasets.registry import build_dataset
from tests.test_coco import gt_as_predictions, mean_fraction_in_masks
from utils.errors import ConfigError, DataError

SAMPLE = {"name": "ochuman", "ann_file": "annotations/sample.json"}


@pytest.fixture(scope="module")
def ochuman_valid(ochuman_data: Path) -> CocoDataset:
    return build_dataset({**SAMPLE, "root": str(ochuman_data), "with_mask": True}, "valid", False)


def test_sample_loads_with_ground_truth_boxes(ochuman_valid):
    assert len(ochuman_valid) == 5
    assert {r.extra["image_id"] for r in ochuman_valid.records} == {1, 2, 3}
    assert all(r.image.parent.name == "images" and r.image.is_file() for r in ochuman_valid.records)
    sample = ochuman_valid[0]
    assert sample["image"].shape == (3, 256, 192) and sample["target"].shape == (17, 64, 48)
    assert sample["target_weight"].sum() == ochuman_valid.records[0].joints_vis.sum() == 17


def test_rle_masks_line_up(ochuman_valid):
    assert mean_fraction_in_masks(ochuman_valid) >= 0.8


def test_ground_truth_as_predictions_gives_ap_one(ochuman_valid, tmp_path):
    result = ochuman_valid.evaluate(*gt_as_predictions(ochuman_valid), output_dir=tmp_path)
    assert result.metric == pytest.approx(1.0)
    assert "OCHuman" in result.text and (tmp_path / "keypoints_results.json").is_file()


def test_ochuman_has_no_training_split_and_names_its_layout(ochuman_data, tmp_path):
    with pytest.raises(ConfigError, match="no training split"):
        build_dataset({**SAMPLE, "root": str(ochuman_data)}, "train", True)
    with pytest.raises(ConfigError, match="scale_factor"):
        build_dataset({**SAMPLE, "root": str(ochuman_data), "scale_factor": 0.3}, "valid", False)
    with pytest.raises(DataError, match=r"ochuman_coco_format_test_range_0\.00_1\.00\.json"):
        build_dataset({"name": "ochuman", "root": str(ochuman_data)}, "test", False)
