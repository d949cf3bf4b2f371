"""Top-down pose on a video: every frame read with OpenCV, its persons predicted, drawn and written.

Persons per frame come from a COCO-style detections file whose ``image_id`` is the 0-based frame index
(``[{image_id: 0, category_id: 1, bbox: [x, y, w, h], score}, ...]``, the format of ``--detections`` for
images with frames instead of files), or, without one, the whole frame is one person. The outputs, beside
each other in ``out_dir``: ``<video file name>.mp4`` (MPEG-4 Part 2, ``mp4v``: the codec OpenCV's own FFmpeg
writes everywhere), the annotated frames at the input's frame rate and size, one written for every frame
read; and ``<video file name>.jsonl``, one JSON object per frame: ``{frame, time, persons: [{box, score,
keypoints: [[x, y, score], ...]}]}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine.inference.predictor import Predictor, box_crop, whole_image_box
from utils.errors import DataError, UserError
from utils.progress import Progress

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
OUTPUT_FOURCC = "mp4v"
DEFAULT_FPS = 25.0  # when a container does not state its frame rate


def is_video(path: str | Path) -> bool:
    """Whether a path names a video file (by its suffix)."""
    return Path(path).is_file() and Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_outputs(video: Path, out_dir: Path) -> tuple[Path, Path]:
    """The annotated video and the keypoints of a video: its whole file name + .mp4 / .jsonl."""
    return out_dir / f"{video.name}.mp4", out_dir / f"{video.name}.jsonl"


def open_video(path: Path) -> tuple[cv2.VideoCapture, float, int]:
    """An opened capture, its frame rate and its frame count as the container states it (0 if unknown)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DataError(
            f"OpenCV cannot open the video {path} (a missing, corrupt or unsupported file; OpenCV {cv2.__version__} "
            "reads what its FFmpeg reads: convert it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"
        )
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return capture, fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS, max(count, 0)


def frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The frames of a capture, BGR, until it ends."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def frame_persons(
    frame: np.ndarray, index: int, detections: dict[int, list[Any]] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and box scores (N,) of one frame: its detections, or the whole frame."""
    if detections is None:
        return np.array([whole_image_box(frame)]), np.ones(1)
    persons = detections.get(index, [])
    return np.array([p.box for p in persons]).reshape(-1, 4), np.array([p.score for p in persons])


def run_video(
    video: Path,
    predictor: Predictor,
    *,
    detections: dict[int, list[Any]] | None,
    check_box: Callable[[np.ndarray, np.ndarray, str], None],
    out_dir: Path,
    head: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Predict every frame, write the annotated video and the JSON lines; returns what was written.

    The outputs' paths are checked by the caller (``engine.inference.demo.run_demo``) before this runs.
    """
    from engine.inference.vis import draw_pose

    capture, fps, count = open_video(video)
    skeleton = predictor.skeleton
    movie, lines = video_outputs(video, out_dir)
    writer = None
    written = 0
    try:
        with open(lines, "w") as jsonl:
            progress = Progress(frames(capture), count or None, video.name, unit="frames", interval=10.0)
            for index, frame in enumerate(progress):
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(
                        str(movie), cv2.VideoWriter_fourcc(*OUTPUT_FOURCC), fps, (width, height)
                    )
                    if not writer.isOpened():
                        raise UserError(
                            f"--out: OpenCV {cv2.__version__} cannot write {movie} with the '{OUTPUT_FOURCC}' codec "
                            "(an OpenCV built without FFmpeg?); install opencv-python-headless from requirements.txt"
                        )
                boxes, box_scores = frame_persons(frame, index, detections)
                for number, box in enumerate(boxes):
                    check_box(box, frame, f"{video.name} frame {index} box {number}")
                crops = [box_crop(box, predictor.codec.input_size) for box in boxes]
                centers = np.array([c for c, _ in crops]).reshape(-1, 2)
                scales = np.array([s for _, s in crops]).reshape(-1, 2)
                keypoints, scores = predictor.predict(frame, centers, scales, head=head)
                writer.write(draw_pose(frame, keypoints, scores, skeleton.joint_names, skeleton.limbs, boxes))
                record = {
                    "frame": index,
                    "time": round(index / fps, 6),
                    "skeleton": skeleton.name,
                    "persons": [
                        {
                            "box": [float(v) for v in box],
                            "score": float(box_score),
                            "keypoints": [
                                [float(x), float(y), float(s)] for (x, y), s in zip(points, joint_scores)
                            ],
                        }
                        for box, box_score, points, joint_scores in zip(boxes, box_scores, keypoints, scores)
                    ],
                }
                jsonl.write(json.dumps(record) + "\n")
                written += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if written == 0:
        raise DataError(f"the video {video} holds no frame OpenCV can decode")
    log(f"{video.name}: {written} frames at {fps:g} frames/s -> {movie}, {lines}")
    return {"video": video, "frames": written, "fps": fps, "movie": movie, "jsonl": lines}
