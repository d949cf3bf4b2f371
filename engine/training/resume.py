"""What a resumed run may change: it continues the run in its folder, under the config saved with its weights.

A ``--resume`` whose config or ``--set`` overrides differ from the config saved in ``last.pth`` is refused,
naming each differing key (old -> new), unless the key is named with ``--allow-change`` (e.g.
``train.epochs``, to train longer); an allowed change is logged in ``log.jsonl`` at the epoch it took effect.
Where and how the run computes may differ (the ``runtime:`` section but its precision: a resume on another
machine or number of GPUs is expected), and so may its name and description.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from engine.experiment.config import TrainConfig, config_from_dict
from utils.errors import ConfigError, UserError, closest

FREE_ON_RESUME = (
    "experiment",
    "description",
    "runtime.device",
    "runtime.workers",
    "runtime.compile",
    "runtime.channels_last",
    "runtime.deterministic",
    "runtime.sync_batchnorm",
)
OPTIMIZER_KEYS = ("train.lr", "train.lr_steps", "train.lr_factor", "train.betas", "train.momentum")
OPTIMIZER_KEYS += ("train.weight_decay",)
ABSENT = "(absent)"


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of nested mappings and their values (a list is one value)."""
    items: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.update(flat(value, f"{dotted}."))
        else:
            items[dotted] = value
    return items


def normalised(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config with today's defaults filled in (a file of an older version of the project lacks new keys)."""
    try:
        return config_from_dict(saved, source="the saved config").to_dict()
    except ConfigError:
        return dict(saved)


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, current value)}`` for every key that differs, in the current config's order."""
    old, new = flat(normalised(saved)), flat(current)
    keys = list(new) + [key for key in old if key not in new]
    return {
        key: (old.get(key, ABSENT), new.get(key, ABSENT))
        for key in keys
        if old.get(key, ABSENT) != new.get(key, ABSENT) and not covers(FREE_ON_RESUME, key)
    }


def covers(prefixes: Iterable[str], key: str) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies in a section one of them names (``data`` covers ``data.root``)."""
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in prefixes)


def allowed_changes(
    saved: Mapping[str, Any], current: Mapping[str, Any], allow: Iterable[str], folder: Path
) -> dict[str, tuple[Any, Any]]:
    """The changes of a resumed run's config, all of them allowed by ``--allow-change``; else a ConfigError.

    The error lists every change that was not allowed, ``key old -> new``, and the three ways on.
    """
    allow = list(allow)
    known = set(flat(current)) | set(flat(normalised(saved)))
    sections = {key.rsplit(".", 1)[0] for key in known if "." in key}
    for key in allow:
        if key not in known and key not in sections:
            raise ConfigError(
                f"--allow-change {key}: no such config key{closest(key, sorted(known))}; name a key as in "
                "--set, e.g. --allow-change train.epochs"
            )
    changes = config_changes(saved, current)
    refused = {key: change for key, change in changes.items() if not covers(allow, key)}
    if refused:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in refused.items())
        keys = " ".join(f"--allow-change {key}" for key in refused)
        raise ConfigError(
            f"--resume: this command's config differs from the one the run in {folder} was trained with "
            f"(saved with its weights; old -> new): {listed}. A resumed run continues that run: resume with "
            f"its settings (they are in {folder / 'config.yaml'}), or change them deliberately with {keys} "
            "(logged in log.jsonl at the epoch it takes effect), or start a new run in another --output-dir"
        )
    return changes


def check_epochs(epochs: int, done: int, folder: Path) -> None:
    """Refuse ``train.epochs`` below the epochs a resumed run has already trained (nothing can be undone)."""
    if epochs < done:
        raise UserError(
            f"--resume: the run in {folder} has already trained {done} epochs, more than train.epochs {epochs}; "
            "nothing was changed. Train longer with a larger train.epochs, or train a shorter run into another "
            "--output-dir"
        )


def follow_train_config(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.MultiStepLR, train: TrainConfig
) -> None:
    """After an allowed change of the learning rate, its schedule or the optimizer's settings: the config's
    values from now on (the optimizer's moments and the schedule's epoch stay the checkpoint's)."""
    scheduler.milestones = Counter(train.lr_steps)
    scheduler.gamma = train.lr_factor
    scheduler.base_lrs = [train.lr] * len(optimizer.param_groups)
    passed = sum(1 for step in train.lr_steps if 0 < step <= scheduler.last_epoch)
    lr = train.lr * train.lr_factor**passed
    for group in optimizer.param_groups:
        group.update(initial_lr=train.lr, lr=lr, weight_decay=train.weight_decay)
        if "betas" in group:
            group["betas"] = tuple(train.betas)
        if "momentum" in group:
            group["momentum"] = train.momentum
    scheduler._last_lr = [lr] * len(optimizer.param_groups)
