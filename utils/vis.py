"""Draw predicted skeletons on the original images (for a quick look at what a checkpoint does)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from datasets.base import TopDownDataset
from datasets.transforms import read_image

# Limbs as joint-index pairs, per skeleton name.
LIMBS = {
    "mpii": ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
             (10, 11), (11, 12), (12, 7), (7, 13), (13, 14), (14, 15)),
    "coco": ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
             (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
}  # fmt: skip


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
    limbs = LIMBS.get(dataset.skeleton.name, ())
    written = []
    for index in range(min(limit, len(dataset))):
        record = dataset.records[index]
        canvas = draw_skeleton(read_image(record.image), preds[index], limbs)
        path = out_dir / f"{index:05d}_{Path(record.image).stem}.png"
        cv2.imwrite(str(path), canvas)
        written.append(path)
    return written
