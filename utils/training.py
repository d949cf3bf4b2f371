"""A whole training run: build from the config, train, validate, log, checkpoint, resume, deploy.

Outputs go to one folder: ``config.yaml``, ``log.jsonl``, ``last.pth``, ``best.pth``, ``deploy.pth`` (the best
branch as a standalone network) and ``curves.png``. Scripts and the docs rely on these names.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from datasets.registry import build_dataset
from losses.registry import build_loss
from models.registry import build_model
from utils.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from utils.config import ExperimentConfig, TrainConfig, save_config
from utils.engine import EpochShuffleSampler, select_head, train_one_epoch, validate
from utils.errors import CheckpointError
from utils.plots import plot_curves
from utils.runtime import Runtime, make_runtime, rng_state, seed_everything, set_rng_state

CONFIG_FILE, LOG_FILE, LAST, BEST, DEPLOY, CURVES = (
    "config.yaml",
    "log.jsonl",
    "last.pth",
    "best.pth",
    "deploy.pth",
    "curves.png",
)


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam (released recipe), AdamW or SGD with the config's learning rate and weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay
        )
    if train.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=train.lr, betas=tuple(train.betas), weight_decay=train.weight_decay
        )
    return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)


def make_loader(
    dataset: Any, batch_size: int, workers: int, runtime: Runtime, sampler: Any = None
) -> DataLoader:
    """A DataLoader with the run's worker count; pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=sampler is not None,
        persistent_workers=workers > 0,
    )


def deployable(model: nn.Module, head: str) -> tuple[nn.Module, dict[str, Any]]:
    """The standalone network to deploy for a selected head, and the model section that rebuilds it."""
    if head not in model.deployable_heads():
        head = model.deployable_heads()[0]
    return model.deploy(head)


