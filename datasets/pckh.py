"""PCKh on MPII with the HRNet protocol (the one the OKDHP paper's numbers use).

All coordinates here are MATLAB 1-based pixels, as in ``gt_valid.mat`` and HRNet's ``pred.mat``.
A joint counts when it is annotated (``jnt_missing == 0``); it is correct when its distance to the ground
truth divided by the head size (0.6 x the head box diagonal) is at most the threshold. Columns:

- ``Head`` is the head-top joint; ``Shoulder`` ... ``Ankle`` average the left and right joints' rates.
- ``Mean`` is HRNet's and the paper's number: the 14 joints other than pelvis and thorax, each weighted by
  its number of annotated instances.
- ``Mean@0.1`` is the same weighted mean at the true threshold 0.1 (HRNet prints 0.11 under that name).
- ``MeanUnweighted`` is the plain mean of the 14 joints' rates, as some other code bases report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from utils.errors import DataError

HEAD_SIZE_FACTOR = 0.6  # HRNet's SC_BIAS: head size = 0.6 x head box diagonal
MPII_MAT_JOINT_NAMES = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
    "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
)  # fmt: skip
EXCLUDED_FROM_MEAN = (6, 7)  # pelvis, thorax
TABLE_PARTS = (
    ("Head", (9,)),
    ("Shoulder", (13, 12)),
    ("Elbow", (14, 11)),
    ("Wrist", (15, 10)),
    ("Hip", (3, 2)),
    ("Knee", (4, 1)),
    ("Ankle", (5, 0)),
)
TABLE_KEYS = tuple(name for name, _ in TABLE_PARTS) + ("Mean", "Mean@0.1", "MeanUnweighted")
GT_MAT_KEYS = ("jnt_missing", "pos_gt_src", "headboxes_src")


@dataclass
class PCKhGroundTruth:
    """Ground truth for PCKh: joints (N, 16, 2) 1-based, annotated mask (N, 16), head sizes (N,).

    Shapes that disagree, a head size that is not a positive finite number, or an annotated joint that is not
    finite are DataErrors naming ``source`` (the file the ground truth came from) and the first bad person.
    """

    joints: np.ndarray
    annotated: np.ndarray
    head_sizes: np.ndarray
    source: str = field(default="PCKh ground truth", compare=False)

    def __post_init__(self) -> None:
        self.joints = np.asarray(self.joints, dtype=np.float64)
        self.annotated = np.asarray(self.annotated).astype(bool)
        self.head_sizes = np.asarray(self.head_sizes, dtype=np.float64).reshape(-1)
        n = len(self.joints)
        if (
            self.joints.ndim != 3
            or self.joints.shape[1:] != (16, 2)
            or self.annotated.shape != (n, 16)
            or self.head_sizes.shape != (n,)
        ):
            raise DataError(
                f"{self.source}: the PCKh ground-truth shapes disagree: joints {self.joints.shape}, annotated "
                f"{self.annotated.shape}, head sizes {self.head_sizes.shape} (expected (N,16,2), (N,16), (N,))"
            )
        bad = ~(np.isfinite(self.head_sizes) & (self.head_sizes > 0))
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(
                f"{self.source}: {int(bad.sum())} of {n} persons have a head size that is not a positive "
                f"number (first: person {first}, head size {self.head_sizes[first]!r}); PCKh divides by it"
            )
        bad = (~np.isfinite(self.joints).all(axis=2)) & self.annotated
        if bad.any():
            first = int(np.argmax(bad.any(axis=1)))
            raise DataError(
                f"{self.source}: {int(bad.sum())} annotated joints are NaN or infinite (first: person {first}, "
                f"joint {MPII_MAT_JOINT_NAMES[int(np.argmax(bad[first]))]}); mark them missing or fix them"
            )

    def __len__(self) -> int:
        return len(self.joints)

    @classmethod
    def from_headboxes(
        cls,
        joints: np.ndarray,
        annotated: np.ndarray,
        headboxes: np.ndarray,
        source: str = "PCKh ground truth",
    ) -> PCKhGroundTruth:
        """Build from head boxes (N, 2, 2) = [[x1, y1], [x2, y2]], as MPII annotates them."""
        headboxes = np.asarray(headboxes, dtype=np.float64)
        head_sizes = HEAD_SIZE_FACTOR * np.linalg.norm(headboxes[:, 1] - headboxes[:, 0], axis=1)
        return cls(joints, annotated, head_sizes, source)

    def select(self, rows: np.ndarray) -> PCKhGroundTruth:
        """The ground truth of the given rows (e.g. the persons of a subset), in that order."""
        return PCKhGroundTruth(self.joints[rows], self.annotated[rows], self.head_sizes[rows], self.source)


@dataclass
class PCKhResult:
    """Per-joint PCKh (all 16 joints, in percent) and the annotated counts behind each rate."""

    per_joint: np.ndarray  # (16,) at the main threshold; NaN for a joint with no annotated instance
    per_joint_at_0_1: np.ndarray  # (16,) at threshold 0.1
    counts: np.ndarray  # (16,) annotated instances per joint
    threshold: float

    @property
    def table(self) -> dict[str, float]:
        """The summary table with keys ``TABLE_KEYS``."""
        table = {name: float(np.mean(self.per_joint[list(ids)])) for name, ids in TABLE_PARTS}
        table["Mean"] = weighted_mean(self.per_joint, self.counts)
        table["Mean@0.1"] = weighted_mean(self.per_joint_at_0_1, self.counts)
        kept = _mean_joints(self.counts)
        table["MeanUnweighted"] = float(np.mean(self.per_joint[kept])) if kept.any() else float("nan")
        return table

    def per_joint_table(self) -> dict[str, float]:
        """PCKh of each of the 16 joints, keyed by MPII's MATLAB joint names (rank, rkne, ...)."""
        return {name: float(value) for name, value in zip(MPII_MAT_JOINT_NAMES, self.per_joint)}


def _mean_joints(counts: np.ndarray) -> np.ndarray:
    """Mask of the joints that enter the means: not pelvis/thorax, at least one annotated instance."""
    kept = np.asarray(counts) > 0
    kept[list(EXCLUDED_FROM_MEAN)] = False
    return kept


def weighted_mean(per_joint: np.ndarray, counts: np.ndarray) -> float:
    """Mean of per-joint rates over the 14 joints, weighted by annotated counts (HRNet's Mean)."""
    kept = _mean_joints(counts)
    if not kept.any():
        return float("nan")
    return float(np.sum(per_joint[kept] * counts[kept]) / np.sum(counts[kept]))


def compute_pckh(preds: np.ndarray, gt: PCKhGroundTruth, threshold: float = 0.5) -> PCKhResult:
    """PCKh of predictions (N, 16, 2) in 1-based pixels, row-aligned with the ground truth."""
    preds = np.asarray(preds, dtype=np.float64)
    if preds.shape != gt.joints.shape:
        raise ValueError(f"predictions have shape {preds.shape}, ground truth {gt.joints.shape}")
    distances = np.linalg.norm(preds - gt.joints, axis=2)  # (N, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = distances / gt.head_sizes[:, None]
    counts = gt.annotated.sum(axis=0)

    def rates(limit: float) -> np.ndarray:
        hits = ((normalized <= limit) & gt.annotated).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(counts > 0, 100.0 * hits / np.maximum(counts, 1), np.nan)

    return PCKhResult(rates(threshold), rates(0.1), counts, float(threshold))


def pckh_table(preds: np.ndarray, gt: PCKhGroundTruth, threshold: float = 0.5) -> dict[str, float]:
    """The PCKh summary table (keys ``TABLE_KEYS``) of 1-based predictions (N, 16, 2)."""
    return compute_pckh(preds, gt, threshold).table


def format_pckh_table(table: dict[str, float], title: str = "") -> str:
    """The usual one-row PCKh table as text (markdown pipes), optionally preceded by a title line."""
    keys = [key for key in TABLE_KEYS if key in table]
    widths = [max(len(key), 7) for key in keys]
    header = "| " + " | ".join(key.rjust(width) for key, width in zip(keys, widths)) + " |"
    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    row = "| " + " | ".join(f"{table[key]:.3f}".rjust(width) for key, width in zip(keys, widths)) + " |"
    lines = [title] if title else []
    return "\n".join([*lines, header, rule, row])


def _load_mat(path: str | Path, what: str) -> dict:
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a .mat file")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes): an interrupted copy or export? write it again")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises many types for a damaged file; all mean "unreadable"
        raise DataError(f"cannot read {what} {path} as a MATLAB .mat file: {error}") from error


def _numbers(content: dict, key: str, path: str | Path) -> np.ndarray:
    """A .mat field as a float array; a cell array, struct or text is a DataError naming the file and field."""
    try:
        return np.asarray(content[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: field {key} does not hold a numeric array (a cell array, struct or text instead)"
        ) from None


def load_gt_mat(path: str | Path) -> PCKhGroundTruth:
    """Read a ``gt_valid.mat``-style file: jnt_missing (16, N), pos_gt_src (16, 2, N), headboxes_src (2, 2, N).

    Fields of other shapes, head boxes with NaN or a zero or negative width or height, and NaN annotated joints
    are DataErrors naming the file, the field and the first bad person (0-based, i.e. MATLAB column - 1).
    """
    content = _load_mat(path, "PCKh ground-truth file")
    missing = [key for key in GT_MAT_KEYS if key not in content]
    if missing:
        raise DataError(
            f"{path} lacks {', '.join(missing)}: a PCKh ground-truth file holds jnt_missing (16,N), "
            "pos_gt_src (16,2,N) and headboxes_src (2,2,N), like HRNet's annot/gt_valid.mat"
        )
    if "dataset_joints" in content:
        names = tuple(str(np.squeeze(name)) for name in np.ravel(content["dataset_joints"]))
        if names != MPII_MAT_JOINT_NAMES:
            raise DataError(
                f"{path}: dataset_joints {names} is not MPII's joint order {MPII_MAT_JOINT_NAMES}"
            )
    fields = {}
    for key, expected in (("jnt_missing", (16,)), ("pos_gt_src", (16, 2)), ("headboxes_src", (2, 2))):
        value = _numbers(content, key, path)
        if value.ndim != len(expected) + 1 or value.shape[:-1] != expected:
            layout = ",".join(str(size) for size in expected)
            raise DataError(f"{path}: field {key} has shape {value.shape}, expected ({layout},N)")
        fields[key] = value
    counts = {key: value.shape[-1] for key, value in fields.items()}
    if len(set(counts.values())) > 1:
        raise DataError(
            f"{path}: the fields disagree on the number of persons: "
            + ", ".join(f"{key} {count}" for key, count in counts.items())
        )
    joints = np.transpose(fields["pos_gt_src"], (2, 0, 1))
    annotated = np.transpose(fields["jnt_missing"]) == 0
    headboxes = np.transpose(fields["headboxes_src"], (2, 0, 1))  # (N, corner, xy)
    _check_headboxes(headboxes, path)
    return PCKhGroundTruth.from_headboxes(joints, annotated, headboxes, source=str(path))


def _check_headboxes(headboxes: np.ndarray, path: str | Path) -> None:
    """Refuse head boxes with NaN or a zero or negative width or height: PCKh divides by their diagonal."""
    finite = np.isfinite(headboxes).all(axis=(1, 2))
    size = headboxes[:, 1] - headboxes[:, 0]  # (N, 2): width, height
    bad = ~finite | np.any(np.where(np.isfinite(size), size, 0) <= 0, axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        (x1, y1), (x2, y2) = headboxes[first]
        what = "holds NaN or infinity" if not finite[first] else "has a zero or negative width or height"
        raise DataError(
            f"{path}: field headboxes_src: {int(bad.sum())} of {len(headboxes)} head boxes are unusable; the first, "
            f"person {first} (MATLAB column {first + 1}), {what}: x1={x1:g}, y1={y1:g}, x2={x2:g}, y2={y2:g} "
            "(expected x2 > x1 and y2 > y1)"
        )


def save_gt_mat(path: str | Path, joints: np.ndarray, annotated: np.ndarray, headboxes: np.ndarray) -> None:
    """Write a ``gt_valid.mat``-style file from 1-based joints (N,16,2), mask (N,16), head boxes (N,2,2)."""
    joint_names = np.empty((1, 16), dtype=object)
    joint_names[0, :] = MPII_MAT_JOINT_NAMES
    scipy.io.savemat(
        str(path),
        {
            "dataset_joints": joint_names,
            "jnt_missing": (~np.asarray(annotated, dtype=bool)).astype(np.float64).T,
            "pos_gt_src": np.transpose(np.asarray(joints, dtype=np.float64), (1, 2, 0)),
            "headboxes_src": np.transpose(np.asarray(headboxes, dtype=np.float64), (1, 2, 0)),
        },
    )


def save_pred_mat(path: str | Path, preds: np.ndarray) -> None:
    """Write HRNet's ``pred.mat``: ``preds`` (N, 16, 2) in MATLAB 1-based pixels, from 0-based predictions."""
    scipy.io.savemat(str(path), {"preds": np.asarray(preds, dtype=np.float64)[:, :, :2] + 1.0})


def load_pred_mat(path: str | Path) -> np.ndarray:
    """Read 1-based predictions (N, 16, 2) from ``preds`` (HRNet) or ``pos_pred_src`` (16, 2, N) (MPII tools).

    A NaN or infinite coordinate is a DataError saying how many persons and joints have one, rather than a
    silent miss: a predictions file with holes usually means a broken export, and counting the holes as misses
    would print a plausible but wrong PCKh.
    """
    content = _load_mat(path, "prediction file")
    if "preds" in content:
        key = "preds"
        preds = _numbers(content, "preds", path)
        if preds.ndim != 3 or preds.shape[1] != 16 or preds.shape[2] < 2:
            raise DataError(f"{path}: 'preds' has shape {preds.shape}, expected (N, 16, 2)")
        preds = preds[:, :, :2]
    elif "pos_pred_src" in content:
        key = "pos_pred_src"
        raw = _numbers(content, "pos_pred_src", path)
        if raw.ndim != 3 or raw.shape[:2] != (16, 2):
            raise DataError(f"{path}: 'pos_pred_src' has shape {raw.shape}, expected (16, 2, N)")
        preds = np.transpose(raw, (2, 0, 1))
    else:
        raise DataError(f"{path} holds neither 'preds' (N,16,2) nor 'pos_pred_src' (16,2,N)")
    bad = ~np.isfinite(preds).all(axis=2)  # (N, 16)
    if bad.any():
        person, joint = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{path}: '{key}' has NaN or infinite coordinates for {int(bad.sum())} joints of "
            f"{int(bad.any(axis=1).sum())} of {len(preds)} persons (first: person {person}, joint "
            f"{MPII_MAT_JOINT_NAMES[joint]}); PCKh needs a prediction for every joint: fix the export, or put "
            "a coordinate (any, e.g. the image centre) where the method has none, to count it as a miss"
        )
    return preds


def evaluate_prediction_file(
    pred_path: str | Path, gt_path: str | Path, threshold: float = 0.5
) -> dict[str, float]:
    """PCKh table (keys ``TABLE_KEYS``) of a 1-based prediction .mat against a gt_valid.mat-style file."""
    preds = load_pred_mat(pred_path)
    gt = load_gt_mat(gt_path)
    if len(preds) != len(gt):
        raise DataError(f"{pred_path} has {len(preds)} persons but {gt_path} has {len(gt)}")
    return pckh_table(preds, gt, threshold)
