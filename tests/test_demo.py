"""demo.py on the real MPII and COCO samples: one PNG and one JSON per image, the evaluation path's keypoints,
PyTorch and onnxruntime within a pixel, and one clear paragraph for each bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

from datasets.coco import clean_box
from datasets.coco_eval import coco_results, rescore
from datasets.keypoints import COCO
from datasets.registry import build_dataset
from datasets.transforms import read_image
from demo import main as demo_main
from engine.cli import run_cli
from engine.inference.loops import predict
from engine.inference.predictor import Predictor
from engine.runtime.execution import make_runtime
from tests.conftest import require_package
from tests.deploy_helpers import (
    coco_data_section,
    mpii_data_section,
    random_deploy_checkpoint,
    tiny_okdhp_run,
    with_nan_weight,
)
from tests.test_export import assert_one_paragraph
from tools.export import main as export_main

require_package("onnxruntime")
ONE_PIXEL = 1.0
SAME = 1e-3  # pixels: the evaluation path carries box centres and scales as float32, the demo as float64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_okdhp_run(tmp_path_factory)


@pytest.fixture(scope="module")
def coco_checkpoint(coco_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small 17-joint hourglass with realistic random weights, saved as a COCO deploy.pth."""
    section = {"name": "hourglass", "num_joints": 17, "num_stacks": 1, "num_features": 16, "depth": 2}
    path = tmp_path_factory.mktemp("coco_ckpt") / "deploy.pth"
    return random_deploy_checkpoint(section, coco_data_section(coco_data), path)


def assert_same_keypoints(onnx_points: np.ndarray, torch_points: np.ndarray) -> None:
    """onnxruntime's keypoints are PyTorch's: every score (a heatmap's maximum) within 1e-4, and every position
    within a pixel except where a random network's flat heatmap has two maxima within rounding (at most 5%)."""
    np.testing.assert_allclose(onnx_points[..., 2], torch_points[..., 2], atol=1e-4)
    within = np.abs(onnx_points[..., :2] - torch_points[..., :2]).max(axis=-1) < ONE_PIXEL
    assert within.mean() >= 0.95, np.argwhere(~within)


def demo(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    code = run_cli(demo_main, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def export(capsys: pytest.CaptureFixture, checkpoint: Path, out: Path) -> Path:
    code = run_cli(export_main, [str(checkpoint), "--onnx", str(out)])
    assert code == 0, capsys.readouterr().err
    return out


def evaluation_predictions(checkpoint: Path, data: dict) -> tuple[np.ndarray, np.ndarray, object]:
    """What the project's evaluation path predicts for the sample's persons (flip test as the checkpoint says)."""
    predictor = Predictor.from_checkpoint(checkpoint, make_runtime("cpu"))
    dataset = build_dataset(data, "valid", train=False, codec=predictor.codec)
    preds, maxvals = predict(predictor, DataLoader(dataset, batch_size=8))["branch0"]
    return preds, maxvals[..., 0], dataset


def mpii_boxes(dataset) -> dict[str, list[list[float]]]:
    """Each MPII person's square crop box without the 1.25 padding, so that the demo's crop is the dataset's."""
    boxes: dict[str, list[list[float]]] = {}
    for record in dataset.records:
        side = record.scale[0] * 200 / 1.25
        x, y = record.center - side / 2
        boxes.setdefault(record.image.name, []).append([x, y, side, side])
    return boxes


def plain_keypoints(folder: Path, dataset) -> np.ndarray:
    """The keypoints (N, J, 3) of the demo's plain JSON files, in the dataset's person order."""
    rows, seen = [], {}
    for record in dataset.records:
        document = json.loads((folder / f"{record.image.name}.json").read_text())
        index = seen.get(record.image.name, 0)
        seen[record.image.name] = index + 1
        rows.append(document["persons"][index]["keypoints"])
    return np.array(rows)


def test_mpii_sample_with_ground_truth_boxes(run_dir, mpii_data, tmp_path, capsys) -> None:
    checkpoint = run_dir / "deploy.pth"
    preds, scores, dataset = evaluation_predictions(checkpoint, mpii_data_section(mpii_data))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(mpii_boxes(dataset)))

    code, _, stderr = demo(
        capsys, mpii_data / "images", "--checkpoint", checkpoint, "--boxes", boxes, "--out", tmp_path / "pt"
    )
    assert code == 0, stderr
    images = sorted(p.name for p in (mpii_data / "images").glob("*.jpg"))
    assert sorted(p.name for p in (tmp_path / "pt").glob("*.png")) == [f"{n}.png" for n in images]
    assert sorted(p.name for p in (tmp_path / "pt").glob("*.json")) == [f"{n}.json" for n in images]
    torch_points = plain_keypoints(tmp_path / "pt", dataset)
    np.testing.assert_allclose(torch_points[..., :2], preds, atol=SAME)
    np.testing.assert_allclose(torch_points[..., 2], scores, atol=1e-6)

    onnx = export(capsys, checkpoint, tmp_path / "net.onnx")
    code, _, stderr = demo(
        capsys, mpii_data / "images", "--onnx", onnx, "--boxes", boxes, "--out", tmp_path / "onnx"
    )
    assert code == 0, stderr
    onnx_points = plain_keypoints(tmp_path / "onnx", dataset)
    assert_same_keypoints(onnx_points, torch_points)

    # A program that knows only the ONNX file and its sidecar (isolated: nothing of this repository on its
    # path) computes the same keypoints.
    record = dataset.records[0]
    box = mpii_boxes(dataset)[record.image.name][0]
    script = Path(__file__).resolve().parents[1] / "tools" / "standalone_pose.py"
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(onnx), str(record.image), "--box", *map(str, box)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    standalone = np.array(json.loads(result.stdout)["keypoints"])
    np.testing.assert_allclose(standalone, onnx_points[0], atol=1e-3)


def test_coco_sample_with_ground_truth_boxes(coco_checkpoint, coco_data, tmp_path, capsys) -> None:
    preds, scores, dataset = evaluation_predictions(coco_checkpoint, coco_data_section(coco_data))
    document = json.loads((coco_data / "annotations/person_keypoints_sample.json").read_text())
    images = {image["id"]: image for image in document["images"]}
    boxes: dict[str, list] = {}
    for ann in document["annotations"]:  # the dataset's ground-truth persons, in its order
        if max(ann["keypoints"]) > 0 and not ann.get("iscrowd"):
            image = images[ann["image_id"]]
            box = clean_box(ann["bbox"], image["width"], image["height"])
            boxes.setdefault(image["file_name"], []).append(box.tolist())
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    folder = coco_data / "images/val2017"

    code, _, stderr = demo(
        capsys,
        folder,
        "--checkpoint",
        coco_checkpoint,
        "--boxes",
        tmp_path / "boxes.json",
        "--out",
        tmp_path / "pt",
    )
    assert code == 0, stderr
    assert len(list((tmp_path / "pt").glob("0*.png"))) == len(list((tmp_path / "pt").glob("0*.json"))) == 4
    results = json.loads((tmp_path / "pt" / "coco_results.json").read_text())
    triples = np.concatenate([preds, scores[..., None]], axis=2)
    expected = coco_results(
        np.array([r.extra["image_id"] for r in dataset.records]),
        triples,
        rescore(triples, np.ones(len(triples))),
    )
    assert [r["image_id"] for r in results] == [e["image_id"] for e in expected]
    assert all(
        set(r) == {"image_id", "category_id", "keypoints", "score"} and r["category_id"] == 1 for r in results
    )
    np.testing.assert_allclose(
        [r["keypoints"] for r in results], [e["keypoints"] for e in expected], atol=SAME
    )
    np.testing.assert_allclose([r["score"] for r in results], [e["score"] for e in expected], atol=1e-6)
    per_image = json.loads((tmp_path / "pt" / "000000000785.jpg.json").read_text())
    assert (
        per_image == [r for r in results if r["image_id"] == 785]
        and len(per_image[0]["keypoints"]) == 3 * COCO.num_joints
    )

    onnx = export(capsys, coco_checkpoint, tmp_path / "net.onnx")  # batch 1: the demo runs person by person
    code, _, stderr = demo(
        capsys,
        folder,
        "--onnx",
        onnx,
        "--checkpoint",
        coco_checkpoint,
        "--boxes",
        tmp_path / "boxes.json",
        "--out",
        tmp_path / "onnx",
    )
    assert code == 0, stderr
    onnx_results = json.loads((tmp_path / "onnx" / "coco_results.json").read_text())
    got = np.array([r["keypoints"] for r in onnx_results]).reshape(-1, 17, 3)
    want = np.array([r["keypoints"] for r in results]).reshape(-1, 17, 3)
    assert_same_keypoints(got, want)


def test_detections_whole_image_and_ensemble(
    run_dir, coco_checkpoint, coco_data, mpii_data, tmp_path, capsys
) -> None:
    detections = coco_data / "person_detection_results/sample_detections.json"
    code, _, stderr = demo(
        capsys,
        coco_data / "images/val2017",
        "--checkpoint",
        coco_checkpoint,
        "--detections",
        detections,
        "--score-threshold",
        "0.9",
        "--out",
        tmp_path / "det",
    )
    assert code == 0, stderr
    wanted = [d for d in json.loads(detections.read_text()) if d["score"] >= 0.9 and d["category_id"] == 1]
    results = json.loads((tmp_path / "det" / "coco_results.json").read_text())
    assert sorted(r["image_id"] for r in results) == sorted(d["image_id"] for d in wanted)

    image = sorted((mpii_data / "images").glob("*.jpg"))[0]
    code, _, stderr = demo(
        capsys, image, "--checkpoint", run_dir / "best.pth", "--head", "ensemble", "--out", tmp_path / "whole"
    )
    assert code == 0, stderr
    person = json.loads((tmp_path / "whole" / f"{image.name}.json").read_text())["persons"]
    assert len(person) == 1 and person[0]["box"][:2] == [0.0, 0.0]
    from engine.inference.predictor import box_crop

    predictor = Predictor.from_checkpoint(run_dir / "best.pth", make_runtime("cpu"))
    center, scale = box_crop(person[0]["box"], predictor.codec.input_size)
    keypoints, _ = predictor.predict(read_image(image), [center], [scale], head="ensemble")
    np.testing.assert_allclose(np.array(person[0]["keypoints"])[:, :2], keypoints[0], atol=1e-6)


def test_bad_inputs_give_one_paragraph(run_dir, mpii_data, tmp_path, capsys, monkeypatch) -> None:
    deploy, image = run_dir / "deploy.pth", sorted((mpii_data / "images").glob("*.jpg"))[0]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are notes, not a JPEG")
    code, _, stderr = demo(capsys, not_an_image, "--checkpoint", deploy, "--out", tmp_path / "o")
    assert_one_paragraph(code, stderr, "cannot decode image", "notes.jpg")
    # in a folder, the unreadable file is named and skipped, the others are processed, and the exit is 2;
    # a photo whose EXIF tag says "turn me" is used as stored, and the demo says so
    from datasets.transforms import read_image
    from tests.test_transforms import jpeg_with_orientation

    folder = tmp_path / "photos"
    folder.mkdir()
    not_an_image.rename(folder / "notes.jpg")
    # a viewer turns it 90 degrees clockwise
    (folder / "turned.jpg").write_bytes(jpeg_with_orientation(read_image(image), 6))
    code, stdout, stderr = demo(capsys, folder, "--checkpoint", deploy, "--out", tmp_path / "folder_out")
    assert_one_paragraph(
        code, stderr, "1 of the 2 image(s) could not be read", "notes.jpg", "the other 1 were"
    )
    assert (tmp_path / "folder_out" / "turned.jpg.png").is_file()
    assert "turned.jpg: its EXIF orientation tag (6) is ignored" in stdout

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image.name: [[5000, 10, 100, 200]]}))
    code, _, stderr = demo(capsys, image, "--checkpoint", deploy, "--boxes", boxes, "--out", tmp_path / "o")
    assert_one_paragraph(code, stderr, "lies outside the 1280x720 image", image.name)

    code, _, stderr = demo(capsys, image, "--checkpoint", run_dir / "best.pth", "--out", tmp_path / "o")
    assert_one_paragraph(code, stderr, "multi-branch", "branch0, branch1", "ensemble")

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    (tmp_path / "x.onnx").write_bytes(b"")
    (tmp_path / "x.json").write_text(json.dumps({"format": "okdhp-pose-onnx/1"}))
    code, _, stderr = demo(capsys, image, "--onnx", tmp_path / "x.onnx", "--out", tmp_path / "o")
    assert_one_paragraph(code, stderr, "'onnxruntime'", "requirements-export.txt")


def small_copy(source: Path, target: Path) -> bytes:
    """A 96x54 copy of a real image in ``target``'s format; returns its bytes."""
    image = cv2.resize(read_image(source), (96, 54), interpolation=cv2.INTER_AREA)
    assert cv2.imwrite(str(target), image)
    return target.read_bytes()


def test_results_written_into_the_input_folder_keep_the_inputs(run_dir, mpii_data, tmp_path, capsys) -> None:
    sample = sorted((mpii_data / "images").glob("*.jpg"))
    folder = tmp_path / "photos"
    folder.mkdir()
    inputs = {
        name: small_copy(sample[i % 2], folder / name) for i, name in enumerate(["p.jpg", "p.png", "q.png"])
    }
    deploy = run_dir / "deploy.pth"

    code, _, stderr = demo(capsys, folder, "--checkpoint", deploy, "--out", folder)
    assert code == 0, stderr
    assert {name: (folder / name).read_bytes() for name in inputs} == inputs  # byte-identical
    written = sorted(p.name for p in folder.iterdir() if p.name not in inputs)
    assert written == sorted(f"{name}.{kind}" for name in inputs for kind in ("png", "json"))
    assert json.loads((folder / "p.jpg.json").read_text())["image"] == "p.jpg"  # two results for p
    assert json.loads((folder / "p.png.json").read_text())["image"] == "p.png"

    # Again into the same folder: its results are now inputs too (p.png.png is an image), never replaced.
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for extra in ([], ["--overwrite"]):
        code, _, stderr = demo(capsys, folder, "--checkpoint", deploy, "--out", folder, *extra)
        assert_one_paragraph(code, stderr, "would replace the input file", "never replaced")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    code, _, stderr = demo(capsys, folder / "p.jpg", "--checkpoint", deploy, "--out", folder)
    assert_one_paragraph(code, stderr, f"{folder / 'p.jpg.png'} and 1 more already exist", "--overwrite")
    code, _, stderr = demo(capsys, folder / "p.jpg", "--checkpoint", deploy, "--out", folder, "--overwrite")
    assert code == 0, stderr
    assert (folder / "p.jpg").read_bytes() == inputs["p.jpg"]


