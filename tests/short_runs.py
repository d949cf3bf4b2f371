"""Short real training runs shared by several test modules (each trained once per test session).

``short_run`` trains an experiment's recipe (its augmentation, optimizer, schedule, flip test, evaluation)
with a small single hourglass, a 64-pixel input, batch 4 and a higher learning rate on one thread.
``train_short_mpii`` is the MPII one: the ``mpii/hg2_baseline`` recipe, 8 epochs on 192 synthetic persons
(about 15 s on one core). Its network learns clear heatmaps (PCKh about 76 on its 32 validation persons,
peaks near 1), so tests/test_learning.py checks what it learned and tests/test_export.py holds its int8
export to the default accuracy bound; the session fixture ``short_mpii_run`` (tests/conftest.py) trains it
once for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import load_config
from engine.training.run import TrainingRun

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SMALL_HOURGLASS = {"num_stacks": 1, "num_features": 32, "depth": 2}
LR = 4e-3
MPII_STEPS = [6, 7]  # the paper's factor 0.1 (from the yaml) applied from epochs 6 and 7 of 8


def short_run(
    folder: Path, experiment: str, data: dict[str, Any], train: dict[str, Any], precision: str = "fp32"
) -> dict[str, Any]:
    """Train the experiment's recipe with a small hourglass into ``folder/run``: its config, run and folder."""
    config_path = folder / "short.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": f"short_{experiment.replace('/', '_')}",
                "base": str(EXPERIMENTS / f"{experiment}.yaml"),
                "model": SMALL_HOURGLASS,
                "data": data,
                "train": {"batch_size": 4, "lr": LR, **train},
                "runtime": {"device": "cpu", "workers": 0, "precision": precision},
                "test": {"batch_size": 32},
            }
        )
    )
    config = load_config(config_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fixtures start before a module's autouse thread settings
    try:
        run = TrainingRun(config, folder / "run")
        run.fit(log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    return {"config": config, "run": run, "folder": folder / "run"}


def train_short_mpii(folder: Path, precision: str = "fp32") -> dict[str, Any]:
    """The short MPII run: ``mpii/hg2_baseline``'s recipe, 8 epochs on 192 synthetic persons (32 to validate),
    in ``runtime.precision`` ``precision`` (the synthetic set is the same for every folder: a fixed seed)."""
    root = make_synthetic_mpii(folder / "data", num_train=192, num_valid=32, image_size=128)
    data = {"root": str(root), "input_size": [64, 64], "heatmap_size": [16, 16], "sigma": 1.0}
    train = {"epochs": 8, "lr_steps": MPII_STEPS, "val_every": 4}
    return short_run(folder, "mpii/hg2_baseline", data, train, precision=precision)
