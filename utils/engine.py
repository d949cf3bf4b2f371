"""The training and validation loops, free of dataset- and method-specific branches.

The model returns a ``PoseOutput``; the loss returns a dict of named terms with ``total`` among them; the
dataset decodes and scores predictions itself. So the same loops serve MPII and COCO, single networks and
multi-branch OKDHP models.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from datasets.base import EvalResult, TopDownDataset
from models.output import PoseOutput
from utils.errors import UserError
from utils.runtime import Runtime

LossFn = Callable[..., dict[str, Tensor]]


class NonFiniteLossError(UserError):
    """A loss term became NaN or infinite; training stops before anything is saved."""


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Shuffles with a generator seeded by (seed, epoch) and yields ``(index, epoch)`` keys.

    The order of an epoch is the same after a resume, and the epoch travels with every index to the dataset
    (see ``TopDownDataset``), so that DataLoader workers, persistent ones included, draw this epoch's
    augmentation and not the one of the epoch they were started in.
    """

    def __init__(self, length: int, seed: int) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        epoch = self.epoch
        return iter([(index, epoch) for index in torch.randperm(self.length, generator=generator).tolist()])

    def __len__(self) -> int:
        return self.length


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


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
    """One pass over the training data; returns each loss term averaged over the samples seen."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    total_iters = len(loader) if max_iters is None else min(max_iters, len(loader))
    bar = tqdm(loader, total=total_iters, desc=f"epoch {epoch}", disable=not runtime.is_main, leave=False)
    for iteration, batch in enumerate(bar):
        if iteration >= total_iters:
            break
        batch = _to_device(batch, runtime.device)
        output: PoseOutput = model(batch["image"])
        terms = loss_fn(output, batch["target"], batch["target_weight"], epoch=epoch)
        # One device-to-host copy for all (scalar) terms, instead of two synchronisations per term.
        values = dict(zip(terms, torch.stack([v.detach().float() for v in terms.values()]).tolist()))
        for name, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the loss term '{name}' became {value} at epoch {epoch}, iteration {iteration}; "
                    "training stopped and the last good checkpoint was left as it was. Lower the learning "
                    "rate or check the data of this batch, then continue with --resume."
                )
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

        size = batch["image"].shape[0]
        seen += size
        for name, value in values.items():
            sums[name] += value * size
        bar.set_postfix({k: f"{sums[k] / seen:.3g}" for k in _progress_terms(sums)})
    bar.close()
    return {name: total / max(seen, 1) for name, total in sums.items()}


def _progress_terms(sums: dict[str, float]) -> list[str]:
    """The few terms worth showing on the progress bar."""
    return [k for k in ("total", "mse", "ensemble_mse", "kl") if k in sums]


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    runtime: Runtime,
    *,
    flip: bool = True,
    shift_heatmap: bool = True,
    desc: str = "validate",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Predictions in image pixels for every head (branches, ensemble), in dataset order: {head: (preds, maxvals)}."""
    model.eval()
    dataset: TopDownDataset = loader.dataset  # type: ignore[assignment]
    codec = dataset.codec
    flip_permutation = dataset.skeleton.flip_permutation()
    count = len(dataset)
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for batch in tqdm(loader, desc=desc, disable=not runtime.is_main, leave=False):
        images = batch["image"].to(runtime.device, non_blocking=True)
        heads = model(images).heads()
        if flip:
            flipped_heads = model(images.flip(3)).heads()
            heads = {
                name: 0.5
                * (heads[name] + codec.flip_back(flipped_heads[name], flip_permutation, shift_heatmap))
                for name in heads
            }
        index = batch["meta"]["index"].numpy()
        for name, heatmaps in heads.items():
            preds, maxvals = codec.decode_to_image(heatmaps, batch["meta"]["center"], batch["meta"]["scale"])
            if name not in results:
                joints = heatmaps.shape[1]
                results[name] = (np.zeros((count, joints, 2)), np.zeros((count, joints, 1)))
            results[name][0][index] = preds
            results[name][1][index] = maxvals
    return results


def validate(
    model: nn.Module,
    loader: DataLoader,
    runtime: Runtime,
    *,
    flip: bool = True,
    shift_heatmap: bool = True,
    output_dir: Path | None = None,
) -> dict[str, EvalResult]:
    """Predict and score every head with the dataset's own protocol (PCKh, COCO AP)."""
    dataset: TopDownDataset = loader.dataset  # type: ignore[assignment]
    predictions = predict(model, loader, runtime, flip=flip, shift_heatmap=shift_heatmap)
    return evaluate_heads(dataset, predictions, output_dir)


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
    """The head used for model selection and its score: the best branch (released), the ensemble or branch0."""
    if mode == "ensemble" and "ensemble" in results:
        return "ensemble", results["ensemble"].metric
    if mode == "branch0":
        return "branch0", results["branch0"].metric
    branches = {k: v.metric for k, v in results.items() if k.startswith("branch")}
    best = max(branches, key=lambda k: (_finite(branches[k]), -int(k.removeprefix("branch"))))
    return best, branches[best]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf
