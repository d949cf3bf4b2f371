"""pycocotools' own COCO keypoint evaluation of a results file, as an independent reference for the tests."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")  # COCOeval.stats order


def pycocotools_stats(annotation_file: Path, results_file: Path) -> dict[str, float]:
    """``COCOeval(iouType='keypoints')`` of a results file against an annotation file, run as its README says."""
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotation_file))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), iouType="keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