def test_bad_outputs_and_values_give_one_paragraph(run_dir, mpii_data, tmp_path, capsys, monkeypatch) -> None:
    deploy, image = run_dir / "deploy.pth", sorted((mpii_data / "images").glob("*.jpg"))[0]
    checkpoint, weight = with_nan_weight(deploy, tmp_path / "diverged.pth")
    code, _, stderr = demo(capsys, image, "--checkpoint", checkpoint, "--out", tmp_path / "nan")
    assert_one_paragraph(code, stderr, f"checkpoint {checkpoint}: weight '{weight}'", "non-finite")

    a_file = tmp_path / "results.txt"
    a_file.write_text("keep")
    code, _, stderr = demo(capsys, image, "--checkpoint", deploy, "--out", a_file)
    assert_one_paragraph(code, stderr, f"cannot create the output folder {a_file}", "is a file")
    assert a_file.read_text() == "keep"

    monkeypatch.setattr("utils.output_paths.writable", lambda folder: False)  # a read-only filesystem
    code, _, stderr = demo(capsys, image, "--checkpoint", deploy, "--out", tmp_path / "ro")
    assert_one_paragraph(code, stderr, "is not writable", "--out")
    monkeypatch.undo()

    for value in ("nan", "inf", "-0.1", "1.5"):
        code, _, stderr = demo(
            capsys, image, "--checkpoint", deploy, "--detections", "dets.json", "--score-threshold", value
        )
        assert_one_paragraph(code, stderr, f"--score-threshold {float(value)}", "from 0 to 1")

    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image.name: [[0, 0, 1e15, 1e15]]}))
    code, _, stderr = demo(capsys, image, "--checkpoint", deploy, "--boxes", boxes, "--out", tmp_path / "big")
    assert_one_paragraph(code, stderr, "more than 100 times the 1280x720 image", image.name)
