"""The training and validation loops, free of dataset- and method-specific branches.

The model returns a ``PoseOutput``; the loss returns a dict of named terms with ``total`` among them; the
dataset decodes and scores predictions itself. So the same loops serve MPII and COCO, single networks and
multi-branch OKDHP models.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from datasets.base import EvalResult, TopDownDataset
from models.output import PoseOutput
from utils.distributed import gather_objects
from utils.errors import UserError
from utils.predictor import HeadPredictions, Predictor
from utils.progress import Progress
from utils.runtime import Runtime

LossFn = Callable[..., dict[str, Tensor]]


class NonFiniteLossError(UserError):
    """A loss term became NaN or infinite; training stops before anything is saved."""


def train_one_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    runtime: Runtime,
    *,
    max_iters: int | None = None,
) -> dict[str, float]:
    """One pass over the training data; returns each loss term averaged over the samples seen.

    The engine names no batch entry but the image: the loss receives the whole batch (``loss(output, batch,
    epoch)``) and the runtime runs the forward (autocast), the backward and the step.
    """
    model.train()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    total_iters = len(loader) if max_iters is None else min(max_iters, len(loader))
    progress = Progress(loader, total_iters, f"epoch {epoch}", enabled=runtime.is_main)
    for iteration, batch in enumerate(progress):
        if iteration >= total_iters:
            break
        batch = runtime.batch(batch)
        with runtime.autocast():
            output: PoseOutput = model(batch["image"])
        terms = loss_fn(output.float(), batch, epoch)
        # One device-to-host copy for all (scalar) terms, instead of two synchronisations per term.
        values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        bad = next(((name, value) for name, value in values.items() if not math.isfinite(value)), None)
        if runtime.any_rank(bad is not None):
            # Every process stops, with the same message (the first process that saw the value names it).
            rank, (name, value) = next(
                (rank, found) for rank, found in enumerate(gather_objects(bad)) if found is not None
            )
            where = f" (in process {rank})" if runtime.distributed else ""
            raise NonFiniteLossError(
                f"the loss term '{name}' became {value} at epoch {epoch}, iteration {iteration}{where}; "
                "training stopped and the last good checkpoint was left as it was. Lower the learning "
                "rate or check the data of this batch, then continue with --resume."
            )
        runtime.backward_step(terms["total"], optimizer)

        size = batch["image"].shape[0]
        seen += size
        for name, value in values.items():
            sums[name] += value * size
        progress.set_postfix({k: f"{sums[k] / seen:.3g}" for k in _progress_terms(sums)})
    progress.close()
    return {name: total / max(seen, 1) for name, total in sums.items()}


def _progress_terms(sums: dict[str, float]) -> list[str]:
    """The few terms worth showing on the progress bar."""
    return [k for k in ("total", "mse", "ensemble_mse", "kl", "kd") if k in sums]


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


def select_head(results: dict[str, EvalResult], mode: str) -> tuple[str, float]:
    """The head used for model selection and its score: the best branch (released), the ensemble or branch0.

    ``best_branch`` takes the best of every head but the ensemble (in released mode: the official script's
    three tensors); on a tie the first head in output order wins (``max`` over the released list).
    """
    if mode == "ensemble" and "ensemble" in results:
        return "ensemble", results["ensemble"].metric
    if mode == "branch0" and "branch0" in results:
        return "branch0", results["branch0"].metric
    heads = [name for name in results if name != "ensemble"]
    best = max(heads, key=lambda name: (_finite(results[name].metric), -heads.index(name)))
    return best, results[best].metric


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf
