"""The one pipeline object and the one way from a checkpoint file to a network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datasets.keypoints import MPII
from engine.experiment.config import load_config
from engine.inference.networks import deployable, load_network
from engine.inference.pipeline import Pipeline
from models.registry import build_model
from utils.checkpoint import save_checkpoint
from utils.errors import CheckpointError, UserError
from utils.paths import EXPERIMENTS_DIR

DEMO = EXPERIMENTS_DIR / "mpii" / "demo.yaml"


@pytest.fixture(scope="module")
def demo_config():
    return load_config(DEMO)


def test_the_demo_config_gives_its_pipeline(demo_config) -> None:
    pipeline = Pipeline.from_config(demo_config)
    assert pipeline.codec.input_size == tuple(demo_config.data["input_size"])
    assert pipeline.skeleton == MPII and pipeline.color == "bgr_imagenet"
    assert pipeline.flip is True and pipeline.shift_heatmap is True
    assert pipeline.with_flip(False).flip is False and pipeline.with_flip(None) is pipeline


def test_a_checkpoint_round_trips_its_pipeline(demo_config) -> None:
    pipeline = Pipeline.from_config(demo_config)
    state = {"model": {}, "pipeline": pipeline.to_dict()}
    assert Pipeline.from_checkpoint(state, demo_config, "x.pth") == pipeline
    legacy = {"model": {}, "codec": pipeline.codec.to_dict()}  # files written before the pipeline entry
    assert Pipeline.from_checkpoint(legacy, demo_config, "x.pth") == pipeline


@pytest.mark.parametrize("entry", [{"codec": None}, {"codec": {"sigma": 2}}, {"pipeline": {"codec": None}}])
def test_a_malformed_pipeline_entry_is_one_paragraph(demo_config, entry) -> None:
    with pytest.raises(
        CheckpointError, match=r"x.pth: its '(codec|pipeline)' entry .* is not what this project"
    ) as caught:
        Pipeline.from_checkpoint({"model": {}, **entry}, demo_config, "x.pth")
    assert "\n" not in str(caught.value)


def test_load_network_rebuilds_and_deploys_one_branch(demo_config, tmp_path: Path) -> None:
    model = build_model({**demo_config.model, "num_joints": 16})
    path = tmp_path / "best.pth"
    save_checkpoint(
        {"kind": "train", "model": model.state_dict(), "config": demo_config.to_dict(),
         "pipeline": Pipeline.from_config(demo_config).to_dict()},
        path,
    )  # fmt: skip
    loaded = load_network(path)
    assert loaded.section["name"] == model.config_section()["name"] and loaded.pipeline is not None
    with pytest.raises(
        UserError, match="name the branch to use with --head; deployable heads: branch0, branch1"
    ):
        deployable(loaded)
    deployed = deployable(loaded, "branch1")
    images = torch.randn(1, 3, *reversed(loaded.pipeline.codec.input_size))
    model.eval()
    assert torch.equal(deployed.model(images).final, model(images).branches[1])


def test_a_plain_state_dict_needs_a_model_section(tmp_path: Path) -> None:
    section = {"name": "hourglass", "num_stacks": 1, "num_features": 16, "num_joints": 16}
    model = build_model(section)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="plain state_dict with no model description"):
        load_network(tmp_path / "plain.pth", plain_ok=True, label="teachers.pt")
    loaded = load_network(tmp_path / "plain.pth", plain_ok=True, section=section)
    assert loaded.pipeline is None and loaded.config is None
    with pytest.raises(CheckpointError, match="carries no experiment config"):
        loaded.require_pipeline()
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_network(tmp_path / "plain.pth")
