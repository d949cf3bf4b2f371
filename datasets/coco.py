"""COCO and OCHuman keypoints (COCO format): top-down persons, half-body augmentation, masks, COCO AP.

Follows HRNet's COCO practice (SPEC B, COCO paragraph):

- a person box ``[x, y, w, h]`` is cleaned (clipped to the image; zero-area annotations dropped), widened or
  heightened to the input's aspect ratio (w/h), padded by 1.25 and expressed as ``scale = size / 200``;
- ground-truth persons are the non-crowd person annotations with at least one labelled keypoint (for
  training and for ground-truth-box testing);
- test persons come from the ground-truth boxes or from a detector results file (score threshold);
- training adds half-body augmentation: with probability ``half_body_prob``, when more than 8 joints are
  labelled, the box is replaced by one around the upper or the lower body (HRNet's rule, see
  ``half_body_box``);
- evaluation: rescoring, OKS-NMS per image and pycocotools COCOeval (datasets.coco_eval).

OCHuman ships COCO-format files (no training split): the same class reads them, ``ochuman`` in the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

from datasets.base import EvalResult, PersonRecord, TopDownDataset
from datasets.coco_eval import (
    KEYPOINT_SCORE_THRESHOLD,
    PERSON_CATEGORY_ID,
    coco_keypoint_eval,
    coco_results,
    format_coco_table,
    load_coco,
    load_image_info,
    read_json_list,
    rescore_and_nms,
    write_results_json,
)
from datasets.codec import HeatmapCodec
from datasets.keypoints import COCO as COCO_SKELETON
from datasets.keypoints import COCO_UPPER_BODY
from datasets.masks import input_to_heatmap_matrix, instance_mask, warp_mask
from datasets.registry import DATASETS, check_flag, check_subset, resolve_path, size_pair
from datasets.transforms import PIXEL_STD, check_color
from utils.errors import ConfigError, DataError

BOX_PADDING = 1.25  # HRNet pads every person box by 25%
HALF_BODY_MIN_JOINTS = 8  # half-body needs more labelled joints than this
HALF_BODY_PADDING = 1.5
RESULTS_FILE = "keypoints_results.json"


def box_to_center_scale(box: Sequence[float], aspect_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's ``_xywh2cs``: box xywh -> centre and padded scale (w/200, h/200) with the input's aspect ratio."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5])
    return center, _fit_aspect(w, h, aspect_ratio) * BOX_PADDING


def _fit_aspect(width: float, height: float, aspect_ratio: float) -> np.ndarray:
    """Grow the short side so that width / height == aspect_ratio; return the size / 200."""
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    return np.array([width, height]) / PIXEL_STD


def clean_box(bbox: Sequence[float], image_width: int, image_height: int) -> np.ndarray | None:
    """HRNet's box cleaning: clip xywh to the image (inclusive pixel bounds); None when nothing is left."""
    x, y, w, h = (float(v) for v in bbox[:4])
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1])


def half_body_box(
    joints: np.ndarray,
    joints_vis: np.ndarray,
    rng: np.random.Generator,
    aspect_ratio: float,
    upper_body: Sequence[int] = COCO_UPPER_BODY,
) -> tuple[np.ndarray, np.ndarray] | None:
    """HRNet's half-body box: the labelled upper (or lower) joints' box, to the aspect ratio, padded 1.5.

    The upper body is chosen when ``N(0,1) < 0.5`` (HRNet draws ``randn``, so about 69% of the time) and it
    has more than 2 labelled joints; else the lower body if it has more than 2, else the upper body. None when
    the chosen part has fewer than 2 joints.
    """
    labelled = np.asarray(joints_vis).reshape(-1) > 0
    is_upper = np.isin(np.arange(len(labelled)), upper_body)
    upper, lower = joints[labelled & is_upper], joints[labelled & ~is_upper]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        selected = upper
    else:
        selected = lower if len(lower) > 2 else upper
    if len(selected) < 2:
        return None
    selected = np.asarray(selected, dtype=np.float64)
    width, height = selected.max(axis=0) - selected.min(axis=0)
    return selected.mean(axis=0), _fit_aspect(width, height, aspect_ratio) * HALF_BODY_PADDING


