"""A synthetic COCO-format keypoint data set: stick figures with the 17 COCO joints, masks and boxes.

Each image holds one to ``max_persons`` figures facing the camera (so a figure's left side is on the image's
right), standing side by side and sometimes overlapping. Left and right limbs, eyes and ears have distinct
colours, so a small network can tell them apart. Every person gets COCO annotations: keypoints with
visibility (2 visible, 1 hidden behind a figure drawn later, 0 outside the image, stored as 0,0,0), a polygon
segmentation traced from the rendered figure, its area, the box of the figure (xywh) and ``iscrowd: 0``.

The folder is an ordinary COCO folder read by ``data: {name: coco, root: <out_dir>}``::

    annotations/person_keypoints_train2017.json   annotations/person_keypoints_val2017.json
    images/train2017/*.jpg                        images/val2017/*.jpg

Command line: ``python -m datasets.synthetic_coco OUT_DIR --train 64 --valid 16 --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.keypoints import COCO as COCO_SKELETON

# Limbs (0-based COCO joints) and their BGR colours: the figure's left side warm, its right side cool.
LIMBS = (
    ((5, 7), (40, 160, 255)),  # left upper arm
    ((7, 9), (120, 220, 255)),  # left forearm
    ((6, 8), (255, 120, 40)),  # right upper arm
    ((8, 10), (255, 210, 140)),  # right forearm
    ((11, 13), (40, 40, 230)),  # left thigh
    ((13, 15), (140, 140, 255)),  # left shin
    ((12, 14), (200, 60, 60)),  # right thigh
    ((14, 16), (230, 170, 120)),  # right shin
)
TORSO = (5, 6, 12, 11)
HEAD_COLOUR = (170, 200, 235)
FACE_DOTS = {1: (0, 200, 255), 2: (255, 200, 0), 3: (0, 90, 200), 4: (200, 90, 0), 0: (60, 60, 60)}
# COCO's category skeleton (1-based), for the annotation file.
COCO_CATEGORY_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
SPLITS = (("train2017", 0), ("val2017", 1))
VAL_IMAGE_ID_OFFSET = 1_000_000


@dataclass
class Figure:
    """One drawn person: joints (17, 2) in image pixels, its limb thickness and head radius in pixels."""

    joints: np.ndarray
    thickness: int
    head_radius: int
    torso_colour: tuple[int, int, int]


def _limb(start: np.ndarray, angle_deg: float, length: float) -> np.ndarray:
    """The end of a segment of ``length`` leaving ``start`` at ``angle_deg`` from straight down, towards +x."""
    angle = math.radians(angle_deg)
    return start + length * np.array([math.sin(angle), math.cos(angle)])


def figure_pose(rng: np.random.Generator) -> np.ndarray:
    """COCO joints (17, 2) of a random upright pose in units of body height, mid-hip at the origin, y down."""
    joints = np.zeros((17, 2))
    face = np.array([0.0, -0.44]) + rng.uniform(-0.015, 0.015, 2)
    joints[0] = face + [0.0, 0.03]  # nose
    joints[1], joints[2] = face + [0.03, 0.0], face - [0.03, 0.0]  # eyes: figure's left on image right
    joints[3], joints[4] = face + [0.065, 0.015], face + [-0.065, 0.015]  # ears
    for side, (shoulder, elbow, wrist, hip, knee, ankle) in (
        (1, (5, 7, 9, 11, 13, 15)),
        (-1, (6, 8, 10, 12, 14, 16)),
    ):
        joints[shoulder] = [side * rng.uniform(0.09, 0.12), -0.31]
        joints[hip] = [side * rng.uniform(0.06, 0.08), 0.0]
        upper_arm = side * rng.uniform(-20.0, 150.0)
        joints[elbow] = _limb(joints[shoulder], upper_arm, 0.15)
        joints[wrist] = _limb(joints[elbow], upper_arm + side * rng.uniform(-30.0, 130.0), 0.13)
        thigh = side * rng.uniform(-10.0, 45.0)
        joints[knee] = _limb(joints[hip], thigh, 0.24)
        joints[ankle] = _limb(joints[knee], thigh - side * rng.uniform(-10.0, 60.0), 0.24)
    return joints


def place_figures(rng: np.random.Generator, image_size: tuple[int, int], count: int) -> list[Figure]:
    """Scale, tilt and place ``count`` figures in side-by-side slots (neighbours may overlap)."""
    width, height = image_size
    figures = []
    for slot in range(count):
        body_height = height * rng.uniform(0.5, 0.9)
        tilt = math.radians(rng.normal(0.0, 12.0))
        rotation = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
        centre = np.array([width * (slot + rng.uniform(0.25, 0.75)) / count, height * rng.uniform(0.5, 0.6)])
        joints = figure_pose(rng) @ rotation.T * body_height + centre
        torso_colour = tuple(int(v) for v in rng.integers(60, 200, 3))
        thickness = max(2, round(0.045 * body_height))
        figures.append(Figure(joints, thickness, max(3, round(0.075 * body_height)), torso_colour))
    return figures


def _point(xy: np.ndarray) -> tuple[int, int]:
    """An OpenCV point with 4 fractional bits (drawing uses ``shift=4``)."""
    return int(round(xy[0] * 16)), int(round(xy[1] * 16))


def draw_figure(canvas: np.ndarray, figure: Figure, silhouette: bool = False) -> None:
    """Draw a figure in colour, or (``silhouette``) as 1s on a single-channel mask of the same shape."""
    draw: dict[str, Any] = {"shift": 4, "lineType": cv2.LINE_8 if silhouette else cv2.LINE_AA}
    joints = figure.joints

    def colour(bgr: tuple[int, int, int]) -> tuple[int, ...]:
        return (1,) if silhouette else bgr

    torso = np.array([_point(joints[j]) for j in TORSO], dtype=np.int32)
    cv2.fillPoly(canvas, [torso], colour(figure.torso_colour), **draw)
    for (start, end), bgr in LIMBS:
        cv2.line(canvas, _point(joints[start]), _point(joints[end]), colour(bgr), figure.thickness, **draw)
    neck = (joints[5] + joints[6]) / 2
    cv2.line(canvas, _point(neck), _point(joints[0]), colour(HEAD_COLOUR), figure.thickness, **draw)
    head_centre = (joints[3] + joints[4]) / 2
    cv2.circle(canvas, _point(head_centre), figure.head_radius * 16, colour(HEAD_COLOUR), -1, **draw)
    if not silhouette:
        dot = max(1, figure.thickness // 3) * 16
        for joint, bgr in FACE_DOTS.items():
            cv2.circle(canvas, _point(joints[joint]), dot, bgr, -1, **draw)


def background(rng: np.random.Generator, image_size: tuple[int, int]) -> np.ndarray:
    """A dim colour gradient with noise and a few random rectangles as clutter."""
    width, height = image_size
    corners = rng.uniform(10, 110, size=(2, 2, 3)).astype(np.float32)
    image = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    image += rng.normal(0.0, 6.0, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = rng.integers(5, max(6, min(width, height) // 5), 2)
        grey = int(rng.integers(40, 130))
        cv2.rectangle(image, (x0, y0), (x0 + int(size[0]), y0 + int(size[1])), (grey, grey, grey), -1)
    return image


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (flat x, y lists) of the outer contours of a binary mask."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def annotate(
    figure: Figure, mask: np.ndarray, covered: np.ndarray, image_id: int, ann_id: int
) -> dict[str, Any] | None:
    """The COCO annotation of a figure whose visible silhouette is ``mask`` (None when nothing is visible)."""
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    segmentation = polygons(mask)
    if len(xs) == 0 or not segmentation:
        return None
    keypoints = []
    for x, y in figure.joints:
        inside = 0 <= x <= width - 1 and 0 <= y <= height - 1
        hidden = inside and covered[int(round(y)), int(round(x))] > 0
        keypoints += [float(x), float(y), 1 if hidden else 2] if inside else [0.0, 0.0, 0]
    x0, y0 = float(xs.min()), float(ys.min())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": int(sum(v > 0 for v in keypoints[2::3])),
        "bbox": [x0, y0, float(xs.max()) - x0 + 1.0, float(ys.max()) - y0 + 1.0],
        "area": float(mask.sum()),
        "segmentation": segmentation,
    }


def render_image(
    rng: np.random.Generator, image_size: tuple[int, int], count: int, image_id: int, first_ann_id: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw ``count`` figures (later ones in front) and annotate each with its visible mask."""
    image = background(rng, image_size)
    figures = place_figures(rng, image_size, count)
    silhouettes = []
    for figure in figures:
        draw_figure(image, figure)
        silhouette = np.zeros(image.shape[:2], np.uint8)
        draw_figure(silhouette, figure, silhouette=True)
        silhouettes.append(silhouette)
    annotations = []
    for index, figure in enumerate(figures):
        in_front = np.zeros_like(silhouettes[index])
        for later in silhouettes[index + 1 :]:
            in_front |= later
        visible = silhouettes[index] & (1 - in_front)
        ann = annotate(figure, visible, in_front, image_id, first_ann_id + len(annotations))
        if ann is not None:
            annotations.append(ann)
    return image, annotations


