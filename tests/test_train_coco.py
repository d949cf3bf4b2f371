"""COCO through the shared training engine: a short CPU run on synthetic COCO-format data learns and scores,
and its checkpoints evaluate on COCO and on the real OCHuman sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from datasets.synthetic_coco import make_synthetic_coco
from engine.experiment.config import load_config
from engine.inference.evaluation import evaluate_checkpoint
from engine.training.log import read_log
from engine.training.run import TrainingRun
from tests.coco_check import pycocotools_stats

REPO = Path(__file__).resolve().parents[1]
COCO_KEYS = {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}
TINY_SIZES = {"input_size": [48, 64], "heatmap_size": [12, 16], "sigma": 1.0}


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Train a tiny two-branch OKDHP for 3 epochs on synthetic COCO; returns (config, run folder, summary)."""
    folder = tmp_path_factory.mktemp("coco_run")
    root = make_synthetic_coco(folder / "coco", num_train=24, num_valid=6, image_size=(128, 96))
    config_path = folder / "tiny_coco.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "tiny_coco",
                "base": str(REPO / "experiments" / "coco" / "hg2_okdhp.yaml"),
                "model": {"num_features": 16, "depth": 2, "branch_stacks": [1, 1]},
                "data": {"root": str(root), **TINY_SIZES},
                "loss": {"rampup_epochs": 2},
                "train": {"epochs": 3, "batch_size": 8, "lr": 2e-3, "lr_steps": []},
                "runtime": {"workers": 0, "device": "cpu"},
                "test": {"batch_size": 16},
            }
        )
    )
    config = load_config(config_path)
    assert config.model["shared_stacks"] == 1 and config.data["name"] == "coco"
    summary = TrainingRun(config, folder / "run").fit(log=lambda _: None)
    return config_path, folder / "run", summary


def test_short_coco_training_lowers_the_loss_and_gives_a_finite_ap(coco_run) -> None:
    _, run, summary = coco_run
    log = read_log(run / "log.jsonl")
    assert log[-1]["train"]["total"] < log[0]["train"]["total"]
    assert set(log[-1]["metric"]) == {"branch0", "branch1", "ensemble"}
    for result in summary["results"].values():
        assert set(result.table) == COCO_KEYS
        assert result.metric == result.table["AP"]  # selection reads the AP; learning: test_learning.py
    assert (run / "deploy.pth").is_file()


def test_checkpoint_mode_on_coco_with_pictures(coco_run) -> None:
    config_path, run, _ = coco_run
    out = run / "eval_cli"
    result = subprocess.run(
        [sys.executable, "evaluate.py", "--config", str(config_path), "--checkpoint", str(run / "last.pth"),
         "--output-dir", str(out), "--vis", "2", "--json"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tables = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(tables) == {"branch0", "branch1", "ensemble"}
    assert all(set(table) == COCO_KEYS for table in tables.values())
    last_val = read_log(run / "log.jsonl")[-1]["val"]
    for head, table in tables.items():
        assert table == pytest.approx(last_val[head])
    assert (out / "ensemble" / "keypoints_results.json").is_file()
    assert len(list((out / "vis").glob("*.png"))) == 2


def test_coco_trained_network_evaluates_on_the_real_ochuman_sample(coco_run, ochuman_data: Path) -> None:
    _, run, _ = coco_run
    config_path = run.parent / "ochuman.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "experiment": "tiny_ochuman",
                "base": str(REPO / "experiments" / "coco" / "ochuman_hg4_okdhp.yaml"),
                "data": {"root": str(ochuman_data), "ann_file": "annotations/sample.json", **TINY_SIZES},
                "runtime": {"workers": 0, "device": "cpu"},
            }
        )
    )
    table = evaluate_checkpoint(run / "deploy.pth", config_path, output_dir=run / "eval_ochuman")
    assert set(table) == COCO_KEYS
    results = run / "eval_ochuman" / "branch0" / "keypoints_results.json"
    assert table == pytest.approx(pycocotools_stats(ochuman_data / "annotations" / "sample.json", results))


def test_each_trainer_refuses_the_other_family() -> None:
    result = subprocess.run(
        [sys.executable, "train_mpii.py", "--config", "coco/hg4_okdhp"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "train it with train_coco.py" in result.stderr