def gt_person_records(
    coco: COCO,
    image_ids: Sequence[int],
    image_dir: Path,
    aspect_ratio: float,
    source: str | Path = "COCO annotations",
    num_joints: int = COCO_SKELETON.num_joints,
) -> list[PersonRecord]:
    """One record per non-crowd annotated person with a labelled keypoint (HRNet's ground-truth db).

    HRNet lists the annotations with ``getAnnIds(iscrowd=False)``: crowd regions never become persons, and a
    box that cleans to nothing (outside the image) is skipped. A person with labelled keypoints that cannot
    make a sample (not 3 x ``num_joints`` keypoint values, a NaN in them or in the box) is a DataError naming
    ``source`` (the annotation file), the annotation id and the image, rather than a NaN target later.
    """
    records = []
    for image_id in image_ids:
        image = coco.imgs[image_id]
        for ann in coco.imgToAnns.get(image_id, []):
            if (
                ann.get("category_id") != PERSON_CATEGORY_ID
                or ann.get("iscrowd", 0)
                or ann.get("area", 0) <= 0
            ):
                continue
            where = f"{source}: annotation {ann.get('id')!r} (image {image.get('file_name')})"
            try:
                keypoints = np.asarray(ann.get("keypoints") or [], dtype=np.float64).reshape(-1, 3)
            except (TypeError, ValueError):
                raise DataError(
                    f"{where}: keypoints must be numbers, 3 per keypoint (x, y, v); got {ann['keypoints']!r:.80}"
                ) from None
            if len(keypoints) == 0 or keypoints.max() == 0:
                continue
            try:
                bbox = np.asarray(ann["bbox"], dtype=np.float64).reshape(-1)
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{where} has no usable bbox [x, y, w, h]: {ann.get('bbox')!r:.80}") from None
            if len(keypoints) != num_joints:
                raise DataError(
                    f"{where} has {3 * len(keypoints)} keypoint values, expected {3 * num_joints} "
                    f"(x, y, v for each of {num_joints} keypoints)"
                )
            if not np.all(np.isfinite(keypoints)) or bbox.shape != (4,) or not np.all(np.isfinite(bbox)):
                raise DataError(
                    f"{where} has NaN or infinite keypoints or a bbox that is not 4 finite numbers "
                    f"(bbox {bbox.tolist()})"
                )
            box = clean_box(bbox, image["width"], image["height"])
            if box is None:
                continue
            center, scale = box_to_center_scale(box, aspect_ratio)
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
                raise DataError(
                    f"{where} has a person box of zero size once clipped to the image (bbox {bbox.tolist()}, "
                    f"image {image['width']}x{image['height']}): it cannot be cropped; fix or drop it"
                )
            records.append(
                PersonRecord(
                    image=image_dir / image["file_name"],
                    center=center,
                    scale=scale,
                    joints=keypoints[:, :2].copy(),
                    joints_vis=np.minimum(keypoints[:, 2], 1.0),
                    extra=_meta(image_id, ann["id"], 1.0, scale),
                )
            )
    return records


def detection_person_records(
    coco: COCO,
    detections: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    image_dir: Path,
    aspect_ratio: float,
    score_threshold: float,
    num_joints: int,
    source: str | Path = "detection file",
) -> list[PersonRecord]:
    """One record per person detection of an evaluated image with score >= threshold (HRNet's detection db).

    As HRNet, the box is not cleaned, and a box with one side 0 still makes a crop (the aspect ratio sets
    that side); only a box that gives no crop at all (both sides <= 0) is skipped. A detection whose bbox is not 4 finite numbers, or whose score is not a finite number, is a DataError
    naming ``source`` and the entry.
    """
    wanted = set(image_ids)
    records = []
    for index, det in enumerate(detections):
        try:
            bbox = np.asarray(det["bbox"], dtype=np.float64).reshape(-1)
            score = float(det["score"])
        except (TypeError, ValueError):
            bbox, score = np.zeros(0), float("nan")
        if bbox.shape != (4,) or not np.all(np.isfinite(bbox)) or not np.isfinite(score):
            raise DataError(
                f"{source}: entry {index} (image_id {det.get('image_id')!r}) needs a bbox of 4 finite numbers "
                f"[x, y, w, h] and a finite score, got bbox {det.get('bbox')!r}, score {det.get('score')!r}"
            )
        if (
            det.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID
            or det["image_id"] not in wanted
            or score < score_threshold
        ):
            continue
        center, scale = box_to_center_scale(bbox, aspect_ratio)
        if not np.all(scale > 0):
            continue
        records.append(
            PersonRecord(
                image=image_dir / coco.imgs[det["image_id"]]["file_name"],
                center=center,
                scale=scale,
                joints=np.zeros((num_joints, 2)),
                joints_vis=np.zeros(num_joints),
                extra=_meta(det["image_id"], -1, score, scale),
            )
        )
    return records


