"""Experiment configs: every yaml validates, misspelt keys are named, overrides and base files work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.registry import build_model
from utils.config import load_config, save_config
from utils.errors import ConfigError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
ALL_YAMLS = sorted(p for p in EXPERIMENTS.rglob("*.yaml") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_validates_and_builds(path: Path) -> None:
    config = load_config(path)
    assert config.experiment == "_".join(path.relative_to(EXPERIMENTS).with_suffix("").parts)
    with torch.device("meta"):  # no memory, no initialisation cost: only the structure is checked
        model = build_model(config.model)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_released_recipe_is_the_mpii_default() -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_okdhp.yaml")
    assert config.train.lr == 2.5e-4 and config.train.lr_steps == [90, 120] and config.train.epochs == 150
    assert (
        config.train.batch_size == 16 and config.train.optimizer == "adam" and config.train.weight_decay == 0
    )
    assert config.loss == {
        "name": "okdhp", "alpha": 1.0, "beta": 2.0, "rampup_epochs": 90, "temperature": 1.0,
        "detach_ensemble": False,
    }  # fmt: skip
    assert config.model["shared_stacks"] == 2 and config.model["branch_stacks"] == [2, 2, 2]
    assert config.data["color"] == "bgr_imagenet" and config.test.select == "best_branch"


def test_base_files_merge_and_children_win() -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_okdhp_unbalanced.yaml")
    assert config.model["branch_stacks"] == [2, 4, 6]
    assert config.model["fau"] == "released"  # from hg4_okdhp.yaml
    assert config.train.lr_steps == [90, 120]  # from _defaults.yaml
    assert config.test.select == "branch0"


@pytest.mark.parametrize(
    ("override", "closest"),
    [
        ("train.lrr=0.1", "lr"),
        ("model.shared_stack=3", "shared_stacks"),
        ("data.sigmaa=3", "sigma"),
        ("loss.alphaa=2", "alpha"),
        ("tset.flip=false", "test"),
    ],
)
def test_misspelt_key_names_the_closest_valid_key(override: str, closest: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{closest}'"):
        load_config(EXPERIMENTS / "mpii" / "hg4_okdhp.yaml", [override])


def test_overrides_are_typed() -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.lr=1e-3", "train.epochs=3"])
    assert config.train.lr == pytest.approx(1e-3) and config.train.epochs == 3
    with pytest.raises(ConfigError, match="train.epochs must be int"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.epochs=three"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["train.epochs"])


@pytest.mark.parametrize("override", ["train.epochs=0", "test.batch_size=0", "runtime.workers=-1"])
def test_out_of_range_counts_are_config_errors(override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", [override])


def test_section_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="'model' must be a mapping"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["model=3"])


def test_unknown_model_name_and_missing_file() -> None:
    with pytest.raises(ConfigError, match="did you mean 'hourglass'"):
        load_config(EXPERIMENTS / "mpii" / "hg4_baseline.yaml", ["model.name=hourglas"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(EXPERIMENTS / "mpii" / "no_such.yaml")


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(EXPERIMENTS / "mpii" / "hg4_okdhp_released.yaml", ["train.epochs=2"])
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == config


def test_unusable_device_is_a_config_error() -> None:
    from utils.runtime import make_runtime

    with pytest.raises(ConfigError, match="'gpu' is not a device"):
        make_runtime("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            make_runtime("cuda")
