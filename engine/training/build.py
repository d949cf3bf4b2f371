"""The parts of a training run that the config names beyond the network: optimizer, initial weights, head."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.experiment.config import TrainConfig
from engine.inference.networks import load_network
from engine.runtime.execution import unwrap
from models.output import PoseModel
from utils.checkpoint import CHECKPOINT_KINDS, is_state_dict, load_checkpoint
from utils.errors import CheckpointError


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam (released recipe), AdamW or SGD over the trainable parameters (never a frozen teacher's)."""
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The step decay of the released recipe: lr x ``lr_factor`` at each epoch of ``lr_steps``."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=train.lr_steps, gamma=train.lr_factor)


def deploy_head(model: PoseModel, selected: str, metrics: dict[str, float]) -> str:
    """The head to deploy: the selected one, or (ensemble selection) the best-scoring deployable head."""
    heads = model.deployable_heads()
    if selected in heads:
        return selected
    scored = [h for h in heads if h in metrics]
    return max(scored, key=lambda h: metrics[h]) if scored else heads[0]


def load_init_weights(model: nn.Module, path: str | Path) -> None:
    """Fill ``model`` strictly from a converted / deploy / train checkpoint (``train.init_from``)."""
    path = Path(path)
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise CheckpointError(
            f"init weights {path}: {error}. A file of bearpaw/pytorch-pose, FPD or the official OKDHP code "
            "must be converted first with tools/convert_checkpoint.py"
        ) from None
    kind = state.get("kind")
    if kind not in CHECKPOINT_KINDS or not is_state_dict(state.get("model")):
        raise CheckpointError(
            f"init weights {path} is not a converted, deploy or train checkpoint of this project "
            f"(kind {kind!r}); convert foreign files first with tools/convert_checkpoint.py"
        )
    target = unwrap(model)
    saved = state.get("model_config") or (state.get("config") or {}).get("model") or {}
    built = target.config_section()
    hint = ""
    if saved.get("name") == "okdhp_hourglass" and built.get("name") == "hourglass":
        hint = " To start a single network from one branch, use that branch's deploy checkpoint."
    without_config = {key: value for key, value in state.items() if key != "config"}  # the run's config rules
    loaded = load_network(
        path,
        contents=without_config,
        section=built,
        label=f"init weights (a {kind} checkpoint of {describe_section(saved)})",
        advice=f"The config builds {describe_section(built)}.{hint}",
    )
    target.load_state_dict(loaded.model.state_dict())


def describe_section(section: Mapping[str, Any]) -> str:
    """'hourglass num_stacks=2 num_features=256 ...' for error messages."""
    if not section:
        return "an unknown model"
    return " ".join([str(section.get("name", "?"))] + [f"{k}={v}" for k, v in section.items() if k != "name"])
