"""An independent re-implementation of HRNet's top-down rules, used only as the reference of the tests.

Written from the rules of HRNet's code base (JointsDataset.__getitem__, generate_target, half_body_transform,
fliplr_joints, get_affine_transform; coco.py _xywh2cs, the box cleaning, the detection filter and the
rescoring loop of evaluate; nms.py oks_iou / oks_nms), step by step in HRNet's order and dtypes, without
importing the project's geometry: a full flipped copy of the image, the three-point affine handed to
OpenCV, a per-joint Gaussian patch loop. HRNet draws from ``np.random`` and ``random``; here every draw
comes from one ``np.random.Generator`` in HRNet's order (``rand``/``random`` -> ``random()``,
``randn`` -> ``standard_normal()``), the generator the project's datasets use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pytest import approx

PIXEL_STD = 200.0
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_UPPER_IDS = tuple(range(11))
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def three_point_affine(center, scale, rotation, output_size, shift=(0.0, 0.0), inverse=False):
    """HRNet's get_affine_transform: three corresponding points handed to cv2.getAffineTransform."""
    box = np.asarray(scale, dtype=np.float64) * 200.0
    out_w, out_h = output_size
    theta = math.radians(rotation)
    src_dir = np.array([0.5 * box[0] * math.sin(theta), -0.5 * box[0] * math.cos(theta)])
    dst_dir = np.array([0.0, -0.5 * out_w])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = np.asarray(center) + box * np.asarray(shift)
    src[1] = src[0] + src_dir
    src[2] = third(src[0], src[1])
    dst[0] = [0.5 * out_w, 0.5 * out_h]
    dst[1] = dst[0] + dst_dir
    dst[2] = third(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst.astype(np.float32), src.astype(np.float32))
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


# ----------------------------------------------------------------------------------------------- samples


@dataclass
class ReferencePerson:
    """One entry of HRNet's db: image file, centre, scale, joints (J, 3) and joints_vis (J, 3)."""

    image: Path
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray
    joints_vis: np.ndarray
    key: Any = None  # e.g. the COCO annotation id, to match the project's record
    score: float = 1.0


@dataclass
class ReferenceSample:
    """What HRNet's __getitem__ produces, plus the draw it made (centre after the flip, as HRNet keeps it)."""

    crop: np.ndarray  # (h, w, 3) uint8, RGB when the colour is RGB, else BGR
    target: np.ndarray
    target_weight: np.ndarray
    center: np.ndarray  # HRNet's meta centre: mirrored when flipped
    scale: np.ndarray
    rotation: float
    flipped: bool
    half_body: bool


def mpii_db(annotation_file: Path, image_dir: Path) -> list[ReferencePerson]:
    """HRNet's MPII _get_db: JSON centre/scale adjusted (+15 s in y, x1.25), then 1-based -> 0-based."""
    people = []
    for entry in json.loads(Path(annotation_file).read_text()):
        center = np.array(entry["center"], dtype=np.float64)
        scale = np.array([entry["scale"], entry["scale"]], dtype=np.float64)
        if center[0] != -1:
            center[1] = center[1] + 15 * scale[1]
            scale = scale * 1.25
        center = center - 1
        joints = np.zeros((16, 3))
        visible = np.zeros((16, 3))
        joints[:, :2] = np.array(entry["joints"], dtype=np.float64) - 1
        visible[:, 0] = visible[:, 1] = np.array(entry["joints_vis"], dtype=np.float64)
        people.append(ReferencePerson(Path(image_dir) / entry["image"], center, scale, joints, visible))
    return people


def flip_joints(
    joints: np.ndarray, joints_vis: np.ndarray, width: int, pairs
) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's fliplr_joints: x -> width - 1 - x, swap each left/right pair, zero the unlabelled joints."""
    joints = joints.copy()
    joints_vis = joints_vis.copy()
    joints[:, 0] = width - joints[:, 0] - 1
    for a, b in pairs:
        joints[[a, b]] = joints[[b, a]]
        joints_vis[[a, b]] = joints_vis[[b, a]]
    return joints * joints_vis, joints_vis


def half_body(joints, joints_vis, upper_ids, aspect_ratio, rng: np.random.Generator):
    """HRNet's half_body_transform: (centre, scale) of the upper or lower labelled joints, or (None, None)."""
    upper, lower = [], []
    for j in range(len(joints)):
        if joints_vis[j][0] > 0:
            (upper if j in upper_ids else lower).append(joints[j])
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None, None
    chosen = np.array(chosen, dtype=np.float32)
    center = chosen.mean(axis=0)[:2]
    width, height = chosen.max(axis=0)[:2] - chosen.min(axis=0)[:2]
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    return center, np.array([width / PIXEL_STD, height / PIXEL_STD], dtype=np.float32) * 1.5


