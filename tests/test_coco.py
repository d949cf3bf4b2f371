"""COCO dataset on the real sample (boxes, crops, targets, masks, detector boxes, AP) and on the synthetic set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.coco import CocoDataset, box_to_center_scale, clean_box, half_body_box
from datasets.keypoints import COCO, COCO_UPPER_BODY
from datasets.registry import build_dataset
from datasets.synthetic_coco import make_synthetic_coco
from datasets.transforms import read_image
from utils.errors import ConfigError, DataError

SAMPLE = {"name": "coco", "ann_file": "annotations/person_keypoints_sample.json"}
DETECTIONS = "person_detection_results/sample_detections.json"


def gt_as_predictions(dataset: CocoDataset) -> tuple[np.ndarray, np.ndarray]:
    """The annotated joints as predictions, with score 1 on labelled joints and 0 elsewhere."""
    preds = np.stack([r.joints for r in dataset.records])
    maxvals = np.stack([r.joints_vis for r in dataset.records])[..., None].astype(np.float64)
    return preds, maxvals


def decoded_target(dataset: CocoDataset, sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap-pixel joints decoded from a sample's target, and which joints carry weight."""
    coords, _ = dataset.codec.decode(sample["target"][None])
    return coords[0].numpy(), sample["target_weight"][:, 0].numpy() > 0


def mean_fraction_in_masks(dataset: CocoDataset) -> float:
    """Over a dataset's samples, the mean share of labelled joints (decoded from the target) inside the mask."""
    inside = []
    for index in range(len(dataset)):
        sample = dataset[index]
        joints, labelled = decoded_target(dataset, sample)
        inside.append(fraction_in_mask(sample["mask"][0].numpy(), joints[labelled]))
    return float(np.mean(inside))


def fraction_in_mask(mask: np.ndarray, points: np.ndarray) -> float:
    """Share of heatmap-pixel points whose nearest heatmap pixel is inside the mask (> 0)."""
    height, width = mask.shape
    index = np.clip(np.round(points).astype(int), 0, [width - 1, height - 1])
    return float((mask[index[:, 1], index[:, 0]] > 0).mean())


@pytest.fixture(scope="module")
def coco_valid(coco_data: Path) -> CocoDataset:
    return build_dataset({**SAMPLE, "root": str(coco_data), "with_mask": True}, "valid", False)


def test_ground_truth_persons_follow_hrnet(coco_valid, coco_data):
    document = json.loads((coco_data / SAMPLE["ann_file"]).read_text())
    with_keypoints = [a for a in document["annotations"] if max(a["keypoints"]) > 0]
    assert len(document["annotations"]) == 14 and len(coco_valid) == len(with_keypoints) == 12
    record, ann = coco_valid.records[0], with_keypoints[0]
    x, y, w, h = ann["bbox"]  # 280.79, 44.73, 218.7, 346.68: taller than 4:3, so the width grows
    assert record.center == pytest.approx([x + (w - 1) / 2, y + (h - 1) / 2])
    assert record.scale == pytest.approx(np.array([(h - 1) * 0.75, h - 1]) / 200 * 1.25)
    assert record.joints_vis.sum() == ann["num_keypoints"] == 17
    assert record.extra == {"image_id": 785, "ann_id": ann["id"], "score": 1.0, "area": pytest.approx(
        np.prod(record.scale * 200)
    )}  # fmt: skip


def test_box_helpers():
    assert clean_box([-5, -5, 20, 30], 100, 100) == pytest.approx([0, 0, 19, 29])
    assert clean_box([95, 10, 20, 30], 100, 100) == pytest.approx([95, 10, 4, 29])
    assert clean_box([120, 10, 20, 30], 100, 100) is None
    center, scale = box_to_center_scale([10, 20, 100, 50], aspect_ratio=0.75)
    assert center == pytest.approx([60, 45]) and scale == pytest.approx(
        [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25]
    )


def test_targets_decode_back_to_the_annotations(coco_valid):
    heatmap_size = np.array(coco_valid.codec.heatmap_size)
    for index, record in enumerate(coco_valid.records):
        sample = coco_valid[index]
        assert sample["image"].shape == (3, 256, 192) and sample["target"].shape == (17, 64, 48)
        preds, _ = coco_valid.codec.decode_to_image(
            sample["target"][None], record.center[None], record.scale[None]
        )
        labelled = sample["target_weight"][:, 0].numpy() > 0
        assert labelled.sum() == record.joints_vis.sum()  # a ground-truth box holds every labelled joint
        half_pixel = 0.5 * record.scale * 200 / heatmap_size  # half a heatmap pixel, in image pixels
        assert np.all(np.abs(preds[0][labelled] - record.joints[labelled]) <= half_pixel + 1e-6)


def test_masks_line_up_with_keypoints(coco_valid):
    inside, mirrored = [], []
    for index in range(len(coco_valid)):
        sample = coco_valid[index]
        mask = sample["mask"][0].numpy()
        assert sample["mask"].shape == (1, 64, 48) and sample["mask"].dtype == torch.float32
        assert 0.0 <= mask.min() and mask.max() <= 1.0 and 0.02 < mask.mean() < 0.6
        joints, labelled = decoded_target(coco_valid, sample)
        inside.append(fraction_in_mask(mask, joints[labelled]))
        mirrored.append(fraction_in_mask(mask[:, ::-1], joints[labelled]))
    assert min(inside) >= 0.5 and np.mean(inside) >= 0.85
    assert np.mean(mirrored) < 0.7  # the check can tell a misplaced mask


def test_masks_follow_rotation_scale_and_flip(coco_data):
    dataset = build_dataset(
        {
            **SAMPLE,
            "root": str(coco_data),
            "image_dir": "images/val2017",
            "with_mask": True,
            "half_body_prob": 0.0,
        },
        "valid",
        True,
    )
    inside, flips, rotations = [], 0, 0
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            sample = dataset[index]
            flips += sample["meta"]["flipped"]
            rotations += abs(float(sample["meta"]["rotation"])) > 5
            joints, labelled = decoded_target(dataset, sample)
            if labelled.any():
                inside.append(fraction_in_mask(sample["mask"][0].numpy(), joints[labelled]))
    assert flips > 0 and rotations > 0
    assert np.mean(inside) >= 0.85


def test_flip_swaps_coco_pairs(coco_data):
    section = {
        **SAMPLE,
        "root": str(coco_data),
        "scale_factor": 0.0,
        "rotation_factor": 0.0,
        "half_body_prob": 0.0,
    }
    dataset = build_dataset(section, "valid", True)
    dataset.force_flip = False
    plain = dataset[0]
    dataset.force_flip = True
    flipped = dataset[0]
    assert not plain["meta"]["flipped"] and flipped["meta"]["flipped"]
    # HRNet flips the image (and the box centre, x -> W - 1 - x) before cropping: the flipped crop is the
    # plain crop mirrored about the crop centre, column u <- column 192 - u (up to one grey level).
    one_grey_level = 1.0 / 255.0 / 0.224
    assert torch.allclose(
        flipped["image"][..., 1:], plain["image"].flip(2)[..., :-1], atol=1.01 * one_grey_level
    )
    # Joint j of the flipped sample is the mirrored joint perm[j] of the plain one (left <-> right).
    perm = COCO.flip_permutation()
    assert perm[5] == 6 and perm[15] == 16 and perm[0] == 0
    plain_joints, plain_labelled = decoded_target(dataset, plain)
    flipped_joints, flipped_labelled = decoded_target(dataset, flipped)
    assert np.array_equal(flipped_labelled, plain_labelled[perm])
    width = dataset.codec.heatmap_size[0]
    stride = dataset.codec.stride[0]
    expected_x = dataset.input_size[0] / stride - plain_joints[perm, 0]
    assert np.all(np.abs(flipped_joints[flipped_labelled, 0] - expected_x[flipped_labelled]) <= 1.0)
    assert np.array_equal(flipped_joints[flipped_labelled, 1], plain_joints[perm][flipped_labelled, 1])
    assert width == 48


