"""Checkpoints for the export, demo and inspection tests: a tiny trained OKDHP run and random small networks.

The trained run is shared by every test module of a session (it is written once under pytest's base
temporary folder). Random networks get realistic activations: He-initialised convolutions and BatchNorm
statistics measured on real crops, so their heatmaps are O(1) and a 1e-4 comparison means something.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from datasets.registry import build_codec, build_dataset
from datasets.synthetic import make_synthetic_mpii
from engine.experiment.config import config_from_dict
from engine.training.run import TrainingRun
from models.registry import build_model
from utils.checkpoint import save_checkpoint

MPII_SAMPLE = {"annotation_file": "annot/sample.json"}
COCO_SAMPLE = {"ann_file": "annotations/person_keypoints_sample.json", "image_dir": "images/val2017"}
TINY_SIZES = {"input_size": [64, 64], "heatmap_size": [16, 16], "sigma": 1.0}


def tiny_okdhp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of a tiny 2-branch OKDHP trained 1 epoch on synthetic MPII (best.pth, deploy.pth)."""
    folder = tmp_path_factory.getbasetemp() / "tiny_okdhp_run"
    if (folder / "deploy.pth").is_file():
        return folder
    root = make_synthetic_mpii(tmp_path_factory.getbasetemp() / "tiny_okdhp_data", 16, 4, image_size=64)
    config = config_from_dict(
        {
            "experiment": "tiny_okdhp",
            "seed": 3,
            "model": {
                "name": "okdhp_hourglass",
                "num_joints": 16,
                "num_features": 16,
                "depth": 2,
                "shared_stacks": 1,
                "branch_stacks": [1, 1],
                "fau_width": 16,
            },
            "data": {"name": "mpii", "root": str(root), **TINY_SIZES},
            "loss": {"name": "okdhp", "rampup_epochs": 1},
            "train": {"epochs": 1, "batch_size": 4, "lr": 2e-3, "lr_steps": []},
            "runtime": {"workers": 0, "device": "cpu"},
            "test": {"batch_size": 8},
        }  # fmt: skip
    )
    TrainingRun(config, folder).fit(log=lambda _: None)
    return folder


def realistic_weights(model: nn.Module, images: torch.Tensor, num_joints: int) -> nn.Module:
    """He-initialise every convolution, set BatchNorm statistics from ``images``, and scale the final heatmap
    conv so that the heatmaps peak at 1 as a trained network's do; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        model(images)
        model.eval()
        peak = model(images).final.abs().max()
        final = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.out_channels == num_joints][-1]
        final.weight /= peak
        if final.bias is not None:
            final.bias /= peak
    return model


def sample_crops(data: dict[str, Any], count: int = 4) -> torch.Tensor:
    """The first ``count`` validation crops of a real sample data section."""
    dataset = build_dataset(data, "valid", train=False, codec=build_codec(data))
    return torch.stack([dataset[i]["image"] for i in range(min(count, len(dataset)))])


def random_deploy_checkpoint(section: dict[str, Any], data: dict[str, Any], path: Path) -> Path:
    """A deploy.pth of a random network with realistic activations on the real crops of ``data``."""
    torch.manual_seed(0)
    model = realistic_weights(build_model(section), sample_crops(data), section["num_joints"])
    config = {"experiment": path.stem, "model": section, "data": data, "loss": {"name": "mse"}}
    codec = build_codec(data)
    state = {
        "kind": "deploy",
        "model": model.state_dict(),
        "model_config": section,
        "codec": codec.to_dict(),
        "config": config,
    }
    save_checkpoint(state, path)
    return path


def with_nan_weight(checkpoint: Path, path: Path) -> tuple[Path, str]:
    """A copy of a checkpoint whose first floating-point weight holds a NaN; returns it and that weight's name."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    name = next(key for key, value in state["model"].items() if value.is_floating_point())
    state["model"][name].view(-1)[0] = float("nan")
    save_checkpoint(state, path)
    return path, name


def coco_data_section(coco_data: Path, **sizes: Any) -> dict[str, Any]:
    """A COCO data section on the real sample (ground-truth boxes), small input by default."""
    sizes = sizes or {"input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0}
    return {"name": "coco", "root": str(coco_data), **COCO_SAMPLE, **sizes}


def mpii_data_section(mpii_data: Path) -> dict[str, Any]:
    """An MPII data section on the real sample (5 persons), at the tiny run's sizes."""
    return {"name": "mpii", "root": str(mpii_data), **MPII_SAMPLE, **TINY_SIZES}


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())
