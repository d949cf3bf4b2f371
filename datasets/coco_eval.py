"""COCO keypoint evaluation: HRNet's rescoring and OKS-NMS, the results file, and pycocotools' COCOeval.

The protocol (HRNet, used for every COCO/OCHuman number of the project):

1. every person prediction gets ``score = box score * mean(keypoint scores above 0.2)`` (rescoring; the box
   score is the detector's, or 1 for a ground-truth box; no keypoint above the threshold gives score 0);
2. per image, greedy OKS-NMS at 0.9: a prediction is dropped when its OKS with a higher-scored kept one is
   above the threshold (HRNet's ``oks_iou``: COCO sigmas, mean of the two areas, every joint counts);
3. the kept predictions are written in COCO results format and scored by ``COCOeval(iouType='keypoints')``.

pycocotools prints progress on stdout; every function here silences it unless ``verbose=True``.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.keypoints import COCO_OKS_SIGMAS
from datasets.transforms import PIXEL_STD
from utils.errors import DataError

KEYPOINT_SCORE_THRESHOLD = 0.2  # HRNet's rescoring: a person's score averages its joints scoring above this

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
PERSON_CATEGORY_ID = 1


@contextlib.contextmanager
def _pycocotools_output(verbose: bool) -> Iterator[None]:
    """Let pycocotools print when verbose, else swallow its stdout chatter."""
    if verbose:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; a missing, empty, unreadable, non-UTF-8 or invalid file is a DataError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes): an interrupted copy or export? write it again")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except UnicodeDecodeError:
        raise DataError(f"{what} {path} is not a JSON text file (it is not UTF-8)") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{what} {path} is not valid JSON: {error}") from None
    except OSError as error:
        raise DataError(f"cannot read {what} {path}: {error.strerror or error}") from None


def load_coco(ann_path: str | Path, verbose: bool = False) -> COCO:
    """Load a COCO annotation file; a missing or malformed file raises DataError naming it."""
    ann_path = Path(ann_path)
    document = read_json(ann_path, "COCO annotation file")
    lists = ("images", "annotations", "categories")
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list) for key in lists):
        hint = (
            " It holds a list: is it a results file (pass it as --results)?"
            if isinstance(document, list)
            else ""
        )
        raise DataError(
            f"{ann_path} is not a COCO annotation file: expected a JSON object with the lists "
            f"'images', 'annotations' and 'categories'.{hint}"
        )
    return _coco_index(
        document, f"COCO annotation file {ann_path}: an image, annotation or category", verbose
    )


def load_image_info(path: str | Path) -> COCO:
    """A COCO image-info file (``image_info_test-dev2017.json``: images, no annotations) as a COCO index."""
    path = Path(path)
    document = read_json(path, "COCO image-info file")
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise DataError(
            f"{path} is not a COCO image-info file: expected a JSON object with an 'images' list of "
            "{id, file_name, width, height} (image_info_test-dev2017.json from cocodataset.org)"
        )
    images = {"images": document["images"], "annotations": [], "categories": []}
    return _coco_index(images, f"COCO image-info file {path}: an image", verbose=False)


def _coco_index(document: dict[str, Any], what: str, verbose: bool) -> COCO:
    """pycocotools' index of a parsed annotation document; ``what`` names the file and its entries in errors."""
    coco = COCO()
    coco.dataset = document
    try:
        with _pycocotools_output(verbose):
            coco.createIndex()
    except (KeyError, TypeError) as error:
        raise DataError(f"cannot read {what} lacks {error}") from None
    return coco


def keypoint_counts(coco: COCO) -> dict[int, int]:
    """Number of keypoints of each category of an annotation file that defines keypoints ({1: 17} for COCO)."""
    return {
        int(category["id"]): len(category["keypoints"])
        for category in coco.dataset["categories"]
        if isinstance(category.get("keypoints"), list) and category["keypoints"]
    }


def rescore(
    keypoints: np.ndarray, box_scores: np.ndarray, keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD
) -> np.ndarray:
    """HRNet's person score: box score x mean of the keypoint scores above the threshold (0 if none)."""
    kpt_scores = np.asarray(keypoints, dtype=np.float64)[..., 2]
    confident = kpt_scores > keypoint_score_threshold
    count = confident.sum(axis=-1)
    mean = np.where(count > 0, (kpt_scores * confident).sum(axis=-1) / np.maximum(count, 1), 0.0)
    return np.asarray(box_scores, dtype=np.float64) * mean


def pairwise_oks(
    keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray = COCO_OKS_SIGMAS
) -> np.ndarray:
    """(N, N) OKS between predictions (N, J, 2+) with HRNet's ``oks_iou`` semantics (all joints count)."""
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    squared_distance = ((xy[:, None] - xy[None, :]) ** 2).sum(axis=-1)  # (N, N, J)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    areas = np.asarray(areas, dtype=np.float64)
    mean_area = (areas[:, None] + areas[None, :]) / 2.0 + np.spacing(1)
    exponent = squared_distance / variances / mean_area[..., None] / 2.0
    return np.exp(-exponent).mean(axis=-1)


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: np.ndarray = COCO_OKS_SIGMAS,
) -> np.ndarray:
    """Indices kept by greedy OKS-NMS, highest score first: a prediction whose OKS with a kept one > threshold goes."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    overlap = pairwise_oks(keypoints, areas, sigmas)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(scores), dtype=bool)
    keep = []
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        suppressed |= overlap[index] > threshold
    return np.asarray(keep, dtype=np.int64)


def rescore_and_nms(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    box_scores: np.ndarray,
    areas: np.ndarray,
    *,
    oks_threshold: float = 0.9,
    keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    sigmas: np.ndarray = COCO_OKS_SIGMAS,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescore every prediction, then OKS-NMS within each image: (kept indices in input order, new scores)."""
    image_ids = np.asarray(image_ids)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    scores = rescore(keypoints, box_scores, keypoint_score_threshold)
    kept = [
        members[oks_nms(keypoints[members], scores[members], areas[members], oks_threshold, sigmas)]
        for members in (np.flatnonzero(image_ids == image_id) for image_id in np.unique(image_ids))
    ]
    keep = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    return keep, scores


def coco_results(
    image_ids: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    centers: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    category_id: int = PERSON_CATEGORY_ID,
) -> list[dict[str, Any]]:
    """Predictions (N, J, 3) -> COCO results entries (image_id, category_id, keypoints [3J], score, center, scale)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    results = []
    for index in range(len(keypoints)):
        entry: dict[str, Any] = {
            "image_id": int(image_ids[index]),
            "category_id": int(category_id),
            "keypoints": keypoints[index].reshape(-1).tolist(),
            "score": float(scores[index]),
        }
        if centers is not None and scales is not None:
            entry["center"] = np.asarray(centers[index], dtype=np.float64).tolist()
            entry["scale"] = np.asarray(scales[index], dtype=np.float64).tolist()
        results.append(entry)
    return results


def write_results_json(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write COCO keypoint results (a JSON list) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(list(results), handle)
    return path


def read_json_list(path: str | Path, required: set[str], what: str, expected: str) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects with the ``required`` keys; DataError naming the file and entry otherwise."""
    entries = read_json(path, what)
    if not isinstance(entries, list):
        raise DataError(f"{what} {path} is not in {expected} (it holds a JSON {type(entries).__name__})")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{what} {path}: entry {index} is not an object ({entry!r:.60}); {expected}")
        absent = sorted(required - entry.keys())
        if absent:
            raise DataError(
                f"{what} {path}: entry {index} has no {', '.join(repr(key) for key in absent)} "
                f"(it has {', '.join(sorted(entry)) or 'no keys'}); {expected}"
            )
    return entries


RESULTS_FORMAT = (
    "COCO keypoint results format: expected a JSON list of "
    "{image_id, category_id, keypoints [x1, y1, s1, ...], score}"
)


def read_results_json(
    path: str | Path, keypoints_per_category: dict[int, int] | None = None, need_score: bool = True
) -> list[dict[str, Any]]:
    """Read a COCO keypoint results file; DataError naming the file and the first bad entry when it is not one.

    Every entry needs image_id, category_id, keypoints (finite numbers, 3 per keypoint: the count of its
    category in ``keypoints_per_category`` when given, e.g. from the annotation file) and a finite score
    (unless ``need_score`` is False). A file with no entries is an error too: its AP would read as 0.
    """
    required = {"image_id", "category_id", "keypoints"} | ({"score"} if need_score else set())
    results = read_json_list(path, required, "results file", RESULTS_FORMAT)
    if not results:
        raise DataError(
            f"results file {path} holds no results (an empty list): nothing to score; was it written "
            "before the predictions were made?"
        )
    for index, entry in enumerate(results):
        where = f"results file {path}: entry {index} (image_id {entry['image_id']!r})"
        for key in ("image_id", "category_id"):
            if not isinstance(entry[key], int) or isinstance(entry[key], bool):
                raise DataError(f"{where}: {key} must be an integer id, got {entry[key]!r}")
        values = entry["keypoints"]
        if not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            raise DataError(f"{where}: keypoints must be a list of numbers [x1, y1, s1, ...]")
        if not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
            raise DataError(f"{where}: keypoints hold NaN or infinite values")
        if "score" in entry and not (
            isinstance(entry["score"], int | float)
            and not isinstance(entry["score"], bool)
            and np.isfinite(entry["score"])
        ):
            raise DataError(f"{where}: score must be a finite number, got {entry['score']!r}")
        if keypoints_per_category is None:
            if len(values) % 3:
                raise DataError(f"{where}: {len(values)} keypoint values, not 3 (x, y, score) per keypoint")
            continue
        category = entry["category_id"]
        if category not in keypoints_per_category:
            known = ", ".join(str(c) for c in sorted(keypoints_per_category)) or "none"
            raise DataError(
                f"{where}: category_id {category!r} is not a keypoint category of the annotation file "
                f"(its keypoint categories: {known})"
            )
        expected = 3 * keypoints_per_category[category]
        if len(values) != expected:
            raise DataError(
                f"{where}: {len(values)} keypoint values, but category {category} has "
                f"{keypoints_per_category[category]} keypoints in the annotation file: expected {expected} "
                "(x, y, score for each)"
            )
    return results


def _empty_results(coco_gt: COCO) -> COCO:
    """A results object with no detections, which loadRes cannot build (it reads the first entry)."""
    empty = COCO()
    empty.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"]}
    empty.dataset["annotations"] = []
    with _pycocotools_output(False):
        empty.createIndex()
    return empty


def coco_keypoint_eval(
    coco_gt: COCO,
    results: Sequence[dict[str, Any]],
    *,
    image_ids: Sequence[int] | None = None,
    sigmas: np.ndarray | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """AP/AR of keypoint results by pycocotools ``COCOeval(iouType='keypoints')`` (-1 where COCO has no GT)."""
    results = [dict(entry) for entry in results]  # loadRes writes area/id/bbox into the entries
    known = set(coco_gt.getImgIds())
    unknown = {entry["image_id"] for entry in results} - known
    if unknown:
        raise DataError(f"results name image ids absent from the annotations: {sorted(unknown)[:10]}")
    with _pycocotools_output(verbose):
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}


def format_coco_table(stats: dict[str, float], title: str = "") -> str:
    """The ten COCO numbers as a Markdown table (values x100, one decimal), with an optional title line."""
    header = "| " + " | ".join(COCO_METRIC_NAMES) + " |"
    rule = "|" + "|".join("---:" for _ in COCO_METRIC_NAMES) + "|"
    values = "| " + " | ".join(f"{100.0 * stats[name]:.1f}" for name in COCO_METRIC_NAMES) + " |"
    lines = ([title] if title else []) + [header, rule, values]
    return "\n".join(lines)


def result_areas(results: Sequence[dict[str, Any]]) -> np.ndarray:
    """Person areas for OKS-NMS: 'area', else the padded box of 'scale' (HRNet), else 'bbox', else the keypoints' extent."""
    areas = []
    for entry in results:
        if "area" in entry:
            areas.append(float(entry["area"]))
        elif "scale" in entry:
            areas.append(float(np.prod(np.asarray(entry["scale"], dtype=np.float64) * PIXEL_STD)))
        elif "bbox" in entry and len(entry["bbox"]) == 4:
            areas.append(float(entry["bbox"][2] * entry["bbox"][3]))
        else:
            xy = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
            areas.append(float(np.prod(xy.max(axis=0) - xy.min(axis=0))))
    return np.asarray(areas, dtype=np.float64)


def nms_results(
    results: Sequence[dict[str, Any]],
    oks_threshold: float = 0.9,
    keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
) -> list[dict[str, Any]]:
    """Rescore results entries (their 'score' taken as the box score) and OKS-NMS them per image."""
    if not results:
        return []
    keypoints = np.stack(
        [np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3) for entry in results]
    )
    keep, scores = rescore_and_nms(
        np.asarray([entry["image_id"] for entry in results]),
        keypoints,
        np.asarray([entry.get("score", 1.0) for entry in results], dtype=np.float64),
        result_areas(results),
        oks_threshold=oks_threshold,
        keypoint_score_threshold=keypoint_score_threshold,
    )
    return [{**results[index], "score": float(scores[index])} for index in keep]


def evaluate_results_file(
    results_path: str | Path,
    ann_path: str | Path,
    nms: bool = False,
    oks_threshold: float = 0.9,
    keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
    verbose: bool = False,
) -> dict[str, float]:
    """COCO AP/AR of a results file against an annotation file; ``nms`` first rescores and OKS-NMSes per image.

    Without ``nms`` the file is scored as it is (identical to calling pycocotools directly). With ``nms`` each
    entry's 'score' is taken as its box score (a raw dump of every box's prediction; 1 when absent), and the
    area OKS-NMS needs comes from 'area', 'scale' (padded box, x200), 'bbox' or, failing those, the keypoints'
    extent. A malformed entry (keypoint count not 3 x its category's keypoints in the annotation file, no
    score, an unknown image) or an empty file is a DataError naming the file and the entry.
    """
    coco_gt = load_coco(ann_path, verbose=verbose)
    counts = keypoint_counts(coco_gt)
    if not counts:
        raise DataError(
            f"COCO annotation file {ann_path} defines no keypoint category (no 'keypoints' list in "
            "'categories'): is it a detection or captions file instead of person_keypoints_*.json?"
        )
    results = read_results_json(results_path, counts, need_score=not nms)
    known = set(coco_gt.getImgIds())
    for index, entry in enumerate(results):
        if entry["image_id"] not in known:
            raise DataError(
                f"results file {results_path}: entry {index} names image_id {entry['image_id']!r}, which "
                f"{ann_path} does not have (results of another split or data set?)"
            )
    if nms:
        results = nms_results(results, oks_threshold, keypoint_score_threshold)
    return coco_keypoint_eval(coco_gt, results, verbose=verbose)