def test_half_body_box_rule():
    joints = np.array([[100.0 + 10 * j, 50.0 + 20 * j] for j in range(17)])
    visible = np.ones(17)
    lower = [j for j in range(17) if j not in COCO_UPPER_BODY]
    seen = set()
    for seed in range(40):
        center, scale = half_body_box(joints, visible, np.random.default_rng(seed), aspect_ratio=0.75)
        part = COCO_UPPER_BODY if np.allclose(center, joints[list(COCO_UPPER_BODY)].mean(0)) else lower
        assert center == pytest.approx(joints[list(part)].mean(0))
        extent = np.ptp(joints[list(part)], axis=0)
        assert scale[1] == pytest.approx(extent[1] / 200 * 1.5) and scale[0] == pytest.approx(scale[1] * 0.75)
        seen.add(len(part))
    assert seen == {len(COCO_UPPER_BODY), len(lower)}
    only_two = np.zeros(17)
    only_two[[0, 1]] = 1
    assert half_body_box(joints, only_two, np.random.default_rng(0), 0.75) is not None
    only_one = np.zeros(17)
    only_one[0] = 1
    assert half_body_box(joints, only_one, np.random.default_rng(0), 0.75) is None


def test_half_body_needs_more_than_eight_labelled_joints(coco_valid):
    record = coco_valid.records[0]  # 17 labelled joints
    coco_valid.half_body_prob = 1.0
    try:
        for labelled, expect_half in ((8, False), (9, True)):
            joints_vis = np.zeros(17)
            joints_vis[:labelled] = 1  # joints 0-8 are all upper body, 9+ adds a wrist
            trial = dataclasses.replace(record, joints_vis=joints_vis)
            center, _ = coco_valid.adjust_box(trial, np.random.default_rng(0))
            assert (not np.allclose(center, record.center)) == expect_half
    finally:
        coco_valid.half_body_prob = 0.3


def test_half_body_targets_stay_consistent(coco_data):
    section = {
        **SAMPLE,
        "root": str(coco_data),
        "scale_factor": 0.0,
        "rotation_factor": 0.0,
        "half_body_prob": 1.0,
        "flip": False,
    }
    dataset = build_dataset(section, "valid", True)
    heatmap_size = np.array(dataset.codec.heatmap_size)
    changed = 0
    for index, record in enumerate(dataset.records):
        sample = dataset[index]
        meta = sample["meta"]
        is_half = not np.allclose(meta["center"], record.center)
        assert is_half == (record.joints_vis.sum() > 8)  # half-body needs more than 8 labelled joints
        changed += is_half
        preds, _ = dataset.codec.decode_to_image(
            sample["target"][None], meta["center"][None], meta["scale"][None]
        )
        labelled = sample["target_weight"][:, 0].numpy() > 0
        in_heatmap = (record.joints - meta["center"]) / (
            meta["scale"] * 200
        ) * heatmap_size + heatmap_size / 2
        inside = labelled & np.all((in_heatmap >= 0) & (in_heatmap <= heatmap_size - 1), axis=1)
        assert inside.sum() >= 3  # the chosen half keeps at least its joints
        half_pixel = 0.5 * meta["scale"] * 200 / heatmap_size
        assert np.all(np.abs(preds[0][inside] - record.joints[inside]) <= half_pixel + 1e-3)
        if is_half:
            is_upper = np.isin(np.arange(17), COCO_UPPER_BODY)
            part_inside = [np.all(inside[(record.joints_vis > 0) & part]) for part in (is_upper, ~is_upper)]
            assert any(part_inside)  # the box was made around the labelled upper or lower joints
    assert changed >= 8


