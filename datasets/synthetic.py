"""A synthetic MPII-format data set of stick figures, small enough to learn on a CPU in minutes.

Each image holds one figure with the 16 MPII joints: a filled torso, a head circle, thick limbs whose colours
tell left from right and upper from lower segments, and a dot on every joint, over a smooth noisy background
with a few grey distractor strokes. Pose, in-plane rotation, size and position vary. The figure faces the
camera, so its right side (MPII joints 0-2, 10-12) is drawn on the image's left before rotation, which keeps
left/right learnable from geometry as well as from colour (flip augmentation swaps the labels, not the colours).

The folder it writes is an ordinary MPII folder (``annot/train.json``, ``annot/valid.json`` in HRNet's format
with 1-based joints and HRNet's raw centre/scale, ``annot/gt_train.mat``, ``annot/gt_valid.mat`` with
jnt_missing/pos_gt_src/headboxes_src, ``images/*.jpg``), read by ``data: {name: mpii}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.pckh import save_gt_mat

# Body proportions in units of standing height; each person's lengths are jittered by up to +-10%.
TORSO, NECK, HEAD = 0.29, 0.05, 0.20
SHOULDER_HALF, HIP_HALF = 0.10, 0.07
UPPER_ARM, LOWER_ARM, THIGH, SHIN = 0.16, 0.15, 0.23, 0.22

# BGR colours: right side reds/blues, left side greens/yellows; the lower segment is the lighter shade.
LIMBS = (  # (from joint, to joint, colour)
    (12, 11, (30, 30, 230)),  # right upper arm
    (11, 10, (120, 120, 255)),  # right forearm
    (13, 14, (30, 200, 30)),  # left upper arm
    (14, 15, (140, 255, 140)),  # left forearm
    (2, 1, (230, 60, 30)),  # right thigh
    (1, 0, (255, 190, 120)),  # right shin
    (3, 4, (20, 200, 220)),  # left thigh
    (4, 5, (140, 255, 255)),  # left shin
    (7, 8, (200, 200, 200)),  # neck
)
TORSO_COLOUR = (170, 60, 170)
HEAD_COLOUR = (150, 190, 235)
JOINT_COLOUR = (250, 250, 250)


@dataclass
class SyntheticPerson:
    """One rendered figure: image (BGR), joints (16, 2) and head box (2, 2), both in 0-based pixels."""

    image: np.ndarray
    joints: np.ndarray
    headbox: np.ndarray


def _direction(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down (+y), turning towards +x."""
    return np.array([math.sin(angle), math.cos(angle)])


def sample_pose(rng: np.random.Generator) -> np.ndarray:
    """Joint positions (16, 2) in body units, pelvis at the origin, y down, MPII joint order."""
    length = lambda base: base * rng.uniform(0.9, 1.1)  # noqa: E731
    lean = math.radians(rng.normal(0.0, 8.0))
    down = _direction(lean)
    up = -down
    right = np.array([-down[1], down[0]])  # the figure's right is the image's left when upright
    joints = np.zeros((16, 2))
    joints[6] = 0.0  # pelvis
    joints[7] = up * length(TORSO)  # thorax
    joints[8] = joints[7] + up * length(NECK)  # upper neck
    joints[9] = joints[8] - _direction(lean + math.radians(rng.normal(0.0, 10.0))) * length(HEAD)
    joints[12], joints[13] = (
        joints[7] + right * length(SHOULDER_HALF),
        joints[7] - right * length(SHOULDER_HALF),
    )
    joints[2], joints[3] = right * length(HIP_HALF), -right * length(HIP_HALF)
    for side, (root, mid, end) in ((1.0, (12, 11, 10)), (-1.0, (13, 14, 15))):  # arms
        upper = lean - side * math.radians(rng.uniform(-20.0, 160.0))
        lower = upper - side * math.radians(rng.uniform(-40.0, 140.0))
        joints[mid] = joints[root] + _direction(upper) * length(UPPER_ARM)
        joints[end] = joints[mid] + _direction(lower) * length(LOWER_ARM)
    for side, (root, mid, end) in ((1.0, (2, 1, 0)), (-1.0, (3, 4, 5))):  # legs
        upper = lean - side * math.radians(rng.uniform(-10.0, 60.0))
        lower = upper + side * math.radians(rng.uniform(-20.0, 70.0))
        joints[mid] = joints[root] + _direction(upper) * length(THIGH)
        joints[end] = joints[mid] + _direction(lower) * length(SHIN)
    return joints


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour blobs plus pixel noise and a few grey strokes, kept darker than the figure."""
    coarse = rng.uniform(20, 140, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(1, 4)):
        start, end = rng.integers(0, size, size=(2, 2))
        grey = int(rng.integers(60, 160))
        cv2.line(image, tuple(map(int, start)), tuple(map(int, end)), (grey, grey, grey), 1, cv2.LINE_AA)
    return image


def render_person(rng: np.random.Generator, image_size: int) -> SyntheticPerson:
    """Draw one random figure on a square ``image_size`` image."""
    body = sample_pose(rng)
    rotation = math.radians(float(np.clip(rng.normal(0.0, 20.0), -45.0, 45.0)))
    rot = np.array([[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]])
    body = body @ rot.T
    extent = np.ptp(body, axis=0).max()
    pixels_per_unit = rng.uniform(0.5, 0.75) * image_size / extent
    joints = body * pixels_per_unit
    low, high = joints.min(axis=0), joints.max(axis=0)
    margin = 0.06 * image_size
    offset = np.array([rng.uniform(margin - lo, image_size - margin - hi) for lo, hi in zip(low, high)])
    joints = joints + offset

    image = _background(rng, image_size)
    thickness = max(2, int(round(0.045 * pixels_per_unit)))
    points = [tuple(int(round(v * 16)) for v in joint) for joint in joints]  # 4 fractional bits
    draw = dict(shift=4, lineType=cv2.LINE_AA)
    torso = np.array([points[12], points[13], points[3], points[2]], dtype=np.int32)
    cv2.fillPoly(image, [torso], TORSO_COLOUR, **draw)
    neck, top = joints[8], joints[9]
    head_length = float(np.linalg.norm(top - neck))
    head_centre = tuple(int(round(v * 16)) for v in (neck + top) / 2)
    for start, end, colour in LIMBS:
        cv2.line(image, points[start], points[end], colour, thickness, **draw)
    cv2.circle(image, head_centre, int(round(head_length * 0.45 * 16)), HEAD_COLOUR, -1, **draw)
    for point in points:
        cv2.circle(image, point, int(round(max(1.0, thickness * 0.45) * 16)), JOINT_COLOUR, -1, **draw)

    # MPII-like head box: as tall as the neck-to-top segment, 0.8 of that wide; head size (0.6 x diagonal)
    # ~0.1 x the crop box, as in MPII.
    half = np.array([0.4, 0.5]) * head_length
    middle = (neck + top) / 2
    return SyntheticPerson(image=image, joints=joints, headbox=np.stack([middle - half, middle + half]))


def hrnet_entry(image_name: str, joints: np.ndarray) -> dict:
    """The HRNet JSON entry of a person (1-based), with a raw MPII-style centre/scale.

    The raw scale is the larger joint extent / 200 and the raw centre sits ``15 * scale`` above the box
    centre, so HRNet's adjustment (``center_y += 15 * scale; scale *= 1.25``) yields a box centred on the
    figure and 1.25 x its extent.
    """
    low, high = joints.min(axis=0), joints.max(axis=0)
    scale = float(np.max(high - low) / 200.0)
    center = (low + high) / 2 + 1.0 - np.array([0.0, 15.0 * scale])
    return {
        "image": image_name,
        "center": [float(v) for v in center],
        "scale": scale,
        "joints": [[float(x) + 1.0, float(y) + 1.0] for x, y in joints],
        "joints_vis": [1] * 16,
    }


def make_synthetic_mpii(
    out_dir: str | Path,
    num_train: int = 800,
    num_valid: int = 200,
    seed: int = 0,
    image_size: int = 128,
) -> Path:
    """Write a synthetic MPII-format folder (images, HRNet JSON, gt_<split>.mat) and return its path."""
    root = Path(out_dir)
    (root / "annot").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, count, stream in (("train", num_train, 0), ("valid", num_valid, 1)):
        rng = np.random.default_rng([seed, stream])
        entries, joints, headboxes = [], [], []
        for index in range(count):
            person = render_person(rng, image_size)
            name = f"{split}_{index:06d}.jpg"
            if not cv2.imwrite(str(root / "images" / name), person.image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"cannot write {root / 'images' / name}")
            entries.append(hrnet_entry(name, person.joints))
            joints.append(person.joints + 1.0)
            headboxes.append(person.headbox + 1.0)
        (root / "annot" / f"{split}.json").write_text(json.dumps(entries))
        if count:
            save_gt_mat(
                root / "annot" / f"gt_{split}.mat",
                np.stack(joints),
                np.ones((count, 16), bool),
                np.stack(headboxes),
            )
    return root
