"""The training loop and model selection, free of dataset- and method-specific branches.

The model returns a ``PoseOutput``; the loss returns a dict of named terms with ``total`` among them; the
dataset scores predictions itself (``engine/inference/loops.py``). So the same loop serves MPII and COCO,
single networks, multi-branch OKDHP models and distillation with frozen teachers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from datasets.base import EvalResult
from engine.runtime.distributed import gather_objects
from engine.runtime.execution import Runtime
from losses.joints_mse import is_count
from models.output import PoseOutput
from utils.errors import UserError
from utils.progress import Progress

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
    """One pass over the training data; returns each loss term averaged over the samples seen by every process
    and each count (``count/...``) summed over the epoch and the processes.

    The engine names no batch entry but the image: the loss receives the whole batch (``loss(output, batch,
    epoch)``) and the runtime runs the forward (autocast), the backward and the step. With several processes
    each one's loss weighs by its share of the global batch (an uneven last batch: 2 + 1 samples), so that the
    step is the one of a single process on the whole global batch.
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
        values = dict(zip(terms, torch.stack([v.detach().double() for v in terms.values()]).tolist()))
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
        size = batch["image"].shape[0]
        share = runtime.process_share(size)
        runtime.backward_step(terms["total"] if share == 1 else terms["total"] * share, optimizer)

        seen += size
        for name, value in values.items():
            sums[name] += value if is_count(name) else value * size
        progress.set_postfix({k: f"{sums[k] / seen:.3g}" for k in _progress_terms(sums)})
    progress.close()
    *totals, seen = runtime.sum_over_ranks([*sums.values(), seen])  # every process's samples, not rank 0's
    return {name: total if is_count(name) else total / max(seen, 1) for name, total in zip(sums, totals)}


def _progress_terms(sums: dict[str, float]) -> list[str]:
    """The few terms worth showing on the progress bar."""
    return [k for k in ("total", "mse", "ensemble_mse", "kl", "kd") if k in sums]


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
