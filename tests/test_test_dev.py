"""COCO test-dev: `evaluate.py --split test` predicts an image-info file's images on detector boxes and writes
the evaluation server's results JSON (no ground truth, nothing scored); built here from the real COCO sample
images, with boxes placed so that each one's crop is known, and an ODKD yaml as the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from models.registry import build_model
from tests.test_export import assert_one_paragraph
from utils.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY_HRNET = {"name": "hrnet", "num_joints": 17, "width": 4, "stage_modules": [1, 1, 1], "stage_blocks": 1}
SIZES = {"input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0}  # aspect 0.75, as 256x192
IMAGE_INFO = "annotations/image_info_test-dev2017.json"
DETECTIONS = "person_detection_results/COCO_test-dev2017_detections_AP_H_609_person.json"
BOX = (60.0, 80.0)  # w, h: aspect 0.75 already, so the crop is the box padded by 1.25 (75 x 100)


def corner_boxes(width: int, height: int) -> list[list[float]]:
    """Two small boxes in opposite corners of an image: their padded crops are far apart (OKS ~ 0)."""
    w, h = BOX
    return [[10.0, 10.0, w, h], [width - w - 20.0, height - h - 20.0, w, h]]


def crop_of(box: list[float]) -> tuple[float, float, float, float]:
    """The crop rectangle (x0, y0, x1, y1) of a box with the input's aspect ratio: the box padded by 1.25."""
    x, y, w, h = box
    cx, cy, half_w, half_h = x + w / 2, y + h / 2, 1.25 * w / 2, 1.25 * h / 2
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


@pytest.fixture
def test_dev(coco_data: Path, tmp_path: Path) -> dict:
    """A COCO root in HRNet's test-dev layout: the sample's images as test2017, an image-info file without
    annotations, detections for three of the four images (plus a non-person detection, to be ignored)."""
    root = tmp_path / "coco"
    sample = json.loads((coco_data / "annotations" / "person_keypoints_sample.json").read_text())
    (root / "annotations").mkdir(parents=True)
    info = {"images": sample["images"], "categories": [{"id": 1, "name": "person"}]}  # no 'annotations'
    (root / IMAGE_INFO).write_text(json.dumps(info))
    (root / "images").mkdir()
    (root / "images" / "test2017").symlink_to(coco_data / "images" / "val2017")
    detections = []
    for image in sample["images"][:3]:
        for box in corner_boxes(image["width"], image["height"]):
            detections.append({"image_id": image["id"], "category_id": 1, "bbox": box, "score": 0.9})
    skipped = sample["images"][3]
    detections.append({"image_id": skipped["id"], "category_id": 2, "bbox": [5, 5, 50, 50], "score": 1.0})
    (root / "person_detection_results").mkdir()
    (root / DETECTIONS).write_text(json.dumps(detections))

    checkpoint, config = tiny_odkd_student(tmp_path, {"root": str(root)})
    return {"root": root, "detections": detections, "checkpoint": checkpoint, "config": config}


def tiny_odkd_student(folder: Path, data: dict) -> tuple[Path, Path]:
    """A tiny random HRNet as a deploy.pth, and a config that evaluates it with an ODKD yaml's settings."""
    torch.manual_seed(0)
    network = build_model(TINY_HRNET)
    checkpoint = folder / "deploy.pth"
    save_checkpoint({"kind": "deploy", "model": network.state_dict(), "model_config": TINY_HRNET}, checkpoint)
    config = folder / "student.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base": str(REPO / "experiments" / "odkd" / "hrnet_w16_baseline.yaml"),
                "data": {**data, **SIZES},
                "runtime": {"workers": 0, "device": "cpu"},
                "test": {"batch_size": 8},
            }
        )
    )
    return checkpoint, config


def evaluate(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    from engine.cli import evaluate_main, run_cli

    code = run_cli(evaluate_main, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def split_test_args(test_dev: dict) -> list[object]:
    """evaluate.py's arguments for the fixture's checkpoint and config on the test split (no flip: faster)."""
    return [
        "--checkpoint",
        test_dev["checkpoint"],
        "--config",
        test_dev["config"],
        "--split",
        "test",
        "--no-flip",
    ]


def test_each_detection_box_gives_one_server_result(test_dev: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "test_dev"
    args = split_test_args(test_dev)
    code, printed, _ = evaluate(capsys, *args, "--output-dir", out)
    assert code == 0
    results_file = out / "branch0" / "keypoints_test-dev2017_results.json"
    results = json.loads(results_file.read_text())
    persons = [d for d in test_dev["detections"] if d["category_id"] == 1]
    assert len(results) == len(persons) == 6  # one result per person box; the category-2 box gives none
    assert not (out / "tables.json").exists()  # nothing scored
    assert (
        f"6 persons in 3 images of test-dev2017 (of 6 detector boxes, after OKS-NMS) written to {results_file}"
        in printed
    )
    for entry in results:
        assert set(entry) == {"image_id", "category_id", "keypoints", "score"}  # the server's fields only
        assert entry["category_id"] == 1 and len(entry["keypoints"]) == 3 * 17
        assert 0.0 <= entry["score"] <= 0.9  # detector score x mean keypoint score (HRNet's rescoring)
    # Every box is matched by exactly one result of its image whose 17 keypoints all lie in the box's crop.
    for box in persons:
        x0, y0, x1, y1 = crop_of(box["bbox"])
        inside = [
            entry
            for entry in results
            if entry["image_id"] == box["image_id"]
            and all(
                x0 - 1e-6 <= x <= x1 + 1e-6 and y0 - 1e-6 <= y <= y1 + 1e-6
                for x, y in zip(entry["keypoints"][0::3], entry["keypoints"][1::3], strict=True)
            )
        ]
        assert len(inside) == 1, box

    code, _, stderr = evaluate(capsys, *args, "--output-dir", out)
    assert_one_paragraph(code, stderr, f"{results_file} already exists", "--overwrite")
    results_file.write_text("[]")
    assert evaluate(capsys, *args, "--output-dir", out, "--overwrite")[0] == 0
    assert json.loads(results_file.read_text()) == results  # the same predictions, written again


def test_missing_image_info_or_detections_are_refused(test_dev: dict, tmp_path: Path, capsys) -> None:
    args = split_test_args(test_dev)
    out = tmp_path / "out"
    (test_dev["root"] / DETECTIONS).rename(tmp_path / "detections.json")
    code, _, stderr = evaluate(capsys, *args, "--output-dir", out)
    assert_one_paragraph(
        code,
        stderr,
        f"COCO detection file not found: {test_dev['root'] / DETECTIONS}",
        "COCO_test-dev2017_detections_AP_H_609_person.json",
        "deep-high-resolution-net.pytorch",
        "data.test_detection_file",
    )
    (test_dev["root"] / IMAGE_INFO).unlink()
    code, _, stderr = evaluate(capsys, *args, "--output-dir", out)
    assert_one_paragraph(
        code,
        stderr,
        f"image-info file (no ground truth) not found: {test_dev['root'] / IMAGE_INFO}",
        "cocodataset.org",
    )
    assert not out.exists()


def test_an_annotation_file_is_not_an_image_info_file(coco_data: Path, test_dev: dict, capsys) -> None:
    """A results list passed as the image-info file is refused, naming the file and what was expected."""
    bad = coco_data / "annotations" / "sample_keypoint_results.json"
    args = split_test_args(test_dev)
    code, _, stderr = evaluate(capsys, *args, "--set", f"data.test_ann_file={bad}")
    assert_one_paragraph(code, stderr, f"{bad} is not a COCO image-info file", "'images' list")
