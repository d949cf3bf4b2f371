"""Known answers on the path every run takes: the datasets' own evaluate and augmentation, built from the
experiments' resolved configs, against figures and formulas written in this file.

- MPII: ``MPIIDataset.evaluate`` (what validation, model selection and evaluate.py call) on the real stored
  predictions of ``detections_our_format.mat`` gives that method's PCKh table.
- COCO: the OKS sigmas are pycocotools' own; ``CocoDataset.evaluate`` (rescoring, OKS-NMS, COCOeval) gives
  AP 1 for the ground truth, the AP a hand-computed OKS implies, and keeps what OKS-NMS at 0.9 must keep.
- Augmentation: the draws of a training set built from the paper configs have SPEC B's distribution.
- Schedule: the learning rate each epoch of a run really used (its log.jsonl) is the recipe's, stepped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.base import TopDownDataset
from datasets.keypoints import COCO_OKS_SIGMAS
from datasets.registry import build_dataset
from engine.experiment.config import load_config
from engine.training.log import read_log
from engine.training.run import TrainingRun

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

# pycocotools' per-keypoint sigmas (cocoeval.py, Params.setKpParams), nose ... right ankle
PYCOCOTOOLS_SIGMAS = [
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087,
    0.089, 0.089,
]  # fmt: skip
OKS_THRESHOLDS = [0.5 + 0.05 * i for i in range(10)]

# PCKh (HRNet protocol, threshold 0.5, head size 0.6 x head box diagonal) of the older published method whose
# predictions ``pos_pred_src`` holds, on the 2958 validation persons: the figures of test_pckh.py's plain loop.
STORED_PREDICTIONS_PCKH = {
    "Head": 95.6003,
    "Shoulder": 92.7140,
    "Elbow": 83.3646,
    "Wrist": 76.7357,
    "Hip": 81.9283,
    "Knee": 73.3628,
    "Ankle": 65.4462,
    "Mean": 82.3367,
    "Mean@0.1": 28.9748,
    "MeanUnweighted": 81.4584,
}


def data_section(experiment: str, **changes: Any) -> dict[str, Any]:
    """An experiment's ``data`` section as its yaml resolves it, with the given keys changed (e.g. the root)."""
    return {**load_config(EXPERIMENTS / f"{experiment}.yaml").data, **changes}


# ------------------------------------------------------------------------------------------------- MPII
@pytest.fixture(scope="module")
def mpii_validation(mpii_data: Path) -> TopDownDataset:
    """The 2958 validation persons (valid.h5) scored against detections_our_format.mat, as mpii/hg4_okdhp."""
    section = data_section(
        "mpii/hg4_okdhp",
        root=str(mpii_data),
        annotation_format="h5",
        annotation_file="annot/valid.h5",
        gt_file="annot/detections_our_format.mat",
    )
    return build_dataset(section, split="valid", train=False)


def test_mpii_evaluate_gives_the_stored_predictions_pckh(mpii_validation, mpii_data: Path) -> None:
    content = scipy.io.loadmat(str(mpii_data / "annot" / "detections_our_format.mat"))
    predictions = np.transpose(content["pos_pred_src"], (2, 0, 1)) - 1.0  # MATLAB 1-based -> 0-based
    assert len(mpii_validation) == len(predictions) == 2958
    result = mpii_validation.evaluate(predictions, np.ones((2958, 16, 1)))
    for key, value in STORED_PREDICTIONS_PCKH.items():
        assert result.table[key] == pytest.approx(value, abs=5e-4), key
    assert result.metric == result.table["Mean"]


def test_mpii_evaluate_of_the_ground_truth_and_of_a_known_miss(mpii_validation, mpii_data: Path) -> None:
    """Ground truth scores 100; a shift of 0.49 head sizes still counts, 0.51 does not (threshold 0.5)."""
    content = scipy.io.loadmat(str(mpii_data / "annot" / "detections_our_format.mat"))
    truth = np.transpose(content["pos_gt_src"], (2, 0, 1)) - 1.0
    boxes = np.transpose(content["headboxes_src"], (2, 0, 1))
    head = 0.6 * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1)  # head size, SPEC B
    ones = np.ones((len(truth), 16, 1))
    assert mpii_validation.evaluate(truth, ones).table["Mean"] == 100.0
    for fraction, expected in ((0.49, 100.0), (0.51, 0.0)):
        moved = truth + np.stack([fraction * head, np.zeros_like(head)], axis=1)[:, None, :]
        table = mpii_validation.evaluate(moved, ones).table
        assert table["Mean"] == expected and table["Mean@0.1"] == 0.0, fraction