def test_detector_boxes_respect_the_score_threshold(coco_data):
    detections = json.loads((coco_data / DETECTIONS).read_text())
    section = {**SAMPLE, "root": str(coco_data), "use_gt_boxes": False, "detection_file": DETECTIONS}
    for threshold in (0.0, 0.5):
        dataset = build_dataset({**section, "det_score_threshold": threshold}, "valid", False)
        expected = [d for d in detections if d["category_id"] == 1 and d["score"] >= threshold]
        assert len(dataset) == len(expected) > 0
        assert all(r.extra["score"] >= threshold and r.extra["ann_id"] == -1 for r in dataset.records)
        first = dataset.records[0]
        x, y, w, h = expected[0]["bbox"]
        assert first.center == pytest.approx([x + w / 2, y + h / 2])
    assert len(build_dataset({**section, "det_score_threshold": 0.5}, "valid", False)) < len(detections)


def test_detector_evaluation_drops_duplicates_and_keeps_people(coco_data, coco_valid, tmp_path):
    section = {**SAMPLE, "root": str(coco_data), "use_gt_boxes": False, "detection_file": DETECTIONS}
    dataset = build_dataset({**section, "det_score_threshold": 0.3}, "valid", False)
    persons = coco_valid.records
    preds, maxvals = [], []
    for record in dataset.records:  # each detection predicts the annotated person nearest to its box
        same_image = [p for p in persons if p.extra["image_id"] == record.extra["image_id"]]
        nearest = min(same_image, key=lambda p: np.linalg.norm(p.center - record.center))
        preds.append(nearest.joints)
        maxvals.append(nearest.joints_vis[:, None])
    result = dataset.evaluate(np.stack(preds), np.stack(maxvals), output_dir=tmp_path)
    kept = json.loads((tmp_path / "keypoints_results.json").read_text())
    predicted_people = {tuple(np.round(p, 3).reshape(-1)) for p in preds}
    assert len(dataset) > len(kept) == len(predicted_people)  # one result per distinct person
    assert {
        tuple(np.round(np.asarray(k["keypoints"]).reshape(-1, 3)[:, :2], 3).reshape(-1)) for k in kept
    } == (predicted_people)
    assert len(predicted_people) == len(persons)  # every annotated person was detected
    assert result.metric == result.table["AP"] == pytest.approx(1.0)


def test_ground_truth_as_predictions_gives_ap_one(coco_valid, tmp_path):
    result = coco_valid.evaluate(*gt_as_predictions(coco_valid), output_dir=tmp_path)
    assert result.metric == pytest.approx(1.0) and set(result.table) >= {"AP", "AP50", "ARl"}
    assert "| AP |" in result.text
    entries = json.loads((tmp_path / "keypoints_results.json").read_text())
    assert len(entries) == len(coco_valid) and set(entries[0]) >= {
        "image_id",
        "category_id",
        "keypoints",
        "score",
    }
    assert len(entries[0]["keypoints"]) == 51 and entries[0]["category_id"] == 1
    preds, maxvals = gt_as_predictions(coco_valid)
    preds[:, :, 0] += 30.0
    assert coco_valid.evaluate(preds, maxvals).metric < 0.5


def test_subset_keeps_first_images_and_evaluates_only_them(coco_data):
    dataset = build_dataset({**SAMPLE, "root": str(coco_data), "subset": 2}, "valid", False)
    assert dataset.image_ids == [785, 40083]
    assert {r.extra["image_id"] for r in dataset.records} == {785, 40083}
    assert dataset.evaluate(*gt_as_predictions(dataset)).metric == pytest.approx(1.0)


