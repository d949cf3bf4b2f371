"""COCO through the shared training engine: a short CPU run on synthetic COCO-format data learns and scores."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import yaml

from datasets.synthetic_coco import make_synthetic_coco
from utils.config import load_config
from utils.training import TrainingRun, read_log

REPO = Path(__file__).resolve().parents[1]


def test_short_coco_training_lowers_the_loss_and_gives_a_finite_ap(tmp_path: Path) -> None:
    root = make_synthetic_coco(tmp_path / "coco", num_train=24, num_valid=6, image_size=(128, 96))
    config_path = tmp_path / "tiny_coco.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "tiny_coco",
                "base": str(REPO / "experiments" / "coco" / "hg2_okdhp.yaml"),
                "model": {"num_features": 16, "depth": 2, "branch_stacks": [1, 1]},
                "data": {"root": str(root), "input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0},
                "loss": {"rampup_epochs": 2},
                "train": {"epochs": 3, "batch_size": 8, "lr": 2e-3, "workers": 0, "device": "cpu"},
                "test": {"batch_size": 16},
            }
        )
    )
    config = load_config(config_path)
    assert config.model["shared_stacks"] == 1 and config.data["name"] == "coco"
    summary = TrainingRun(config, tmp_path / "run").fit(log=lambda _: None)

    log = read_log(tmp_path / "run" / "log.jsonl")
    assert log[-1]["train"]["total"] < log[0]["train"]["total"]
    assert set(log[-1]["metric"]) == {"branch0", "branch1", "ensemble"}
    for result in summary["results"].values():
        assert math.isfinite(result.table["AP"]) and 0.0 <= result.table["AP"] <= 1.0
    assert (tmp_path / "run" / "deploy.pth").is_file()


def test_each_trainer_refuses_the_other_family() -> None:
    result = subprocess.run(
        [sys.executable, "train_mpii.py", "--config", "coco/hg4_okdhp"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "train it with train_coco.py" in result.stderr