# ------------------------------------------------------------------------------------------------- COCO
def test_oks_sigmas_are_pycocotools_own() -> None:
    """The sigmas of the project's OKS-NMS are the ones COCOeval scores with."""
    theirs = COCOeval(iouType="keypoints").params.kpt_oks_sigmas
    np.testing.assert_allclose(theirs, PYCOCOTOOLS_SIGMAS, rtol=0, atol=1e-15)
    np.testing.assert_allclose(COCO_OKS_SIGMAS, theirs, rtol=0, atol=1e-15)


def test_coco_evaluate_of_the_real_ground_truth_is_ap_one(coco_data: Path) -> None:
    section = data_section(
        "coco/hg4_okdhp", root=str(coco_data), ann_file="annotations/person_keypoints_sample.json"
    )
    dataset = build_dataset(section, split="valid", train=False)
    assert len(dataset) == 12  # the 12 non-crowd persons with keypoints
    preds = np.stack([record.joints for record in dataset.records])
    result = dataset.evaluate(preds, np.ones((len(preds), 17, 1)))
    assert result.table["AP"] == 1.0 and result.table["AR"] == 1.0


# A standing person (17 COCO keypoints, x then y), relative to the person's top-left corner.
TEMPLATE = np.array([
    [50, 20], [45, 15], [55, 15], [40, 18], [60, 18], [35, 50], [65, 50], [30, 80], [70, 80],
    [28, 110], [72, 110], [40, 120], [60, 120], [40, 160], [60, 160], [40, 200], [60, 200],
], dtype=np.float64)  # fmt: skip
SEGMENT_AREA = 6000.0  # the annotation's 'area': COCOeval's OKS scale s^2


def person(image_id: int, ann_id: int, origin: tuple[float, float]) -> dict[str, Any]:
    """A COCO annotation of TEMPLATE placed at ``origin``, every keypoint labelled and visible."""
    joints = TEMPLATE + np.asarray(origin)
    x1, y1 = joints.min(axis=0) - 5
    x2, y2 = joints.max(axis=0) + 5
    keypoints = np.concatenate([joints, np.full((17, 1), 2.0)], axis=1).reshape(-1)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "area": SEGMENT_AREA,
        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
        "num_keypoints": 17,
        "keypoints": keypoints.tolist(),
    }


def write_coco(folder: Path, annotations: list[dict[str, Any]]) -> Path:
    """A COCO keypoints folder (annotation file, empty image folder: evaluation reads no pixel)."""
    (folder / "images" / "val2017").mkdir(parents=True)
    images = sorted({a["image_id"] for a in annotations})
    document = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in images],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}],
    }
    (folder / "annotations").mkdir()
    (folder / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(document))
    return folder


def oks(pred: np.ndarray, truth: np.ndarray, area: float) -> float:
    """COCO's OKS with every keypoint labelled: mean_j exp(-d_j^2 / (2 s^2 k_j^2)), k_j = 2 sigma_j."""
    squared = ((pred - truth) ** 2).sum(axis=1)
    k = 2.0 * np.asarray(PYCOCOTOOLS_SIGMAS)
    return float(np.mean(np.exp(-squared / (2.0 * area * k**2))))


def padded_box_area(annotation: dict[str, Any]) -> float:
    """HRNet's person area for OKS-NMS: the cleaned box (w - 1, h - 1) widened to 192:256, padded by 1.25."""
    w, h = annotation["bbox"][2] - 1.0, annotation["bbox"][3] - 1.0
    if w > 0.75 * h:
        h = w / 0.75
    else:
        w = 0.75 * h
    return (1.25 * w) * (1.25 * h)


def test_coco_evaluate_gives_the_ap_of_a_computed_oks(tmp_path: Path) -> None:
    """One person, one prediction with OKS 0.72: matched at the thresholds 0.50 ... 0.70 only, so AP = 5/10."""
    annotation = person(1, 1, (200.0, 100.0))
    root = write_coco(tmp_path, [annotation])
    dataset = build_dataset(data_section("coco/hg4_okdhp", root=str(root)), split="valid", train=False)
    (record,) = dataset.records
    truth = TEMPLATE + np.array([200.0, 100.0])
    np.testing.assert_allclose(record.joints, truth)
    directions = np.stack([np.cos(np.arange(17)), np.sin(np.arange(17))], axis=1)
    prediction = truth + 6.4 * directions  # 6.4 pixels off in a different direction for every joint
    value = oks(prediction, truth, SEGMENT_AREA)
    assert 0.71 < value < 0.73  # clear of the thresholds 0.70 and 0.75
    expected_ap = float(np.mean([value >= t for t in OKS_THRESHOLDS]))
    assert expected_ap == 0.5
    result = dataset.evaluate(prediction[None], np.ones((1, 17, 1)))
    assert result.table["AP"] == pytest.approx(expected_ap, abs=1e-12)
    assert result.table["AP50"] == pytest.approx(1.0, abs=1e-12) and result.table["AP75"] == 0.0