def _meta(image_id: int, ann_id: int, score: float, scale: np.ndarray) -> dict[str, Any]:
    """The per-person meta a sample carries: image id, annotation id (-1: detection), box score, box area."""
    area = float(np.prod(scale * PIXEL_STD))
    return {"image_id": int(image_id), "ann_id": int(ann_id), "score": float(score), "area": area}


HRNET_DETECTIONS = (
    "linked from the README of https://github.com/leoxiaobin/deep-high-resolution-net.pytorch (Data "
    "preparation, COCO: 'person detection result of COCO val2017 and test-dev2017', OneDrive or Google Drive)"
)


def missing_detections(dataset: str, path: Path, ground_truth: bool) -> DataError:
    """The one paragraph for a detector-box split whose detections file is absent: which file, where to get it,
    and (a split with ground truth) how to test on ground-truth boxes instead."""
    if not ground_truth:
        return DataError(
            f"{dataset} detection file not found: {path}. A split without ground truth (test-dev2017) is always "
            "tested on detector boxes; HRNet's are COCO_test-dev2017_detections_AP_H_609_person.json (a 60.9-AP "
            f"person detector), {HRNET_DETECTIONS}: put the file at that path or set data.test_detection_file"
        )
    return DataError(
        f"{dataset} detection file not found: {path}. This split is tested on detector boxes (data.use_gt_boxes: "
        "false, the protocol of the ODKD experiments and of HRNet's published numbers); HRNet's are "
        f"COCO_val2017_detections_AP_H_56_person.json (a 56.4-AP person detector), {HRNET_DETECTIONS}: put the "
        "file at that path or set data.detection_file, or test on ground-truth boxes instead with --set "
        "data.use_gt_boxes=true (docs/coco.md)"
    )


def load_detections(path: Path) -> list[dict[str, Any]]:
    """A COCO detection results file (list of {image_id, category_id, bbox xywh, score})."""
    return read_json_list(
        path,
        {"image_id", "bbox", "score"},
        "detection file",
        "COCO detection results format: expected a JSON list of {image_id, category_id, bbox [x, y, w, h], score}",
    )


class CocoDataset(TopDownDataset):
    """Top-down persons of a COCO-format keypoint file (COCO, OCHuman), evaluated by COCO AP."""

    def __init__(
        self,
        records: list[PersonRecord],
        coco: COCO,
        *,
        title: str,
        set_name: str = "",
        ground_truth: bool = True,
        image_ids: Sequence[int] | None = None,
        half_body_prob: float = 0.3,
        with_mask: bool = False,
        oks_threshold: float = 0.9,
        keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
        **top_down: Any,
    ) -> None:
        super().__init__(records, COCO_SKELETON, **top_down)
        self.coco = coco
        self.title = title
        self.set_name = set_name
        self.has_ground_truth = bool(ground_truth)
        self.image_ids = None if image_ids is None else [int(i) for i in image_ids]
        self.half_body_prob = float(half_body_prob)
        self.with_mask = bool(with_mask)
        self.oks_threshold = float(oks_threshold)
        self.keypoint_score_threshold = float(keypoint_score_threshold)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """Every entry of a collated batch, the person mask included when ``with_mask`` is on."""
        return super().batch_keys + (("mask",) if self.with_mask else ())

    def adjust_box(self, record: PersonRecord, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Half-body augmentation (training only, HRNet): a box around the upper or lower body."""
        if np.sum(record.joints_vis > 0) > HALF_BODY_MIN_JOINTS and rng.random() < self.half_body_prob:
            half = half_body_box(record.joints, record.joints_vis, rng, self.aspect_ratio)
            if half is not None:
                return half
        return super().adjust_box(record, rng)

    def extra_targets(self, record: PersonRecord, matrix: np.ndarray, flipped: bool) -> dict[str, Any]:
        """With masks: the person's mask (raw image frame) warped by the crop matrix, flip included, to heatmap size."""
        if not self.with_mask:
            return {}
        heatmap_size = self.codec.heatmap_size
        mask = instance_mask(self.coco, record.extra["ann_id"])
        to_heatmap = input_to_heatmap_matrix(matrix, self.input_size, heatmap_size)
        return {"mask": torch.from_numpy(warp_mask(mask, to_heatmap, heatmap_size)[None])}

    def keypoint_results(self, preds: np.ndarray, maxvals: np.ndarray) -> list[dict[str, Any]]:
        """Predictions in record order -> COCO keypoint results: rescored, OKS-NMS per image (HRNet's order)."""
        preds = np.asarray(preds, dtype=np.float64)
        maxvals = np.asarray(maxvals, dtype=np.float64).reshape(len(preds), -1, 1)
        if len(preds) != len(self.records):
            raise ValueError(f"{len(preds)} predictions for {len(self.records)} persons")
        keypoints = np.concatenate([preds, maxvals], axis=2)
        image_ids = np.array([r.extra["image_id"] for r in self.records])
        keep, scores = rescore_and_nms(
            image_ids,
            keypoints,
            np.array([r.extra["score"] for r in self.records]),
            np.array([r.extra["area"] for r in self.records]),
            oks_threshold=self.oks_threshold,
            keypoint_score_threshold=self.keypoint_score_threshold,
        )
        return coco_results(
            image_ids[keep],
            keypoints[keep],
            scores[keep],
            centers=np.stack([self.records[i].center for i in keep]) if len(keep) else None,
            scales=np.stack([self.records[i].scale for i in keep]) if len(keep) else None,
        )

    def evaluate(self, preds: np.ndarray, maxvals: np.ndarray, output_dir: Path | None = None) -> EvalResult:
        """Rescore, OKS-NMS per image, score with COCOeval; write ``keypoints_results.json`` to output_dir."""
        if not self.has_ground_truth:
            raise DataError(
                f"the {self.set_name} split has no ground truth to score with (an image-info file): write its "
                "results for the evaluation server instead (evaluate.py --split test, docs/coco.md)"
            )
        results = self.keypoint_results(preds, maxvals)
        if output_dir is not None:
            write_results_json(results, Path(output_dir) / RESULTS_FILE)
        table = coco_keypoint_eval(self.coco, results, image_ids=self.image_ids)
        title = f"{self.title} ({len(self.records)} persons, {len(results)} after OKS-NMS)"
        return EvalResult(table=table, metric=table["AP"], text=format_coco_table(table, title))


def _resolve(root: Path, path: str, set_name: str) -> Path:
    """A config path with ``{split}`` replaced by the set name: absolute as given, else under root."""
    return resolve_path(root, path.replace("{split}", set_name))


def _set_name(split: str, set_names: dict[str, str | None], dataset: str) -> str:
    """Map the caller's split ('train', 'valid', 'test') to the dataset's set name (e.g. 'val2017')."""
    if split not in set_names:
        raise ConfigError(f"{dataset}: unknown split '{split}'; expected one of {', '.join(set_names)}")
    name = set_names[split]
    if name is None:
        raise ConfigError(f"{dataset} has no '{split}' split configured (set data.{split}_set)")
    return name


def _first_images(coco: COCO, subset: int | None) -> list[int] | None:
    """The first ``subset`` images (by id) with an annotated person keypoint; None (all images) without subset."""
    if subset is None:
        return None
    with_people = {
        a["image_id"] for a in coco.dataset["annotations"] if max(a.get("keypoints", [0]) or [0]) > 0
    }
    return sorted(with_people)[:subset]


def build_coco_format(
    *,
    dataset: str,
    layout: str,
    root: str,
    split: str,
    train: bool,
    seed: int,
    set_names: dict[str, str | None],
    ann_file: str,
    image_dir: str,
    detection_file: str | None,
    det_score_threshold: float,
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
    codec: HeatmapCodec | None,
    subset: int | None,
    ground_truth: bool = True,
    **options: Any,
) -> CocoDataset:
    """Shared body of the COCO and OCHuman builders: resolve files, make records, build the dataset.

    ``ground_truth: false`` (COCO test-dev): ``ann_file`` is an image-info file (images, no annotations) and
    the persons are the detections of ``detection_file``; such a split is predicted, never scored.
    """
    set_name = _set_name(split, set_names, dataset)
    check_subset(subset, "images")
    root_path = Path(root).expanduser().resolve()
    ann_path = _resolve(root_path, ann_file, set_name)
    images = _resolve(root_path, image_dir, set_name)
    ann_what = "annotation file" if ground_truth else "image-info file (no ground truth)"
    for what, path in (("data root", root_path), (ann_what, ann_path), ("image folder", images)):
        if not path.exists():
            raise DataError(f"{dataset} {what} not found: {path}; {layout}")
    coco = load_coco(ann_path) if ground_truth else load_image_info(ann_path)
    image_ids = (
        _first_images(coco, subset)
        if ground_truth
        else (None if subset is None else sorted(coco.imgs)[:subset])
    )
    wanted = sorted(coco.imgs) if image_ids is None else image_ids
    codec = codec or HeatmapCodec(
        size_pair(input_size, "input_size"), size_pair(heatmap_size, "heatmap_size"), float(sigma)
    )
    aspect_ratio = codec.input_size[0] / codec.input_size[1]
    if detection_file is None or train:
        records = gt_person_records(coco, wanted, images, aspect_ratio, source=ann_path)
        source = "ground-truth boxes"
    else:
        det_path = _resolve(root_path, detection_file, set_name)
        if not det_path.is_file():
            raise missing_detections(dataset, det_path, ground_truth)
        detections = load_detections(det_path)
        records = detection_person_records(
            coco,
            detections,
            wanted,
            images,
            aspect_ratio,
            det_score_threshold,
            COCO_SKELETON.num_joints,
            source=det_path,
        )
        source = f"detector boxes, score >= {det_score_threshold:g}"
    if not records:
        what = (
            "no person annotation with a labelled keypoint and a box inside its image"
            if source == "ground-truth boxes"
            else f"no person detection of its images with score >= {det_score_threshold:g} in {det_path}"
        )
        raise DataError(f"the {dataset} {set_name} split is empty: {ann_path} has {what} ({source})")
    return CocoDataset(
        records,
        coco,
        title=f"{dataset} {set_name} keypoint AP ({source})",
        set_name=set_name,
        ground_truth=ground_truth,
        image_ids=image_ids,
        train=train,
        codec=codec,
        seed=int(seed),
        **options,
    )


COCO_LAYOUT = (
    "expected COCO layout under root: annotations/person_keypoints_val2017.json (and _train2017), "
    "images/val2017/*.jpg (and images/train2017/), "
    "person_detection_results/COCO_val2017_detections_AP_H_56_person.json (only with use_gt_boxes: false); "
    "see docs/coco.md"
)
COCO_TEST_LAYOUT = (
    "expected COCO test-dev layout under root: annotations/image_info_test-dev2017.json (from "
    "image_info_test2017.zip, cocodataset.org), images/test2017/*.jpg (test-dev is a part of test2017), "
    "person_detection_results/COCO_test-dev2017_detections_AP_H_609_person.json (HRNet's README); "
    "see docs/coco.md"
)
OCHUMAN_LAYOUT = (
    "expected OCHuman layout under root: annotations/ochuman_coco_format_val_range_0.00_1.00.json "
    "(and _test_), images/*.jpg; see docs/coco.md"
)


@DATASETS.register("coco", skeleton=COCO_SKELETON)
def build_coco(
    *,
    root: str,
    split: str,
    train: bool,
    seed: int = 0,
    ann_file: str = "annotations/person_keypoints_{split}.json",
    image_dir: str = "images/{split}",
    train_set: str = "train2017",
    val_set: str = "val2017",
    test_set: str = "test-dev2017",
    use_gt_boxes: bool = True,
    detection_file: str = "person_detection_results/COCO_{split}_detections_AP_H_56_person.json",
    det_score_threshold: float = 0.0,
    test_ann_file: str = "annotations/image_info_{split}.json",
    test_image_dir: str = "images/test2017",
    test_detection_file: str = "person_detection_results/COCO_{split}_detections_AP_H_609_person.json",
    input_size: Sequence[int] = (192, 256),
    heatmap_size: Sequence[int] = (48, 64),
    sigma: float = 2.0,
    scale_factor: float = 0.35,
    rotation_factor: float = 45.0,
    rotation_prob: float = 0.6,
    half_body_prob: float = 0.3,
    flip: bool = True,
    color: str = "rgb_imagenet",
    with_mask: bool = False,
    subset: int | None = None,
    oks_threshold: float = 0.9,
    keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    reduced_decode: bool = False,
    codec: HeatmapCodec | None = None,
) -> CocoDataset:
    """The ``data: {name: coco, ...}`` builder: the keyword arguments are the config keys (HRNet defaults).

    ``{split}`` in a path is the set name of the requested split (train_set, val_set or test_set). Training
    always uses the annotated boxes; ``use_gt_boxes: false`` makes the valid split use ``detection_file``.
    The test split (test-dev2017, HRNet's layout) has no ground truth: its images come from
    ``test_ann_file`` (an image-info file), its persons from ``test_detection_file``, whatever use_gt_boxes says.
    ``reduced_decode: true`` decodes JPEGs at 1/2-1/8 size when the crop shrinks enough (faster; changes the
    crop's pixels slightly, never the targets; see docs/data.md).
    """
    check_color(color)
    check_flag(reduced_decode, "reduced_decode")
    test = split == "test"
    if with_mask and (test or not use_gt_boxes) and not train:
        raise ConfigError("data.with_mask: masks need ground-truth persons; detector boxes have none")
    return build_coco_format(
        dataset="COCO",
        layout=COCO_TEST_LAYOUT if test else COCO_LAYOUT,
        root=root,
        split=split,
        train=train,
        seed=seed,
        set_names={"train": train_set, "valid": val_set, "test": test_set},
        ann_file=test_ann_file if test else ann_file,
        image_dir=test_image_dir if test else image_dir,
        detection_file=test_detection_file if test else (None if use_gt_boxes else detection_file),
        ground_truth=not test,
        det_score_threshold=float(det_score_threshold),
        input_size=input_size,
        heatmap_size=heatmap_size,
        sigma=sigma,
        codec=codec,
        subset=subset,
        scale_factor=float(scale_factor),
        rotation_factor=float(rotation_factor),
        rotation_prob=float(rotation_prob),
        half_body_prob=float(half_body_prob),
        flip=bool(flip),
        color=color,
        with_mask=bool(with_mask),
        oks_threshold=float(oks_threshold),
        keypoint_score_threshold=float(keypoint_score_threshold),
        reduced_decode=reduced_decode,
    )


@DATASETS.register("ochuman", skeleton=COCO_SKELETON)
def build_ochuman(
    *,
    root: str,
    split: str,
    train: bool,
    seed: int = 0,
    ann_file: str = "annotations/ochuman_coco_format_{split}_range_0.00_1.00.json",
    image_dir: str = "images",
    val_set: str = "val",
    test_set: str = "test",
    input_size: Sequence[int] = (192, 256),
    heatmap_size: Sequence[int] = (48, 64),
    sigma: float = 2.0,
    color: str = "rgb_imagenet",
    with_mask: bool = False,
    subset: int | None = None,
    oks_threshold: float = 0.9,
    keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    reduced_decode: bool = False,
    codec: HeatmapCodec | None = None,
) -> CocoDataset:
    """The ``data: {name: ochuman, ...}`` builder: test-only (no training split), ground-truth boxes."""
    if train or split == "train":
        raise ConfigError("OCHuman has no training split: train on COCO and evaluate on OCHuman val/test")
    check_color(color)
    check_flag(reduced_decode, "reduced_decode")
    return build_coco_format(
        dataset="OCHuman",
        layout=OCHUMAN_LAYOUT,
        root=root,
        split=split,
        train=False,
        seed=seed,
        set_names={"valid": val_set, "test": test_set},
        ann_file=ann_file,
        image_dir=image_dir,
        detection_file=None,
        det_score_threshold=0.0,
        input_size=input_size,
        heatmap_size=heatmap_size,
        sigma=sigma,
        codec=codec,
        subset=subset,
        color=color,
        with_mask=bool(with_mask),
        oks_threshold=float(oks_threshold),
        keypoint_score_threshold=float(keypoint_score_threshold),
        reduced_decode=reduced_decode,
    )
