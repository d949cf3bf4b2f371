"""demo.py on a video: an annotated video with the input's frame count, rate and size, and one JSON line per
frame holding the keypoints the predictor gives for that frame's pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from demo import main as demo_main
from engine.cli import run_cli
from engine.inference.predictor import Predictor, box_crop
from engine.inference.video import OUTPUT_FOURCC
from tests.deploy_helpers import tiny_okdhp_run
from tests.test_export import assert_one_paragraph

FRAMES, FPS, SIZE = 5, 12.0, (96, 80)  # width, height


@pytest.fixture(scope="module")
def deploy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_okdhp_run(tmp_path_factory) / "deploy.pth"


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    """A short synthetic video: a bright figure-like bar moving over a dark background, mp4v in .mp4."""
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*OUTPUT_FOURCC), FPS, SIZE)
    assert writer.isOpened()
    for index in range(FRAMES):
        frame = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
        cv2.rectangle(frame, (20 + 8 * index, 10), (40 + 8 * index, 70), (200, 180, 160), -1)
        cv2.circle(frame, (30 + 8 * index, 12), 6, (90, 200, 240), -1)
        writer.write(frame)
    writer.release()
    return path


def read_frames(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def demo(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    code = run_cli(demo_main, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_video_gives_a_video_of_as_many_frames_and_a_json_line_per_frame(
    deploy, clip, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = demo(capsys, clip, "--checkpoint", deploy, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert f"{FRAMES} frames at 12 frames/s" in stdout and "frames/s" in stderr  # the progress counts frames

    written, fps = read_frames(out / "clip.mp4.mp4")
    assert len(written) == FRAMES and fps == pytest.approx(FPS)
    assert all(frame.shape == (SIZE[1], SIZE[0], 3) for frame in written)
    lines = [json.loads(line) for line in (out / "clip.mp4.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert lines[2]["time"] == pytest.approx(2 / FPS, abs=1e-6)  # seconds, rounded to microseconds

    # each frame's keypoints are the predictor's on that frame's pixels, the whole frame as the person box
    predictor = Predictor.from_checkpoint(deploy, flip=None)
    for frame, line in zip(read_frames(clip)[0], lines):
        (person,) = line["persons"]
        assert person["box"] == [0.0, 0.0, float(SIZE[0]), float(SIZE[1])]
        center, scale = box_crop(person["box"], predictor.codec.input_size)
        keypoints, scores = predictor.predict(frame, [center], [scale])
        np.testing.assert_allclose(np.array(person["keypoints"])[:, :2], keypoints[0], atol=1e-3)
        np.testing.assert_allclose(np.array(person["keypoints"])[:, 2], scores[0], atol=1e-5)


def test_video_detections_are_keyed_by_frame_index(deploy, clip, tmp_path, capsys) -> None:
    detections = tmp_path / "dets.json"
    detections.write_text(
        json.dumps(
            [
                {"image_id": 0, "category_id": 1, "bbox": [10, 5, 40, 70], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [20, 5, 40, 70], "score": 0.8},
                {"image_id": 1, "category_id": 1, "bbox": [50, 5, 30, 60], "score": 0.7},
                {"image_id": 2, "category_id": 1, "bbox": [20, 5, 40, 70], "score": 0.3},  # below 0.5
                {"image_id": 4, "category_id": 2, "bbox": [20, 5, 40, 70], "score": 0.9},  # not a person
            ]
        )
    )
    out = tmp_path / "out"
    code, _, stderr = demo(capsys, clip, "--checkpoint", deploy, "--detections", detections, "--out", out)
    assert code == 0, stderr
    lines = [json.loads(line) for line in (out / "clip.mp4.jsonl").read_text().splitlines()]
    assert [len(line["persons"]) for line in lines] == [1, 2, 0, 0, 0]
    assert [p["score"] for p in lines[1]["persons"]] == [0.8, 0.7]
    assert lines[1]["persons"][1]["box"] == [50.0, 5.0, 30.0, 60.0]
    assert len(read_frames(out / "clip.mp4.mp4")[0]) == FRAMES  # frames without persons are written too


def test_video_outputs_are_not_replaced_without_overwrite(deploy, clip, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4.jsonl").write_text("an earlier result\n")
    code, _, stderr = demo(capsys, clip, "--checkpoint", deploy, "--out", out)
    assert_one_paragraph(code, stderr, f"{out / 'clip.mp4.jsonl'} already exists", "--overwrite")
    assert (out / "clip.mp4.jsonl").read_text() == "an earlier result\n"
    assert not (out / "clip.mp4.mp4").exists()

    boxes = tmp_path / "boxes.json"
    boxes.write_text("{}")
    code, _, stderr = demo(capsys, clip, "--checkpoint", deploy, "--boxes", boxes, "--out", out)
    assert_one_paragraph(code, stderr, "a boxes file names images", "image_id is the 0-based frame index")


def test_an_unreadable_video_is_one_paragraph(deploy, tmp_path, capsys) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    code, _, stderr = demo(capsys, broken, "--checkpoint", deploy, "--out", tmp_path / "out")
    assert_one_paragraph(code, stderr, f"the video {broken}")