def test_coco_evaluate_rescores_and_keeps_what_oks_nms_at_0_9_keeps(tmp_path: Path) -> None:
    """Two images, two persons each, side by side; the predictions are exact, only the shift between them varies.

    Image 1: shift 9.5 px, OKS between the two predictions 0.89: both kept. Image 2: shift 8.5 px, OKS 0.91:
    the lower-scored one is dropped. Scores: box score 1 x mean of the keypoint scores above 0.2.
    """
    annotations = [
        person(1, 1, (100.0, 100.0)),
        person(1, 2, (109.5, 100.0)),
        person(2, 3, (100.0, 100.0)),
        person(2, 4, (108.5, 100.0)),
    ]
    root = write_coco(tmp_path / "coco", annotations)
    dataset = build_dataset(data_section("coco/hg4_okdhp", root=str(root)), split="valid", train=False)
    assert [record.extra["ann_id"] for record in dataset.records] == [1, 2, 3, 4]
    areas = [padded_box_area(a) for a in annotations]
    for record, area in zip(dataset.records, areas):
        assert record.extra["area"] == pytest.approx(area, rel=1e-12)
    joints = [np.asarray(a["keypoints"]).reshape(17, 3)[:, :2] for a in annotations]
    between = [oks(joints[0], joints[1], areas[0]), oks(joints[2], joints[3], areas[2])]
    assert 0.885 < between[0] < 0.895 and 0.905 < between[1] < 0.915  # on either side of 0.9

    # keypoint scores: 5 at 0.15 (ignored by the rescoring), 6 at 0.25, 6 at a per-person value
    top = [0.8, 0.7, 0.9, 0.6]
    maxvals = np.array([[0.15] * 5 + [0.25] * 6 + [t] * 6 for t in top])
    expected_scores = [(6 * 0.25 + 6 * t) / 12 for t in top]
    result = dataset.evaluate(np.stack(joints), maxvals[..., None], output_dir=tmp_path / "out")
    written = json.loads((tmp_path / "out" / "keypoints_results.json").read_text())
    kept = [0, 1, 2]  # person 4 overlaps person 3 (OKS > 0.9) and scores lower
    assert [entry["image_id"] for entry in written] == [1, 1, 2]
    assert [entry["score"] for entry in written] == pytest.approx(
        [expected_scores[i] for i in kept], abs=1e-12
    )
    for entry, index in zip(written, kept):
        np.testing.assert_allclose(np.reshape(entry["keypoints"], (17, 3))[:, :2], joints[index])

    # the AP of exactly those results, by pycocotools directly
    coco = COCO(str(root / "annotations" / "person_keypoints_val2017.json"))
    expected = [
        {
            "image_id": annotations[i]["image_id"],
            "category_id": 1,
            "keypoints": np.concatenate([joints[i], maxvals[i][:, None]], axis=1).reshape(-1).tolist(),
            "score": expected_scores[i],
        }
        for i in kept
    ]
    evaluator = COCOeval(coco, coco.loadRes(expected), iouType="keypoints")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert result.table["AP"] == pytest.approx(evaluator.stats[0], abs=1e-12)
    assert result.table["AR"] == pytest.approx(0.75, abs=1e-12)  # 3 of the 4 persons found


# ------------------------------------------------------------------------------------------ augmentation
def draws(dataset, epochs: int) -> dict[str, np.ndarray]:
    """The augmentation of every sample in ``epochs`` epochs (no image is read)."""
    out: dict[str, list] = {"scale": [], "rotation": [], "flipped": [], "moved": [], "eligible": []}
    for epoch in range(epochs):
        for index, record in enumerate(dataset.records):
            draw = dataset.draw_augmentation(index, epoch)
            out["rotation"].append(draw.rotation)
            out["flipped"].append(draw.flipped)
            moved = not np.allclose(draw.center, record.center)  # half-body replaced the box
            out["moved"].append(moved)
            out["eligible"].append(np.sum(record.joints_vis > 0) > 8)
            if not moved:
                out["scale"].append(draw.scale[0] / record.scale[0])
    return {key: np.asarray(value) for key, value in out.items()}


