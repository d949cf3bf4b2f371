"""Prediction over a dataset and its scoring: the loops validation and ``evaluate.py`` share.

Every process predicts its share of the persons (the loader's ``ShardSampler``); the shares are gathered so
every process holds every person's prediction, each made once; the dataset scores them with its own protocol
(PCKh, COCO AP).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from datasets.base import EvalResult, TopDownDataset
from engine.inference.predictor import HeadPredictions, Predictor
from engine.runtime.distributed import gather_objects
from utils.progress import Progress


def predict(predictor: Predictor, loader: DataLoader, *, desc: str = "validate") -> HeadPredictions:
    """Predictions in image pixels for every head (branches, ensemble), in dataset order: {head: (preds, maxvals)}.

    With several processes each one predicts its share of the persons (the loader's ``ShardSampler``) and
    the shares are gathered, so that every process returns the predictions of every person, each made once.
    """
    share = predict_share(predictor, loader, desc=desc)
    return merge_shares(gather_objects(share), len(loader.dataset))


SharePredictions = dict[
    str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]
]  # head -> [(index, preds, maxvals)]


def predict_share(predictor: Predictor, loader: DataLoader, *, desc: str = "validate") -> SharePredictions:
    """The predictions of the persons this process's loader yields, with their dataset indices."""
    share: SharePredictions = defaultdict(list)
    for batch in Progress(loader, len(loader), desc, enabled=predictor.runtime.is_main):
        meta = batch["meta"]
        index = meta["index"].numpy()
        for name, (preds, maxvals) in predictor.predict_crops(
            batch["image"], meta["center"], meta["scale"]
        ).items():
            share[name].append((index, preds, maxvals))
    return dict(share)


def merge_shares(shares: list[SharePredictions], count: int) -> HeadPredictions:
    """The shares of every process as dataset-ordered arrays; refuses a person predicted twice or never."""
    results: HeadPredictions = {}
    seen = np.zeros(count, dtype=np.int64)
    for share in shares:
        for position, (name, chunks) in enumerate(share.items()):
            for index, preds, maxvals in chunks:
                if name not in results:
                    results[name] = (
                        np.zeros((count, *preds.shape[1:])),
                        np.zeros((count, *maxvals.shape[1:])),
                    )
                results[name][0][index] = preds
                results[name][1][index] = maxvals
                if position == 0:
                    seen[index] += 1
    if results and not np.all(seen == 1):
        raise RuntimeError(
            f"validation predicted {int((seen == 0).sum())} persons never and {int((seen > 1).sum())} more than "
            "once: the processes' shares overlap"
        )
    return results


def validate(
    predictor: Predictor, loader: DataLoader, output_dir: Path | None = None
) -> dict[str, EvalResult]:
    """Predict and score every head with the dataset's own protocol (PCKh, COCO AP)."""
    dataset: TopDownDataset = loader.dataset  # type: ignore[assignment]
    return evaluate_heads(dataset, predict(predictor, loader), output_dir)


def evaluate_heads(
    dataset: TopDownDataset,
    predictions: dict[str, tuple[np.ndarray, np.ndarray]],
    output_dir: Path | None = None,
) -> dict[str, EvalResult]:
    """Score each head's ``predict`` output with the dataset's protocol; head files go to ``output_dir/<head>``."""
    return {
        name: dataset.evaluate(preds, maxvals, None if output_dir is None else output_dir / name)
        for name, (preds, maxvals) in predictions.items()
    }