def category() -> dict[str, Any]:
    """COCO's person category with its 17 keypoint names and skeleton."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_SKELETON.joint_names),
        "skeleton": [list(edge) for edge in COCO_CATEGORY_SKELETON],
    }


def make_synthetic_coco(
    out_dir: str | Path,
    num_train: int = 64,
    num_valid: int = 16,
    seed: int = 0,
    *,
    image_size: tuple[int, int] = (256, 192),
    max_persons: int = 2,
) -> Path:
    """Write a synthetic COCO keypoints folder (train2017 / val2017 images and annotations); return its root."""
    root = Path(out_dir)
    ann_id = 1
    for (set_name, stream), count in zip(SPLITS, (num_train, num_valid)):
        image_dir = root / "images" / set_name
        image_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, stream])
        images, annotations = [], []
        for index in range(count):
            image_id = index + 1 + stream * VAL_IMAGE_ID_OFFSET
            persons = int(rng.integers(1, max_persons + 1))
            image, anns = render_image(rng, tuple(image_size), persons, image_id, ann_id)
            file_name = f"{image_id:012d}.jpg"
            if not cv2.imwrite(str(image_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f"cannot write {image_dir / file_name}")
            images.append(
                {"id": image_id, "file_name": file_name, "width": image.shape[1], "height": image.shape[0]}
            )
            annotations += anns
            ann_id += len(anns)
        document = {
            "info": {"description": f"synthetic COCO keypoints (seed {seed})"},
            "licenses": [],
            "categories": [category()],
            "images": images,
            "annotations": annotations,
        }
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"person_keypoints_{set_name}.json").write_text(json.dumps(document))
    return root


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic COCO folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--train", type=int, default=64, help="number of training images")
    parser.add_argument("--valid", type=int, default=16, help="number of validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-persons", type=int, default=2)
    args = parser.parse_args(argv)
    root = make_synthetic_coco(args.out_dir, args.train, args.valid, args.seed, max_persons=args.max_persons)
    print(f"wrote {root}")


if __name__ == "__main__":
    main()
