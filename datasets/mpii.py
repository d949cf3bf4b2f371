"""MPII Human Pose: HRNet JSON or stacked-hourglass h5 annotations, and PCKh evaluation (SPEC B).

Folder layout (``root``)::

    annot/train.json  annot/valid.json     HRNet's JSON annotations (or train.h5 / valid.h5 of the
                                            pytorch_stacked_hourglass code, with annotation_format='h5')
    annot/gt_valid.mat                      HRNet's PCKh ground truth (jnt_missing, pos_gt_src, headboxes_src)
    images/*.jpg                            the MPII images

Every record comes out in 0-based image pixels with the adjusted box, whatever the source:

- JSON (1-based, raw MPII box): if ``center_x != -1``: ``center_y += 15 * scale`` and ``scale *= 1.25``;
  then 1 is subtracted from the centre and the joints (HRNet's loader).
- h5: centre and scale are already adjusted (``center_y`` is the JSON value + 15 * scale, ``scale`` is
  1.25 x the JSON value), but the centre's x equals the JSON's 1-based value, so only the 1 is subtracted,
  from the centre and from ``part``. ``visible`` in the h5 is an occlusion flag; the annotated mask (what
  JSON's ``joints_vis`` and gt_valid.mat's ``jnt_missing`` mean) is ``part != 0`` and is what is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from datasets.base import EvalResult, PersonRecord, TopDownDataset
from datasets.codec import HeatmapCodec
from datasets.keypoints import MPII
from datasets.pckh import PCKhGroundTruth, compute_pckh, format_pckh_table, load_gt_mat, save_pred_mat
from datasets.registry import DATASETS, check_flag, check_subset, resolve_path, size_pair
from datasets.transforms import check_color
from utils.errors import ConfigError, DataError

ANNOTATION_FORMATS = ("json", "h5")
LAYOUT_HINT = (
    "expected MPII layout: <root>/annot/{train,valid}.json (HRNet JSON annotations) or {train,valid}.h5 "
    "(pytorch_stacked_hourglass), <root>/annot/gt_valid.mat (PCKh ground truth), <root>/images/*.jpg. "
    "Get the images from http://human-pose.mpi-inf.mpg.de/ and the annot/ folder from HRNet's data release; "
    "see docs/data.md"
)
GT_MISMATCH_PIXELS = 2.0  # a ground-truth joint this far from the annotation's counts as disagreeing
GT_MISMATCH_FRACTION = 0.01  # more disagreeing joints than this: the gt file belongs to other annotations


def annotation_path(
    root: Path, split: str, annotation_format: str, annotation_file: str | Path | None
) -> Path:
    """The annotation file of a split; an explicit relative ``annotation_file`` is taken relative to root."""
    if annotation_format not in ANNOTATION_FORMATS:
        raise ConfigError(f"unknown MPII annotation_format '{annotation_format}'; expected json or h5")
    if annotation_file is None:
        return root / "annot" / f"{split}.{annotation_format}"
    return resolve_path(root, annotation_file)


def load_mpii_records(
    root: str | Path,
    split: str,
    annotation_format: str = "json",
    annotation_file: str | Path | None = None,
) -> list[PersonRecord]:
    """Read one split's persons as records in 0-based pixels with the adjusted box (see the module doc)."""
    root = Path(root).expanduser().resolve()
    path = annotation_path(root, split, annotation_format, annotation_file)
    if not path.is_file():
        raise DataError(f"MPII annotation file not found: {path}; {LAYOUT_HINT}")
    image_dir = root / "images"
    if not image_dir.is_dir():
        raise DataError(f"MPII image folder not found: {image_dir}; {LAYOUT_HINT}")
    if annotation_format == "json":
        records = _records_from_json(path, image_dir)
    else:
        records = _records_from_h5(path, image_dir)
    if not records:
        raise DataError(
            f"MPII annotation file {path} holds no persons: the {split} split is empty; put the split's "
            f"annotations there (or point data.annotation_file at them)"
        )
    return records


def check_box(path: Path, index: int, image: str, center: np.ndarray, scale: float) -> None:
    """Refuse a person whose box cannot be cropped: a centre that is not two finite numbers, a scale <= 0 or NaN."""
    where = f"{path}: person {index} (image {image})"
    if center.shape != (2,) or not np.all(np.isfinite(center)):
        raise DataError(f"{where} has centre {center.tolist()}: expected two finite numbers [x, y]")
    if not (np.isfinite(scale) and scale > 0):
        raise DataError(
            f"{where} has scale {scale!r}: the person box size / 200 must be a positive number; fix or drop "
            "the entry"
        )


def check_joints(path: Path, index: int, image: str, joints: np.ndarray, annotated: np.ndarray) -> None:
    """Refuse an annotated joint with a NaN or infinite coordinate (its heatmap target would be NaN)."""
    bad = annotated & ~np.isfinite(joints).all(axis=1)
    if bad.any():
        joint = MPII.joint_names[int(np.argmax(bad))]
        raise DataError(f"{path}: person {index} (image {image}) has a NaN or infinite {joint} joint")


def _records_from_json(path: Path, image_dir: Path) -> list[PersonRecord]:
    """HRNet JSON: a list of {image, center, scale, joints (16x2, 1-based), joints_vis (16)}."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read MPII JSON annotations {path}: {error}") from error
    if not isinstance(entries, list):
        raise DataError(
            f"{path}: expected a JSON list of persons {{image, center, scale, joints, joints_vis}} "
            f"(HRNet's MPII annotations), got a JSON {type(entries).__name__}"
        )
    records = []
    for index, entry in enumerate(entries):
        try:
            center = np.array(entry["center"], dtype=np.float64)
            scale = float(entry["scale"])
            joints = np.array(entry.get("joints", np.zeros((16, 2))), dtype=np.float64).reshape(16, 2)
            visible = np.array(entry.get("joints_vis", np.zeros(16)), dtype=np.float64).reshape(16)
            image = image_dir / entry["image"]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(
                f"{path}: entry {index} is not an HRNet MPII annotation "
                f"({{image, center, scale, joints, joints_vis}}): {error!r}"
            ) from error
        check_box(path, index, entry["image"], center, scale)
        check_joints(path, index, entry["image"], joints, visible > 0)
        if center[0] != -1:
            center[1] += 15 * scale
            scale *= 1.25
        records.append(
            _record(image, center - 1, scale, joints - 1, visible > 0, {"annotation_index": index})
        )
    return records


def _records_from_h5(path: Path, image_dir: Path) -> list[PersonRecord]:
    """Stacked-hourglass h5: center, scale (already adjusted), part (1-based), imgname (bytes), normalize."""
    try:
        with h5py.File(path, "r") as h5:
            centers = h5["center"][:].astype(np.float64)
            scales = h5["scale"][:].astype(np.float64)
            parts = h5["part"][:].astype(np.float64)
            names = [name.decode() if isinstance(name, bytes) else str(name) for name in h5["imgname"][:]]
            head_sizes = h5["normalize"][:].astype(np.float64) if "normalize" in h5 else None
    except (OSError, KeyError) as error:
        raise DataError(
            f"cannot read MPII h5 annotations {path} (needs center, scale, part, imgname): {error}"
        ) from error
    sizes = {"center": len(centers), "scale": len(scales), "part": len(parts), "imgname": len(names)}
    if head_sizes is not None:
        sizes["normalize"] = len(head_sizes)
    if len(set(sizes.values())) > 1 or centers.shape[1:] != (2,) or parts.shape[1:] != (16, 2):
        raise DataError(
            f"{path}: the h5 datasets disagree: center {centers.shape}, scale {scales.shape}, part "
            f"{parts.shape}, imgname ({len(names)},)"
            + ("" if head_sizes is None else f", normalize {head_sizes.shape}")
            + "; expected (N, 2), (N,), (N, 16, 2) and (N,)"
        )
    records = []
    for index, name in enumerate(names):
        check_box(path, index, name, centers[index], float(scales[index]))
        extra: dict = {"annotation_index": index}
        if head_sizes is not None:
            extra["head_size"] = head_sizes[index]
        annotated = (parts[index] != 0).any(axis=1)
        check_joints(path, index, name, parts[index], annotated)
        records.append(
            _record(image_dir / name, centers[index] - 1, scales[index], parts[index] - 1, annotated, extra)
        )
    return records


def _record(
    image: Path, center: np.ndarray, scale: float, joints: np.ndarray, visible: np.ndarray, extra: dict
) -> PersonRecord:
    return PersonRecord(
        image=image,
        center=center.astype(np.float64),
        scale=np.array([scale, scale], dtype=np.float64),
        joints=joints.astype(np.float64),
        joints_vis=visible.astype(np.float64),
        extra=extra,
    )


class MPIIDataset(TopDownDataset):
    """MPII persons through the shared top-down pipeline, scored with PCKh (HRNet protocol).

    Ground truth for PCKh, first found wins: ``gt_file`` if given; ``<root>/annot/gt_<split>.mat`` (the
    official numbers: exact joints and head boxes); the h5 annotations' ``normalize`` head sizes with their
    ``part`` joints (integer-rounded pixels, so within a few hundredths of the official value). JSON
    annotations carry no head boxes, so without a gt .mat they cannot be scored (DataError).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        train: bool,
        annotation_format: str = "json",
        annotation_file: str | Path | None = None,
        gt_file: str | Path | None = None,
        subset: int | None = None,
        **pipeline,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.split = split
        self.annotation_path = annotation_path(self.root, split, annotation_format, annotation_file)
        records = load_mpii_records(self.root, split, annotation_format, annotation_file)
        if subset is not None:
            records = records[: int(subset)]
        self.gt_file = None if gt_file is None else resolve_path(self.root, gt_file)
        super().__init__(records, MPII, train=train, **pipeline)

    def ground_truth(self) -> tuple[PCKhGroundTruth, str]:
        """The PCKh ground truth of this dataset's records (in record order) and a description of its source."""
        gt_path = self.gt_file or self.root / "annot" / f"gt_{self.split}.mat"
        if self.gt_file is not None or gt_path.is_file():
            gt = load_gt_mat(gt_path)
            rows = np.array([record.extra["annotation_index"] for record in self.records], dtype=np.int64)
            if len(rows) and rows.max() >= len(gt):
                raise DataError(
                    f"{gt_path} has {len(gt)} persons, fewer than the annotations ({rows.max() + 1})"
                )
            gt = gt.select(rows)
            self._check_agreement(gt, gt_path)
            return gt, str(gt_path)
        if self.records and all("head_size" in record.extra for record in self.records):
            joints = np.stack([record.joints for record in self.records]) + 1.0
            annotated = np.stack([record.joints_vis for record in self.records]) > 0
            head_sizes = np.array([record.extra["head_size"] for record in self.records])
            gt = PCKhGroundTruth(joints, annotated, head_sizes, source=f"{self.annotation_path} (normalize)")
            return gt, "h5 annotations (part + normalize)"
        raise DataError(
            f"cannot compute PCKh: no head sizes. Put HRNet's gt_{self.split}.mat at {gt_path} (or set gt_file), "
            "or use h5 annotations that carry 'normalize'; JSON annotations have no head boxes"
        )

    def check_scoring(self) -> None:
        """The PCKh ground truth exists, reads and matches the annotations (``ground_truth``)."""
        self.ground_truth()

    def _check_agreement(self, gt: PCKhGroundTruth, gt_path: Path) -> None:
        """Refuse a ground-truth file whose joints do not match the annotations (wrong split or order)."""
        joints = np.stack([record.joints for record in self.records]) + 1.0
        both = gt.annotated & (np.stack([record.joints_vis for record in self.records]) > 0)
        if not both.any():
            return
        far = np.abs(joints - gt.joints).max(axis=2)[both] > GT_MISMATCH_PIXELS
        if far.mean() > GT_MISMATCH_FRACTION:
            raise DataError(
                f"{gt_path} does not match the {self.split} annotations: {100 * far.mean():.1f}% of the joints "
                f"differ by more than {GT_MISMATCH_PIXELS:g} px (another split, or persons in another order?)"
            )

    def evaluate(self, preds: np.ndarray, maxvals: np.ndarray, output_dir: Path | None = None) -> EvalResult:
        """PCKh@0.5 table of 0-based predictions (N, 16, 2) in record order; writes pred.mat to output_dir."""
        preds = np.asarray(preds, dtype=np.float64)[:, :, :2]
        if preds.shape != (len(self.records), MPII.num_joints, 2):
            raise ValueError(f"expected predictions of shape ({len(self.records)}, 16, 2), got {preds.shape}")
        if output_dir is not None:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            save_pred_mat(Path(output_dir) / "pred.mat", preds)
        gt, source = self.ground_truth()
        result = compute_pckh(preds + 1.0, gt)
        table = result.table
        title = f"MPII {self.split} PCKh@0.5 ({len(self.records)} persons; ground truth: {source})"
        return EvalResult(table=table, metric=table["Mean"], text=format_pckh_table(table, title))


@DATASETS.register("mpii", skeleton=MPII)
def build_mpii(
    *,
    root: str,
    split: str,
    train: bool,
    seed: int = 0,
    annotation_format: str = "json",
    annotation_file: str | None = None,
    gt_file: str | None = None,
    input_size: Sequence[int] = (256, 256),
    heatmap_size: Sequence[int] = (64, 64),
    sigma: float = 2.0,
    scale_factor: float = 0.25,
    rotation_factor: float = 30.0,
    rotation_prob: float = 0.6,
    flip: bool = True,
    color: str = "bgr_imagenet",
    subset: int | None = None,
    reduced_decode: bool = False,
    codec: HeatmapCodec | None = None,
) -> MPIIDataset:
    """The ``data: {name: mpii, ...}`` builder: the keyword arguments are the config keys (SPEC B defaults).

    ``reduced_decode: true`` decodes JPEGs at 1/2-1/8 size when the crop shrinks enough (faster; changes the
    crop's pixels slightly, never the targets; see docs/data.md).
    """
    check_color(color)
    check_flag(reduced_decode, "reduced_decode")
    check_subset(subset, "persons")
    return MPIIDataset(
        root,
        split,
        train=train,
        annotation_format=annotation_format,
        annotation_file=annotation_file,
        gt_file=gt_file,
        subset=subset,
        codec=codec
        or HeatmapCodec(
            size_pair(input_size, "input_size"), size_pair(heatmap_size, "heatmap_size"), float(sigma)
        ),
        scale_factor=float(scale_factor),
        rotation_factor=float(rotation_factor),
        rotation_prob=float(rotation_prob),
        flip=bool(flip),
        color=color,
        seed=int(seed),
        reduced_decode=reduced_decode,
    )