def gaussian_target(joints, joints_vis, image_size, heatmap_size, sigma):
    """HRNet's generate_target: a peak-1 Gaussian patch per joint; weight 0 for a patch fully outside."""
    num_joints = len(joints)
    image_size = np.asarray(image_size)
    heatmap_size = np.asarray(heatmap_size)
    weight = np.ones((num_joints, 1), dtype=np.float32)
    weight[:, 0] = joints_vis[:, 0]
    target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
    radius = sigma * 3
    stride = image_size / heatmap_size
    for j in range(num_joints):
        mu_x = int(joints[j][0] / stride[0] + 0.5)
        mu_y = int(joints[j][1] / stride[1] + 0.5)
        left, top = int(mu_x - radius), int(mu_y - radius)
        right, bottom = int(mu_x + radius + 1), int(mu_y + radius + 1)
        if left >= heatmap_size[0] or top >= heatmap_size[1] or right < 0 or bottom < 0:
            weight[j] = 0
            continue
        if weight[j] > 0.5:
            for y in range(max(0, top), min(bottom, heatmap_size[1])):
                for x in range(max(0, left), min(right, heatmap_size[0])):
                    target[j, y, x] = math.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / (2 * sigma**2))
    return target, weight


def sample(
    person: ReferencePerson,
    rng: np.random.Generator | None,
    *,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float,
    flip_pairs,
    rgb: bool,
    scale_factor: float = 0.0,
    rotation_factor: float = 0.0,
    rotation_prob: float = 0.6,
    flip: bool = True,
    half_body_prob: float = 0.0,
    half_body_min_joints: int = 8,
    upper_ids: Sequence[int] = (),
    force_flip: bool | None = None,
) -> ReferenceSample:
    """HRNet's JointsDataset.__getitem__ on one person: ``rng`` None is a test sample (no augmentation)."""
    image = cv2.imread(str(person.image), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    joints, joints_vis = person.joints.copy(), person.joints_vis.copy()
    center, scale = person.center.copy(), person.scale.copy()
    rotation, flipped, used_half_body = 0.0, False, False
    if rng is not None:
        # HRNet also draws this rand() when half-body is off (MPII); a draw that cannot pass changes no rule.
        if (
            half_body_prob > 0
            and np.sum(joints_vis[:, 0]) > half_body_min_joints
            and rng.random() < half_body_prob
        ):
            half_center, half_scale = half_body(
                joints, joints_vis, upper_ids, image_size[0] / image_size[1], rng
            )
            if half_center is not None:
                center, scale, used_half_body = half_center, half_scale, True
        scale = scale * np.clip(rng.standard_normal() * scale_factor + 1, 1 - scale_factor, 1 + scale_factor)
        if rng.random() <= rotation_prob:
            rotation = float(
                np.clip(rng.standard_normal() * rotation_factor, -2 * rotation_factor, 2 * rotation_factor)
            )
        flipped = bool(flip and rng.random() <= 0.5)
        if force_flip is not None:
            flipped = force_flip
        if flipped:
            image = image[:, ::-1, :]
            joints, joints_vis = flip_joints(joints, joints_vis, image.shape[1], flip_pairs)
            center = center.copy()
            center[0] = image.shape[1] - center[0] - 1
    matrix = three_point_affine(center, scale, rotation, image_size)
    crop = cv2.warpAffine(image, matrix, (int(image_size[0]), int(image_size[1])), flags=cv2.INTER_LINEAR)
    for j in range(len(joints)):
        if joints_vis[j, 0] > 0:
            joints[j, :2] = matrix @ np.array([joints[j, 0], joints[j, 1], 1.0])
    target, weight = gaussian_target(joints, joints_vis, image_size, heatmap_size, sigma)
    return ReferenceSample(crop, target, weight, center, scale, rotation, flipped, used_half_body)


def grey_levels(image_tensor) -> np.ndarray:
    """Undo the project's normalisation: (3, h, w) tensor -> (h, w, 3) grey levels, in the tensor's channel order."""
    array = np.asarray(image_tensor, dtype=np.float64).transpose(1, 2, 0)
    return (array * IMAGENET_STD + IMAGENET_MEAN) * 255.0


def assert_sample_equals(sample: dict, reference: ReferenceSample) -> float:
    """The project's sample equals HRNet's: pixels within one grey level, targets and weights equal."""
    difference = np.abs(grey_levels(sample["image"].numpy()) - reference.crop)
    assert difference.max() <= 1.0 + 1e-3
    np.testing.assert_allclose(sample["target"].numpy(), reference.target, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(sample["target_weight"].numpy(), reference.target_weight)
    assert bool(sample["meta"]["flipped"]) == reference.flipped
    assert float(sample["meta"]["rotation"]) == approx(reference.rotation, abs=1e-5)
    np.testing.assert_allclose(sample["meta"]["scale"], reference.scale, rtol=1e-6)
    return float(difference.max())


# -------------------------------------------------------------------------------------------------- COCO


def xywh_to_center_scale(x, y, w, h, aspect_ratio):
    """HRNet's COCO _xywh2cs (float32, like HRNet): centre of the box, aspect-fitted size / 200 x 1.25."""
    center = np.zeros(2, dtype=np.float32)
    center[0] = x + w * 0.5
    center[1] = y + h * 0.5
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w * 1.0 / PIXEL_STD, h * 1.0 / PIXEL_STD], dtype=np.float32)
    if center[0] != -1:
        scale = scale * 1.25
    return center, scale