def test_missing_files_name_the_path_and_layout(coco_data, tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*annotations/person_keypoints_val2017\.json"):
        build_dataset({"name": "coco", "root": str(tmp_path / "nowhere")}, "valid", False)
    with pytest.raises(DataError, match=r"person_keypoints_val2017\.json.*images/val2017"):
        build_dataset({"name": "coco", "root": str(coco_data)}, "valid", False)
    with pytest.raises(DataError, match="images/train2017"):
        build_dataset({**SAMPLE, "root": str(coco_data)}, "train", True)
    with pytest.raises(DataError, match="COCO_val2017_detections_AP_H_56_person.json"):
        build_dataset({**SAMPLE, "root": str(coco_data), "use_gt_boxes": False}, "valid", False)
    with pytest.raises(DataError, match=r"image-info file .*annotations/image_info_test-dev2017\.json"):
        build_dataset({**SAMPLE, "root": str(coco_data)}, "test", False)  # test-dev: no ground truth


def test_config_errors(coco_data):
    with pytest.raises(ConfigError, match="use_gt_box"):
        build_dataset({**SAMPLE, "root": str(coco_data), "use_gt_box": True}, "valid", False)
    with pytest.raises(ConfigError, match="color"):
        build_dataset({**SAMPLE, "root": str(coco_data), "color": "rgb"}, "valid", False)
    with pytest.raises(ConfigError, match="subset"):
        build_dataset({**SAMPLE, "root": str(coco_data), "subset": 0}, "valid", False)
    with pytest.raises(ConfigError, match="with_mask"):
        build_dataset(
            {**SAMPLE, "root": str(coco_data), "use_gt_boxes": False, "with_mask": True}, "valid", False
        )


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return make_synthetic_coco(tmp_path_factory.mktemp("synthetic_coco"), num_train=12, num_valid=6, seed=3)


def test_synthetic_set_is_coco(synthetic_root):
    for set_name in ("train2017", "val2017"):
        document = json.loads(
            (synthetic_root / "annotations" / f"person_keypoints_{set_name}.json").read_text()
        )
        assert document["categories"][0]["keypoints"] == list(COCO.joint_names)
        for ann in document["annotations"]:
            assert len(ann["keypoints"]) == 51 and ann["iscrowd"] == 0 and ann["area"] > 0
            assert ann["num_keypoints"] == sum(v > 0 for v in ann["keypoints"][2::3])
            x, y, w, h = ann["bbox"]
            keypoints = np.asarray(ann["keypoints"]).reshape(-1, 3)
            labelled = keypoints[keypoints[:, 2] > 0, :2]
            assert np.all((labelled >= [x - 1, y - 1]) & (labelled <= [x + w, y + h]))
            assert all(len(polygon) >= 6 for polygon in ann["segmentation"])
        images = {image["id"] for image in document["images"]}
        assert len(images) == (12 if set_name == "train2017" else 6)
        files = sorted(p.name for p in (synthetic_root / "images" / set_name).iterdir())
        assert files == sorted(image["file_name"] for image in document["images"])
    occluded = make_synthetic_coco(synthetic_root.parent / "crowded", 8, 0, seed=1, max_persons=4)
    crowded = json.loads((occluded / "annotations/person_keypoints_train2017.json").read_text())
    flags = {v for ann in crowded["annotations"] for v in ann["keypoints"][2::3]}
    assert flags == {0, 1, 2}  # outside, hidden behind another figure, visible


def test_synthetic_set_loads_trains_and_evaluates(synthetic_root):
    section = {"name": "coco", "root": str(synthetic_root), "with_mask": True}
    train = build_dataset(section, "train", True)
    valid = build_dataset(section, "valid", False)
    sample = train[0]
    assert sample["target"].shape == (17, 64, 48) and sample["mask"].shape == (1, 64, 48)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 256, 192) and batch["mask"].shape == (4, 1, 64, 48)
    assert mean_fraction_in_masks(valid) >= 0.95
    assert valid.evaluate(*gt_as_predictions(valid)).metric == pytest.approx(1.0)


def test_synthetic_generation_is_deterministic(tmp_path):
    first = make_synthetic_coco(tmp_path / "a", 2, 1, seed=5)
    second = make_synthetic_coco(tmp_path / "b", 2, 1, seed=5)
    for name in ("person_keypoints_train2017.json", "person_keypoints_val2017.json"):
        assert (first / "annotations" / name).read_text() == (second / "annotations" / name).read_text()
    image = next((first / "images" / "train2017").iterdir())
    assert np.array_equal(read_image(image), read_image(second / "images" / "train2017" / image.name))


