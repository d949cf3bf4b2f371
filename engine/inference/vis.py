"""Draw predicted skeletons on the original images (for a quick look at what a checkpoint does)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from datasets.base import TopDownDataset
from datasets.transforms import read_image


def draw_skeleton(image: np.ndarray, joints: np.ndarray, limbs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """A copy of a BGR image with the joints and limbs drawn."""
    canvas = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 300))
    for a, b in limbs:
        pa, pb = tuple(int(v) for v in joints[a]), tuple(int(v) for v in joints[b])
        cv2.line(canvas, pa, pb, (0, 200, 255), thickness, cv2.LINE_AA)
    for point in joints:
        cv2.circle(canvas, tuple(int(v) for v in point), thickness + 1, (0, 0, 255), -1, cv2.LINE_AA)
    return canvas


def draw_predictions(dataset: TopDownDataset, preds: np.ndarray, out_dir: Path, limit: int) -> list[Path]:
    """Write PNGs of the first ``limit`` persons' predictions on their images; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    limbs = dataset.skeleton.limbs
    written = []
    for index in range(min(limit, len(dataset))):
        record = dataset.records[index]
        canvas = draw_skeleton(read_image(record.image), preds[index], limbs)
        path = out_dir / f"{index:05d}_{Path(record.image).stem}.png"
        cv2.imwrite(str(path), canvas)
        written.append(path)
    return written


# BGR colours of a joint's side of the body: the picture tells left from right at a glance.
SIDE_COLORS = {"left": (40, 200, 40), "right": (40, 40, 230), "centre": (230, 160, 30)}


def joint_side(name: str) -> str:
    """'left', 'right' or 'centre' from a joint name (``l_knee``, ``left_knee``, ``r_wrist``, ``nose``)."""
    lowered = name.lower()
    if lowered.startswith(("l_", "left")):
        return "left"
    if lowered.startswith(("r_", "right")):
        return "right"
    return "centre"


def draw_pose(
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    joint_names: tuple[str, ...] | list[str],
    limbs: tuple[tuple[int, int], ...] | list[list[int]],
    boxes: np.ndarray | list | None = None,
    *,
    show_scores: bool = True,
    legend: bool = True,
) -> np.ndarray:
    """A copy of a BGR image with each person's skeleton: joints coloured by side, their scores written beside.

    ``keypoints`` (N, J, 2) in image pixels, ``scores`` (N, J); ``boxes`` (N, 4) [x, y, w, h] are outlined.
    A limb takes the colour of its side when both ends are on it, else the centre colour.
    """
    canvas = image.copy()
    size = max(image.shape[:2])
    thickness = max(1, round(size / 400))
    radius = thickness + 2
    font_scale = max(0.3, size / 2000)
    sides = [joint_side(name) for name in joint_names]
    for person in range(len(keypoints)):
        points = [tuple(int(round(v)) for v in point) for point in keypoints[person]]
        if boxes is not None:
            x, y, w, h = (int(round(v)) for v in boxes[person])
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (235, 235, 235), thickness, cv2.LINE_AA)
        for a, b in limbs:
            side = sides[a] if sides[a] == sides[b] else "centre"
            cv2.line(canvas, points[a], points[b], SIDE_COLORS[side], thickness + 1, cv2.LINE_AA)
        for joint, point in enumerate(points):
            cv2.circle(canvas, point, radius, SIDE_COLORS[sides[joint]], -1, cv2.LINE_AA)
            cv2.circle(canvas, point, radius, (255, 255, 255), 1, cv2.LINE_AA)
            if not show_scores:
                continue
            label = f"{scores[person, joint]:.2f}"
            origin = (point[0] + radius + 1, point[1] - radius)
            cv2.putText(
                canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA
            )
    if legend:
        _legend(canvas, font_scale)
    return canvas


def _legend(canvas: np.ndarray, font_scale: float) -> None:
    """'left right centre' in their colours in the top-left corner."""
    x, y = 8, int(8 + 30 * font_scale * 2)
    for side, color in SIDE_COLORS.items():
        (width, _), _ = cv2.getTextSize(side, cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.5, 2)
        cv2.putText(
            canvas, side, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.5, (0, 0, 0), 4, cv2.LINE_AA
        )
        cv2.putText(canvas, side, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale * 1.5, color, 2, cv2.LINE_AA)
        x += width + 12