def check_rotation_scale_flip(values: dict[str, np.ndarray], scale: float, rotation: float) -> None:
    """SPEC B: scale clip(N*s + 1, 1 - s, 1 + s); with probability 0.6 rotation clip(N*r, -2r, 2r); flip 0.5."""
    scales, rotations = values["scale"], values["rotation"]
    assert scales.min() == pytest.approx(1 - scale, abs=1e-12) and scales.max() == pytest.approx(
        1 + scale, abs=1e-12
    )
    assert np.mean(np.isclose(scales, 1 - scale)) == pytest.approx(0.1587, abs=0.03)  # P(N < -1), clipped
    assert np.mean(rotations != 0.0) == pytest.approx(0.6, abs=0.03)
    assert np.abs(rotations).max() == pytest.approx(2 * rotation, abs=1e-9)
    inside = rotations[(rotations != 0.0) & (np.abs(rotations) < 2 * rotation)]
    assert np.std(inside) == pytest.approx(0.88 * rotation, rel=0.08)  # std of N truncated at +-2: 0.880
    assert np.mean(values["flipped"]) == pytest.approx(0.5, abs=0.03)


def test_mpii_training_draws_follow_spec(mpii_data: Path) -> None:
    section = data_section("mpii/hg4_okdhp", root=str(mpii_data), annotation_file="annot/sample.json")
    dataset = build_dataset(section, split="train", train=True)
    values = draws(dataset, epochs=800)  # 5 persons: 4000 draws
    assert not values["moved"].any()  # no half-body on MPII
    check_rotation_scale_flip(values, scale=0.25, rotation=30.0)


def test_coco_training_draws_follow_spec(coco_data: Path) -> None:
    section = data_section(
        "coco/hg4_okdhp",
        root=str(coco_data),
        ann_file="annotations/person_keypoints_sample.json",
        train_set="val2017",
    )
    dataset = build_dataset(section, split="train", train=True)
    values = draws(dataset, epochs=400)  # 12 persons: 4800 draws
    assert values["eligible"].all()  # every sample person has more than 8 labelled joints
    assert np.mean(values["moved"]) == pytest.approx(0.3, abs=0.03)  # half-body with probability 0.3
    check_rotation_scale_flip(values, scale=0.3, rotation=40.0)


def test_truncated_normal_std() -> None:
    """The 0.880 above: the std of N(0, 1) restricted to (-2, 2)."""
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)  # density at 2
    mass = math.erf(2 / math.sqrt(2))
    assert math.sqrt(1 - 2 * 2 * phi / mass) == pytest.approx(0.880, abs=1e-3)


# ---------------------------------------------------------------------------------------------- schedule
def test_learning_rate_of_each_epoch_is_the_recipes(mpii_data: Path, tmp_path: Path) -> None:
    """A 3-epoch run of mpii/hg2_baseline's recipe with steps moved to epochs 1 and 2 (one iteration each)."""
    config_path = tmp_path / "schedule.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "base": str(EXPERIMENTS / "mpii/hg2_baseline.yaml"),
                "model": {"num_stacks": 1, "num_features": 8, "depth": 1},
                "data": {
                    "root": str(mpii_data),
                    "annotation_file": "annot/sample.json",
                    "gt_file": "annot/detections_our_format.mat",
                    "input_size": [64, 64],
                    "heatmap_size": [16, 16],
                },
                "train": {
                    "epochs": 3,
                    "batch_size": 2,
                    "iters_per_epoch": 1,
                    "lr_steps": [1, 2],
                    "val_every": 3,
                },
                "runtime": {"device": "cpu", "workers": 0},
            }
        )
    )
    torch.set_num_threads(1)  # a tiny network (conftest sets its own count again for the next test)
    run = TrainingRun(load_config(config_path), tmp_path / "run")
    run.fit(log=lambda *_: None)
    lrs = [record["lr"] for record in read_log(tmp_path / "run" / "log.jsonl")]
    assert lrs == pytest.approx([2.5e-4, 2.5e-5, 2.5e-6], rel=1e-9)  # SPEC B: lr 2.5e-4, x0.1 at each step
    assert type(run.optimizer) is torch.optim.Adam
    group = run.optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0.0
