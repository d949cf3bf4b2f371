"""The COCO pipeline against HRNet's rules, each re-computed independently (tests/hrnet_reference.py).

Persons (box cleaning, crowd and keypoint filters, ``_xywh2cs``), the detector score threshold, half-body,
the scale/rotation/flip draws, the training and test samples (flip-then-warp, RGB), rescoring and OKS-NMS,
all on the real COCO sample files in ../shared/data/coco.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from datasets.coco import CocoDataset
from datasets.coco_eval import nms_results, rescore, rescore_and_nms
from datasets.masks import input_to_heatmap_matrix, instance_mask, warp_mask
from datasets.registry import build_dataset
from datasets.transforms import read_image, sample_augmentation
from tests import hrnet_reference as hrnet

ANNOTATIONS = "annotations/person_keypoints_sample.json"
DETECTIONS = "person_detection_results/sample_detections.json"
RESULTS = "annotations/sample_keypoint_results.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
# SPEC B's COCO line (the released OKDHP COCO configs): rotation 40, scale 0.3.
SPEC_SCALE_FACTOR, SPEC_ROTATION_FACTOR = 0.3, 40.0


def section(coco_data: Path, **overrides) -> dict:
    """A data section reading the real sample (its images sit in images/val2017)."""
    return {
        "name": "coco",
        "root": str(coco_data),
        "ann_file": ANNOTATIONS,
        "image_dir": "images/val2017",
        **overrides,
    }


@pytest.fixture(scope="module")
def document(coco_data: Path) -> dict:
    return json.loads((coco_data / ANNOTATIONS).read_text())


def write_annotations(tmp_path: Path, document: dict) -> str:
    """Write an edited copy of the annotation file; return its absolute path for ``ann_file``."""
    path = tmp_path / "edited_keypoints.json"
    path.write_text(json.dumps(document))
    return str(path)


def assert_records_equal_reference(dataset: CocoDataset, people: list[hrnet.ReferencePerson]) -> None:
    """Same persons in the same order, same centre/scale (to HRNet's float32), joints, visibility and area."""
    assert [r.extra["ann_id"] for r in dataset.records] == [p.key for p in people]
    for record, person in zip(dataset.records, people):
        np.testing.assert_allclose(record.center, person.center, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(record.scale, person.scale, rtol=1e-6)
        np.testing.assert_array_equal(record.joints, person.joints[:, :2])
        np.testing.assert_array_equal(record.joints_vis, person.joints_vis[:, 0])
        # OKS-NMS area: HRNet's all_boxes[:, 4] = prod(scale * 200), the padded box
        assert record.extra["area"] == pytest.approx(np.prod(person.scale.astype(np.float64) * 200), rel=1e-6)
        assert record.extra["score"] == 1.0


@pytest.mark.parametrize("input_size", [(192, 256), (288, 384), (256, 256)])
def test_ground_truth_persons_equal_hrnet(coco_data, document, input_size):
    dataset = build_dataset(section(coco_data, input_size=list(input_size)), "valid", False)
    people = hrnet.coco_gt_db(document, coco_data / "images/val2017", input_size[0] / input_size[1])
    assert len(people) == 12
    assert_records_equal_reference(dataset, people)


def test_box_cleaning_crowd_and_empty_persons_equal_hrnet(coco_data, document, tmp_path):
    edited = copy.deepcopy(document)
    anns = {a["id"]: a for a in edited["annotations"]}
    width, height = (edited["images"][0]["width"], edited["images"][0]["height"])  # image 785 (640 x 425)
    first = edited["annotations"][0]
    assert first["image_id"] == 785
    first["bbox"] = [width - 120.3, -30.5, 300.0, 200.0]  # sticks out right and above: clipped
    anns[198196]["iscrowd"] = 1  # a crowd region with keypoints: HRNet never lists it
    anns[230195]["area"] = 0  # zero area: dropped
    anns[460541]["bbox"] = [700.0, 10.0, 50.0, 50.0]  # entirely right of the image: nothing left
    anns[1724673]["keypoints"] = [0] * 51  # no keypoint: dropped
    edited_path = write_annotations(tmp_path, edited)
    dataset = build_dataset(section(coco_data, ann_file=edited_path), "valid", False)
    people = hrnet.coco_gt_db(edited, coco_data / "images/val2017", 192 / 256)
    assert len(people) == 12 - 4
    assert_records_equal_reference(dataset, people)
    # x2 = min(W - 1, x1 + w - 1); y1 = 0 and, as in HRNet, y2 = y1 + h - 1 (the part above is not deducted)
    assert height == 425 and dataset.records[0].center == pytest.approx(
        [(width - 120.3 + width - 1) / 2, 199 / 2]
    )


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5])
def test_detector_persons_equal_hrnet(coco_data, threshold):
    detections = json.loads((coco_data / DETECTIONS).read_text())
    options = {"use_gt_boxes": False, "detection_file": DETECTIONS, "det_score_threshold": threshold}
    dataset = build_dataset(section(coco_data, **options), "valid", False)
    people = hrnet.coco_detection_db(detections, 192 / 256, threshold)  # 0.1 is HRNet's default IMAGE_THRE
    assert len(dataset) == len(people) > 0
    assert [r.extra["image_id"] for r in dataset.records] == [p.key for p in people]
    for record, person in zip(dataset.records, people):
        np.testing.assert_allclose(record.center, person.center, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(record.scale, person.scale, rtol=1e-6)
        assert record.extra["score"] == person.score
        assert record.extra["area"] == pytest.approx(np.prod(person.scale.astype(np.float64) * 200), rel=1e-6)


def test_degenerate_detector_boxes_follow_hrnet_where_it_can_crop(coco_data, tmp_path):
    detections = json.loads((coco_data / DETECTIONS).read_text())[:6]
    detections[1]["bbox"][2] = 0.0  # zero width: HRNet widens it to the aspect ratio and crops it
    detections[2]["bbox"][3] = 0.0  # zero height: likewise
    detections[3]["bbox"][2:] = [0.0, 0.0]  # no box at all: HRNet's crop would divide by zero; skipped here
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    dataset = build_dataset(section(coco_data, use_gt_boxes=False, detection_file=str(path)), "valid", False)
    people = [p for i, p in enumerate(hrnet.coco_detection_db(detections, 0.75, 0.0)) if i != 3]
    assert len(dataset) == len(people) == 5
    for record, person in zip(dataset.records, people):
        np.testing.assert_allclose(record.center, person.center, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(record.scale, person.scale, rtol=1e-6)


def test_half_body_equals_hrnet(coco_data):
    dataset = build_dataset(section(coco_data, half_body_prob=0.5), "valid", True)
    aspect_ratio = 192 / 256
    few = dataclasses.replace(dataset.records[0], joints_vis=np.r_[np.ones(8), np.zeros(9)])
    nine = dataclasses.replace(dataset.records[0], joints_vis=np.r_[np.ones(9), np.zeros(8)])
    records = [*dataset.records, few, nine]
    outcomes = {"whole": 0, "upper": 0, "lower": 0}
    for record in records:
        halves = 0
        visible = np.repeat(record.joints_vis[:, None], 3, axis=1)
        joints = np.c_[record.joints, np.zeros(17)]
        for seed in range(30):
            ours_rng, hrnet_rng = np.random.default_rng(seed), np.random.default_rng(seed)
            center, scale = dataset.adjust_box(record, ours_rng)
            expected_center, expected_scale = record.center, record.scale
            # HRNet: only a person with more than 8 labelled joints draws rand() < prob_half_body.
            if np.sum(visible[:, 0]) > 8 and hrnet_rng.random() < 0.5:
                half_center, half_scale = hrnet.half_body(
                    joints, visible, hrnet.COCO_UPPER_IDS, aspect_ratio, hrnet_rng
                )
                if half_center is not None:
                    expected_center, expected_scale = half_center, half_scale
            np.testing.assert_allclose(center, expected_center, rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(scale, expected_scale, rtol=1e-6)
            assert ours_rng.random() == hrnet_rng.random()  # the same number of draws was made
            if np.allclose(center, record.center):
                outcomes["whole"] += 1
            else:
                halves += 1
                upper = record.joints[[j for j in hrnet.COCO_UPPER_IDS if record.joints_vis[j] > 0]]
                outcomes["upper" if np.allclose(center, upper.mean(axis=0), atol=1e-3) else "lower"] += 1
        if record is few:
            assert halves == 0  # 8 labelled joints: never half-body
        if record is nine:
            assert halves > 5  # 9 labelled joints (the upper body's 9): about half the time
    assert min(outcomes.values()) > 20


@pytest.mark.parametrize(
    "scale_factor, rotation_factor", [(SPEC_SCALE_FACTOR, SPEC_ROTATION_FACTOR), (0.35, 45.0), (0.25, 30.0)]
)
def test_scale_rotation_and_flip_draws_equal_hrnet(scale_factor, rotation_factor):
    """HRNet: s *= clip(randn * sf + 1, 1 - sf, 1 + sf); r = clip(randn * rf, -2 rf, 2 rf) if random() <= 0.6."""
    ours_rng, hrnet_rng = np.random.default_rng(7), np.random.default_rng(7)
    rotated = flipped = 0
    for _ in range(2000):
        scale, rotation, flip = sample_augmentation(
            ours_rng,
            scale_factor=scale_factor,
            rotation_factor=rotation_factor,
            rotation_prob=0.6,
            flip_prob=0.5,
        )
        expected_scale = np.clip(
            hrnet_rng.standard_normal() * scale_factor + 1, 1 - scale_factor, 1 + scale_factor
        )
        expected_rotation = 0.0
        if hrnet_rng.random() <= 0.6:
            expected_rotation = np.clip(
                hrnet_rng.standard_normal() * rotation_factor, -rotation_factor * 2, rotation_factor * 2
            )
        expected_flip = hrnet_rng.random() <= 0.5
        assert (scale, rotation, flip) == (expected_scale, expected_rotation, expected_flip)
        rotated += rotation != 0
        flipped += flip
    assert 0.55 < rotated / 2000 < 0.65 and 0.45 < flipped / 2000 < 0.55


def test_coco_configs_use_spec_augmentation():
    """experiments/coco/_defaults.yaml holds SPEC B's COCO numbers (HRNet's own HRNet configs: 45 / 0.35)."""
    data = yaml.safe_load((REPO_ROOT / "experiments/coco/_defaults.yaml").read_text())["data"]
    assert data["scale_factor"] == SPEC_SCALE_FACTOR and data["rotation_factor"] == SPEC_ROTATION_FACTOR
    assert data["rotation_prob"] == 0.6 and data["half_body_prob"] == 0.3 and data["flip"] is True
    assert data["color"] == "rgb_imagenet" and data["use_gt_boxes"] is True
    assert data["oks_threshold"] == 0.9 and data["keypoint_score_threshold"] == 0.2


def reference_people(dataset: CocoDataset, document: dict, coco_data: Path) -> list[hrnet.ReferencePerson]:
    """HRNet's db entries in the dataset's record order."""
    by_id = {p.key: p for p in hrnet.coco_gt_db(document, coco_data / "images/val2017", 192 / 256)}
    return [by_id[record.extra["ann_id"]] for record in dataset.records]


def test_training_samples_equal_hrnet(coco_data, document):
    """Flip-then-warp, half-body, scale, rotation and RGB: pixels within one grey level, equal targets."""
    options = {"scale_factor": SPEC_SCALE_FACTOR, "rotation_factor": SPEC_ROTATION_FACTOR, "with_mask": True}
    dataset = build_dataset(section(coco_data, **options), "valid", True)
    people = reference_people(dataset, document, coco_data)
    reference_options = {
        "image_size": (192, 256), "heatmap_size": (48, 64), "sigma": 2.0, "flip_pairs": hrnet.COCO_FLIP_PAIRS,
        "rgb": True, "scale_factor": SPEC_SCALE_FACTOR, "rotation_factor": SPEC_ROTATION_FACTOR,
        "half_body_prob": 0.3, "upper_ids": hrnet.COCO_UPPER_IDS,
    }  # fmt: skip
    seen = set()
    for epoch, force_flip in ((0, None), (1, None), (2, None), (3, True), (3, False)):
        dataset.force_flip = force_flip
        for index, person in enumerate(people):
            rng = np.random.default_rng([dataset.seed, epoch, index])
            reference = hrnet.sample(person, rng, force_flip=force_flip, **reference_options)
            sample = dataset[(index, epoch)]
            hrnet.assert_sample_equals(sample, reference)
            seen.add((reference.flipped, reference.rotation != 0, reference.half_body))
            # The mask follows the flipped crop: HRNet's geometry applied to a mirrored copy of the mask.
            mask = instance_mask(dataset.coco, person.key)
            matrix = hrnet.three_point_affine(
                reference.center, reference.scale, reference.rotation, (192, 256)
            )
            to_heatmap = input_to_heatmap_matrix(matrix, (192, 256), (48, 64))
            expected = warp_mask(mask[:, ::-1] if reference.flipped else mask, to_heatmap, (48, 64))
            assert np.abs(sample["mask"][0].numpy() - expected).max() < 1e-3  # measured: 6e-5
    assert {(f, r, h) for f in (True, False) for r in (True, False) for h in (True, False)} <= seen


def test_validation_samples_equal_hrnet(coco_data, document):
    dataset = build_dataset(section(coco_data), "valid", False)
    for index, person in enumerate(reference_people(dataset, document, coco_data)):
        reference = hrnet.sample(
            person,
            None,
            image_size=(192, 256),
            heatmap_size=(48, 64),
            sigma=2.0,
            flip_pairs=hrnet.COCO_FLIP_PAIRS,
            rgb=True,
        )
        sample = dataset[index]
        hrnet.assert_sample_equals(sample, reference)
        np.testing.assert_allclose(sample["meta"]["center"], person.center, atol=1e-4)


def test_images_are_converted_to_rgb(coco_data):
    """COCO samples are RGB (HRNet's COLOR_RGB): channel 0 of the tensor is the image's red channel."""
    dataset = build_dataset(section(coco_data), "valid", False)
    sample = dataset[0]
    record = dataset.records[0]
    image = read_image(record.image)
    matrix = hrnet.three_point_affine(record.center, record.scale, 0.0, (192, 256))
    red = cv2.warpAffine(image, matrix, (192, 256), flags=cv2.INTER_LINEAR)[:, :, 2]
    assert np.abs(hrnet.grey_levels(sample["image"].numpy())[:, :, 0] - red).max() <= 1.0 + 1e-3


@pytest.fixture(scope="module")
def results(coco_data: Path) -> list[dict]:
    """The 73 real keypoint results of the sample (COCO results format, with centre and scale)."""
    return json.loads((coco_data / RESULTS).read_text())


def test_rescoring_equals_hrnet(results):
    keypoints = np.stack([np.asarray(r["keypoints"]).reshape(17, 3) for r in results])
    for box_scores in (np.ones(len(results)), np.array([r["score"] for r in results])):
        for threshold in (0.2, 0.5):
            expected = [hrnet.rescore(k, s, threshold) for k, s in zip(keypoints, box_scores)]
            np.testing.assert_allclose(rescore(keypoints, box_scores, threshold), expected, rtol=1e-12)
    assert np.sum(rescore(keypoints, np.ones(len(results))) == 0) >= 1  # a person with no keypoint above 0.2


def nms_inputs(results: list[dict]) -> tuple[list[int], np.ndarray, list[float], list[float]]:
    """Image ids, keypoints (N, 17, 3), box scores and padded-box areas (prod(scale * 200)) of results."""
    keypoints = np.stack([np.asarray(r["keypoints"]).reshape(17, 3) for r in results])
    areas = [float(np.prod(np.asarray(r["scale"]) * 200)) for r in results]
    return [r["image_id"] for r in results], keypoints, [r["score"] for r in results], areas


def assert_nms_equal(ours: tuple[np.ndarray, np.ndarray], expected: list[tuple[int, float]]) -> None:
    """The same persons kept, with the same rescored scores."""
    keep, scores = ours
    assert sorted(keep.tolist()) == sorted(index for index, _ in expected)
    assert {int(i): scores[i] for i in keep} == pytest.approx(dict(expected), rel=1e-12)


@pytest.mark.parametrize("oks_threshold", [0.9, 0.7, 0.5])
def test_oks_nms_equals_hrnet(results, oks_threshold):
    """Per image, rescore then greedy OKS-NMS with the COCO sigmas and the padded-box areas."""
    image_ids, keypoints, box_scores, areas = nms_inputs(results)
    ours = rescore_and_nms(
        np.array(image_ids), keypoints, np.array(box_scores), np.array(areas), oks_threshold=oks_threshold
    )
    # The real file holds 34 persons of score 0: HRNet's order among equal scores is no rule (see
    # hrnet_reference.oks_nms), so ties are broken by input order on both sides.
    expected = hrnet.evaluate_kept(
        image_ids, keypoints, box_scores, areas, 0.2, oks_threshold, stable_ties=True
    )
    assert_nms_equal(ours, expected)
    # The file was written after an OKS-NMS at 0.9 (highest pairwise OKS 0.896); lower thresholds remove some.
    assert (len(ours[0]) < len(results)) == (oks_threshold < 0.9)
    kept = nms_results(results, oks_threshold=oks_threshold)  # areas from each entry's 'scale', as HRNet
    assert sorted(json.dumps(e["keypoints"]) for e in kept) == sorted(
        json.dumps(results[i]["keypoints"]) for i, _ in expected
    )
    # Without ties, HRNet's own order: every person scores > 0 when no keypoint threshold applies.
    tie_free = rescore_and_nms(
        np.array(image_ids), keypoints, np.ones(len(results)), np.array(areas),
        oks_threshold=oks_threshold, keypoint_score_threshold=0.0,
    )  # fmt: skip
    assert len(set(tie_free[1])) == len(results)
    expected = hrnet.evaluate_kept(image_ids, keypoints, [1.0] * len(results), areas, 0.0, oks_threshold)
    assert_nms_equal(tie_free, expected)


def test_detector_evaluation_equals_hrnet(coco_data, tmp_path):
    """A detector-box evaluation writes exactly the persons and scores HRNet's evaluate keeps."""
    options = {"use_gt_boxes": False, "detection_file": DETECTIONS, "det_score_threshold": 0.0}
    dataset = build_dataset(section(coco_data, **options), "valid", False)
    gt = build_dataset(section(coco_data), "valid", False).records
    rng = np.random.default_rng(0)
    preds, maxvals = [], []
    for record in dataset.records:  # each box predicts the nearest annotated person, with noise
        same_image = [p for p in gt if p.extra["image_id"] == record.extra["image_id"]]
        nearest = min(same_image, key=lambda p: np.linalg.norm(p.center - record.center))
        preds.append(nearest.joints + rng.normal(0, 2.0, size=(17, 2)))
        maxvals.append(rng.uniform(0.0, 1.0, size=(17, 1)))
    preds, maxvals = np.stack(preds), np.stack(maxvals)
    dataset.evaluate(preds, maxvals, output_dir=tmp_path)
    written = json.loads((tmp_path / "keypoints_results.json").read_text())

    detections = json.loads((coco_data / DETECTIONS).read_text())
    people = hrnet.coco_detection_db(detections, 192 / 256, 0.0)
    expected = hrnet.evaluate_kept(
        [p.key for p in people],
        np.concatenate([preds, maxvals], axis=2),
        [p.score for p in people],
        [float(np.prod(p.scale.astype(np.float64) * 200)) for p in people],
    )
    assert 12 <= len(written) == len(expected) < len(people)
    ours = {(e["image_id"], tuple(np.round(e["keypoints"], 6))): e["score"] for e in written}
    reference = {
        (people[i].key, tuple(np.round(np.concatenate([preds[i], maxvals[i]], axis=1).reshape(-1), 6))): score
        for i, score in expected
    }
    assert ours.keys() == reference.keys()
    assert ours == pytest.approx(reference, rel=1e-9)