class TrainingRun:
    """Everything one experiment's training needs, built from its config."""

    def __init__(self, config: ExperimentConfig, output_dir: Path, *, workers: int | None = None) -> None:
        self.config = config
        self.output_dir = Path(output_dir)
        self.workers = config.train.workers if workers is None else workers
        self.train_set = build_dataset(config.data, split="train", train=True, seed=config.seed)
        self.val_set = build_dataset(config.data, split="valid", train=False, seed=config.seed)
        self.runtime = make_runtime(config.train.device, config.train.deterministic)
        seed_everything(config.seed)
        self.model = build_model(config.model).to(self.runtime.device)
        self.loss_fn = build_loss(config.loss).to(self.runtime.device)
        self.optimizer = build_optimizer(self.model, config.train)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=config.train.lr_steps, gamma=config.train.lr_factor
        )
        self.sampler = EpochShuffleSampler(len(self.train_set), config.seed)
        self.train_loader = make_loader(
            self.train_set, config.train.batch_size, self.workers, self.runtime, self.sampler
        )
        self.val_loader = make_loader(self.val_set, config.test.batch_size, self.workers, self.runtime)
        self.start_epoch = 0
        self.best_metric = float("-inf")
        self.best_head = ""
        self.best_epoch = -1

    # ---------------------------------------------------------------- state
    def state(self, epoch: int) -> dict[str, Any]:
        """A training checkpoint after ``epoch`` (0-based) has finished."""
        return {
            "kind": "train",
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_metric": self.best_metric,
            "best_head": self.best_head,
            "best_epoch": self.best_epoch,
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }

    def resume(self) -> None:
        """Continue from ``last.pth``: model, optimizer, scheduler, epoch, best score and RNG states."""
        path = self.output_dir / LAST
        state = load_checkpoint(path)
        if state.get("kind") != "train":
            raise CheckpointError(f"{path} is not a training checkpoint and cannot be resumed")
        load_model_weights(self.model, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"]) + 1
        self.best_metric = float(state["best_metric"])
        self.best_head = str(state["best_head"])
        self.best_epoch = int(state["best_epoch"])
        _truncate_log(self.output_dir / LOG_FILE, self.start_epoch)

    # ---------------------------------------------------------------- loop
    def fit(self, *, resume: bool = False, log=print) -> dict[str, Any]:
        """Train to the configured number of epochs; returns the last validation summary."""
        config, runtime = self.config, self.runtime
        if runtime.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.output_dir / CONFIG_FILE)
        if resume:
            self.resume()
            log(f"resumed from {self.output_dir / LAST} at epoch {self.start_epoch}")
        writer = _tensorboard(self.output_dir) if runtime.is_main else None
        summary: dict[str, Any] = {}
        for epoch in range(self.start_epoch, config.train.epochs):
            started = time.time()
            self.sampler.set_epoch(epoch)
            self.train_set.set_epoch(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            terms = train_one_epoch(
                self.model,
                self.loss_fn,
                self.train_loader,
                self.optimizer,
                epoch,
                runtime,
                max_iters=config.train.iters_per_epoch,
            )
            self.scheduler.step()
            record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train": terms}
            last_epoch = epoch == config.train.epochs - 1
            if (epoch + 1) % config.train.val_every == 0 or last_epoch:
                results = validate(
                    self.model,
                    self.val_loader,
                    runtime,
                    flip=config.test.flip,
                    shift_heatmap=config.test.shift_heatmap,
                )
                head, metric = select_head(results, config.test.select)
                record["val"] = {name: result.table for name, result in results.items()}
                record["metric"] = {name: result.metric for name, result in results.items()}
                record["selected"] = {"head": head, "metric": metric}
                improved = metric > self.best_metric
                if improved:
                    self.best_metric, self.best_head, self.best_epoch = metric, head, epoch
                summary = {"epoch": epoch, "results": results, "head": head, "metric": metric}
                log(_epoch_line(epoch, terms, results, head, metric, self.best_metric, self.best_head))
                if improved and runtime.is_main:
                    save_checkpoint(self.state(epoch), self.output_dir / BEST)
            record["seconds"] = round(time.time() - started, 2)
            if runtime.is_main:
                save_checkpoint(self.state(epoch), self.output_dir / LAST)
                _append_log(self.output_dir / LOG_FILE, record)
                if writer is not None:
                    _write_tensorboard(writer, record)
        if runtime.is_main:
            self.finish(log)
        if writer is not None:
            writer.close()
        return summary

    def finish(self, log=print) -> None:
        """Extract the best branch of ``best.pth`` as ``deploy.pth`` and draw ``curves.png``."""
        best_path = self.output_dir / BEST
        if best_path.is_file():
            state = load_checkpoint(best_path)
            load_model_weights(self.model, state["model"], str(best_path))
            network, section = deployable(self.model, state["best_head"] or "branch0")
            save_checkpoint(
                {
                    "kind": "deploy",
                    "model": network.state_dict(),
                    "model_config": section,
                    "source_head": state["best_head"],
                    "epoch": state["epoch"],
                    "metric": state["best_metric"],
                    "config": self.config.to_dict(),
                },
                self.output_dir / DEPLOY,
            )
            log(
                f"best: {state['best_head']} at epoch {state['epoch']} ({state['best_metric']:.3f}); "
                f"deployable network saved to {self.output_dir / DEPLOY}"
            )
        plot_curves(self.output_dir / LOG_FILE, self.output_dir / CURVES)


def _epoch_line(epoch, terms, results, head, metric, best, best_head) -> str:
    loss = ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if "/" not in k)
    scores = ", ".join(f"{name}={result.metric:.2f}" for name, result in results.items())
    return f"epoch {epoch}: {loss} | {scores} | selected {head}={metric:.2f} (best {best_head}={best:.2f})"


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, start_epoch: int) -> None:
    """Drop log lines of epochs that will be run again after a resume."""
    if not path.is_file():
        return
    kept = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] < start_epoch
    ]
    path.write_text("".join(line + "\n" for line in kept))


def read_log(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _tensorboard(output_dir: Path):
    """A TensorBoard writer when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except (ImportError, ModuleNotFoundError):
        return None
    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))


def _write_tensorboard(writer, record: dict[str, Any]) -> None:
    epoch = record["epoch"]
    writer.add_scalar("lr", record["lr"], epoch)
    for name, value in record["train"].items():
        writer.add_scalar(f"train/{name}", value, epoch)
    for name, value in record.get("metric", {}).items():
        writer.add_scalar(f"val/{name}", value, epoch)