def coco_gt_db(document: dict, image_dir: Path, aspect_ratio: float) -> list[ReferencePerson]:
    """HRNet's ground-truth COCO db: non-crowd person boxes cleaned to the image, area > 0, some keypoint."""
    by_image: dict[int, list[dict]] = {}
    for ann in document["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    person_ids = [c["id"] for c in document["categories"] if c["name"] == "person"]
    people = []
    for image in document["images"]:
        width, height = image["width"], image["height"]
        for ann in by_image.get(image["id"], []):
            if ann["iscrowd"] != 0:
                continue  # getAnnIds(iscrowd=False)
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2 = min(width - 1, x1 + max(0, w - 1))
            y2 = min(height - 1, y1 + max(0, h - 1))
            if not (ann["area"] > 0 and x2 >= x1 and y2 >= y1):
                continue
            if ann["category_id"] not in person_ids or max(ann["keypoints"]) == 0:
                continue
            keypoints = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            joints = np.zeros((len(keypoints), 3))
            joints[:, :2] = keypoints[:, :2]
            visible = np.zeros((len(keypoints), 3))
            visible[:, 0] = visible[:, 1] = np.minimum(keypoints[:, 2], 1)
            center, scale = xywh_to_center_scale(x1, y1, x2 - x1, y2 - y1, aspect_ratio)
            people.append(
                ReferencePerson(
                    Path(image_dir) / image["file_name"], center, scale, joints, visible, ann["id"]
                )
            )
    return people


def coco_detection_db(
    detections: list[dict], aspect_ratio: float, image_thre: float
) -> list[ReferencePerson]:
    """HRNet's detection db: person boxes with score >= image_thre, box turned into centre/scale uncleaned."""
    people = []
    for det in detections:
        if det["category_id"] != 1 or det["score"] < image_thre:
            continue
        center, scale = xywh_to_center_scale(*det["bbox"][:4], aspect_ratio)
        people.append(
            ReferencePerson(Path(str(det["image_id"])), center, scale, np.zeros((17, 3)), np.ones((17, 3)),
                            det["image_id"], float(det["score"]))
        )  # fmt: skip
    return people


def rescore(keypoints: np.ndarray, box_score: float, in_vis_thre: float) -> float:
    """HRNet's rescoring of one person: box score x mean of the keypoint scores above in_vis_thre (0 if none)."""
    total, count = 0.0, 0
    for score in keypoints[:, 2]:
        if score > in_vis_thre:
            total += score
            count += 1
    return (total / count if count else 0.0) * box_score


def oks_iou(g, d, area_g, area_d, sigmas=COCO_SIGMAS):
    """HRNet's oks_iou (in_vis_thre None): OKS of flat keypoints g against rows d, every joint counting."""
    variances = (sigmas * 2) ** 2
    result = np.zeros(d.shape[0])
    for n in range(d.shape[0]):
        dx = d[n, 0::3] - g[0::3]
        dy = d[n, 1::3] - g[1::3]
        e = (dx**2 + dy**2) / variances / ((area_g + area_d[n]) / 2 + np.spacing(1)) / 2
        result[n] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] else 0.0
    return result


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float, stable_ties: bool = False
) -> list[int]:
    """HRNet's greedy oks_nms: take the best remaining, keep the rest whose OKS with it is <= threshold.

    HRNet orders by ``argsort(scores)[::-1]``, NumPy's default (unstable) sort reversed: among equal scores
    its order depends on NumPy's sorting kernel, the CPU (AVX-512 kernels shuffle ties) and even the array's
    alignment, so it is no rule. ``stable_ties`` breaks ties by input order instead, as the project does.
    """
    if len(scores) == 0:
        return []
    flat = keypoints.reshape(len(keypoints), -1)
    order = np.argsort(-scores, kind="stable") if stable_ties else np.argsort(scores)[::-1]
    keep = []
    while order.size > 0:
        best = order[0]
        keep.append(int(best))
        overlap = oks_iou(flat[best], flat[order[1:]], areas[best], areas[order[1:]])
        order = order[np.where(overlap <= threshold)[0] + 1]
    return keep


def evaluate_kept(
    image_ids: Sequence[int],
    keypoints: np.ndarray,
    box_scores: Sequence[float],
    areas: Sequence[float],
    in_vis_thre: float = 0.2,
    oks_thre: float = 0.9,
    stable_ties: bool = False,
) -> list[tuple[int, float]]:
    """HRNet's COCO evaluate before writing: per image, rescore then OKS-NMS; (person index, new score) kept."""
    by_image: dict[int, list[int]] = {}
    for index, image_id in enumerate(image_ids):
        by_image.setdefault(int(image_id), []).append(index)
    kept = []
    for members in by_image.values():
        scores = np.array([rescore(keypoints[i], box_scores[i], in_vis_thre) for i in members])
        keep = oks_nms(
            keypoints[members], scores, np.asarray(areas, dtype=np.float64)[members], oks_thre, stable_ties
        )
        kept.extend((members[k], float(scores[k])) for k in keep)
    return kept