def changed_annotations(coco_data: Path, tmp_path: Path, change) -> tuple[dict, Path]:
    """A build_dataset section on a changed copy of the sample annotations (the real images are read in place)."""
    document = json.loads((coco_data / SAMPLE["ann_file"]).read_text())
    change(document)
    path = tmp_path / "person_keypoints_val2017.json"
    path.write_text(json.dumps(document))
    section = {
        "name": "coco",
        "root": str(tmp_path),
        "ann_file": str(path),
        "image_dir": str(coco_data / "images" / "val2017"),
    }
    return section, path


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ([float("nan"), 139.06, 140.05, 154.21], "bbox that is not 4 finite numbers"),
        ([257.76, 139.06, 0.5, 0.5], "person box of zero size"),
        ([257.76, 139.06, -20.0, -30.0], "person box of zero size"),
        ([257.76, 139.06, 140.05], "bbox that is not 4 finite numbers"),
    ],
)
def test_degenerate_box_names_the_file_and_annotation(coco_data, tmp_path, bbox, expected):
    def change(document):
        document["annotations"][2]["bbox"] = bbox  # annotation 230195 of image 000000040083.jpg

    section, path = changed_annotations(coco_data, tmp_path, change)
    before = path.read_bytes()
    with pytest.raises(
        DataError, match=rf"{path}: annotation 230195 \(image 000000040083.jpg\) has .*{expected}"
    ):
        build_dataset(section, "valid", False)
    assert path.read_bytes() == before


def test_wrong_keypoint_count_and_nan_keypoints_are_named(coco_data, tmp_path):
    def short(document):
        document["annotations"][0]["keypoints"] = document["annotations"][0]["keypoints"][:36]

    section, path = changed_annotations(coco_data, tmp_path, short)
    with pytest.raises(DataError, match=rf"{path}: annotation 442619 .* 36 keypoint values, expected 51"):
        build_dataset(section, "valid", False)

    def nan(document):
        document["annotations"][1]["keypoints"][4] = float("nan")

    section, path = changed_annotations(coco_data, tmp_path, nan)
    with pytest.raises(DataError, match=rf"{path}: annotation 198196 .* NaN or infinite keypoints"):
        build_dataset(section, "valid", False)


@pytest.mark.parametrize("emptied", ["no keypoints", "no annotations"])
def test_split_without_persons_is_called_empty(coco_data, tmp_path, emptied):
    def change(document):
        if emptied == "no annotations":
            document["annotations"] = []
        for ann in document["annotations"]:
            ann["keypoints"] = [0] * 51
            ann["num_keypoints"] = 0

    section, path = changed_annotations(coco_data, tmp_path, change)
    with pytest.raises(DataError, match=rf"the COCO val2017 split is empty: {path} has no person annotation"):
        build_dataset(section, "valid", False)
    with pytest.raises(DataError, match="split is empty"):
        build_dataset({**section, "subset": 2}, "valid", False)


def test_nan_detection_names_the_detection_file_and_entry(coco_data, tmp_path):
    detections = json.loads((coco_data / DETECTIONS).read_text())
    detections[7]["bbox"][2] = float("nan")
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    section = {**SAMPLE, "root": str(coco_data), "use_gt_boxes": False, "detection_file": str(path)}
    with pytest.raises(
        DataError, match=rf"{path}: entry 7 \(image_id \d+\) needs a bbox of 4 finite numbers"
    ):
        build_dataset(section, "valid", False)
    weak = [{**d, "score": 0.01} for d in detections[:3]]
    path.write_text(json.dumps(weak))
    with pytest.raises(DataError, match=rf"split is empty: .* no person detection .* score >= 0.5 in {path}"):
        build_dataset({**section, "det_score_threshold": 0.5}, "valid", False)
