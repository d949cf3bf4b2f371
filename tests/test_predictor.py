"""The predictor (one prediction path for validation, evaluate.py, demos and export) and start-up checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from datasets.registry import build_codec, build_dataset
from datasets.synthetic import make_synthetic_mpii
from datasets.transforms import read_image
from engine.experiment.config import config_from_dict, load_config
from engine.inference.evaluation import evaluate_checkpoint
from engine.inference.loops import predict
from engine.inference.predictor import Predictor
from engine.runtime.execution import make_runtime
from engine.runtime.loader import make_loader
from engine.training.run import TrainingRun
from models.registry import build_model
from tests.test_training import write_config
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import ConfigError
from utils.progress import Progress

NETWORK = {"name": "hourglass", "num_stacks": 2, "num_features": 16, "depth": 2, "num_joints": 16}


def sample_config(mpii_data: Path) -> dict:
    """An experiment on the 5 real MPII sample persons at 128x128."""
    return {
        "experiment": "sample",
        "model": NETWORK,
        "data": {
            "name": "mpii",
            "root": str(mpii_data),
            "annotation_file": "annot/sample.json",
            "gt_file": "annot/detections_our_format.mat",
            "input_size": [128, 128],
            "heatmap_size": [32, 32],
        },
        "loss": {"name": "mse"},
        "runtime": {"workers": 0, "device": "cpu"},
        "test": {"batch_size": 2},
    }


def test_predictor_on_real_images_equals_the_validation_loop(mpii_data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_model(NETWORK)
    for module in network.modules():  # non-trivial BN statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    config = config_from_dict(sample_config(mpii_data))
    codec = build_codec(config.data)
    checkpoint = tmp_path / "deploy.pth"
    state = {"kind": "deploy", "model": network.state_dict(), "model_config": NETWORK}
    save_checkpoint({**state, "codec": codec.to_dict(), "config": config.to_dict()}, checkpoint)

    predictor = Predictor.from_checkpoint(checkpoint, make_runtime("cpu"))
    dataset = build_dataset(config.data, split="valid", train=False, codec=codec)
    validation = predict(predictor, make_loader(dataset, 2, 0, predictor.runtime))["branch0"]
    for index, record in enumerate(dataset.records):  # one image, one person at a time, as a demo would
        keypoints, scores = predictor.predict(read_image(record.image), [record.center], [record.scale])
        np.testing.assert_allclose(keypoints[0], validation[0][index], atol=1e-6)
        np.testing.assert_allclose(scores[0], validation[1][index][:, 0], atol=1e-6)
    assert predictor.predict(read_image(dataset.records[0].image), [], [])[0].shape == (0, 16, 2)


def test_joint_count_comes_from_the_dataset(mpii_data: Path, tmp_path: Path) -> None:
    raw = sample_config(mpii_data)
    raw["model"] = {**NETWORK, "num_joints": 17}
    with pytest.raises(ConfigError, match="model.num_joints is 17, but the dataset's skeleton has 16 joints"):
        TrainingRun(config_from_dict(raw), tmp_path / "run")
    raw["model"] = {k: v for k, v in NETWORK.items() if k != "num_joints"}  # absent: taken from the data
    run = TrainingRun(config_from_dict(raw), tmp_path / "run")
    assert run.model_section["num_joints"] == 16


def test_input_size_the_network_cannot_take_is_refused(mpii_data: Path, tmp_path: Path) -> None:
    raw = sample_config(mpii_data)
    raw["data"]["input_size"] = [130, 130]
    with pytest.raises(ConfigError, match=r"data.input_size 130x130: .*multiples of 4"):
        TrainingRun(config_from_dict(raw), tmp_path / "run")
    raw["data"]["input_size"] = [128, 128]
    raw["data"]["heatmap_size"] = [64, 64]
    with pytest.raises(ConfigError, match=r"data.heatmap_size is \[64, 64\] .* gives 32x32 heatmaps"):
        TrainingRun(config_from_dict(raw), tmp_path / "run")


def test_a_loss_that_needs_a_mask_on_data_without_one_is_refused(mpii_data: Path, tmp_path: Path) -> None:
    from losses.joints_mse import PoseMSELoss, check_batch_keys

    class NeedsMask(PoseMSELoss):
        batch_keys = ("target", "target_weight", "mask")

    dataset = build_dataset(sample_config(mpii_data)["data"], split="valid", train=False)
    with pytest.raises(
        ConfigError, match="needs the batch entries mask, which dataset 'mpii' does not provide"
    ):
        check_batch_keys(NeedsMask(), dataset.batch_keys, "needs_mask", "mpii")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("predictor_run")
    root = make_synthetic_mpii(folder / "data", num_train=6, num_valid=4, image_size=64)
    config_path = write_config(folder, root, epochs=1, name="hourglass", num_stacks=1)
    raw = yaml.safe_load(config_path.read_text())
    for key in ("shared_stacks", "branch_stacks"):
        raw["model"].pop(key)
    raw["train"]["batch_size"] = 4  # 6 persons: one full batch and a last batch of 2, trained as released
    config_path.write_text(yaml.safe_dump(raw))
    TrainingRun(load_config(config_path), folder / "run").fit(log=lambda _: None)
    return config_path, folder / "run"


def test_single_network_deploys_itself_and_the_last_partial_batch_is_trained(tiny_run) -> None:
    _, run = tiny_run
    best, deploy = load_checkpoint(run / "best.pth"), load_checkpoint(run / "deploy.pth")
    assert deploy["model"].keys() == best["model"].keys()
    assert all(torch.equal(deploy["model"][k], best["model"][k]) for k in best["model"])
    assert (
        build_model(deploy["model_config"]).config_section()
        == build_model(best["config"]["model"]).config_section()
    )
    steps = best["optimizer"]["state"][0]["step"]
    assert int(steps) == 2  # 4 + 2 persons: two optimizer steps in the epoch


def test_a_checkpoint_keeps_its_input_pipeline_under_another_config(tiny_run, tmp_path: Path, capsys) -> None:
    config_path, run = tiny_run
    other = yaml.safe_load(config_path.read_text())
    other["data"]["input_size"], other["data"]["heatmap_size"] = [128, 128], [32, 32]
    other_path = tmp_path / "other.yaml"
    other_path.write_text(yaml.safe_dump(other))
    expected = evaluate_checkpoint(run / "deploy.pth", config_path, output_dir=tmp_path / "a")
    capsys.readouterr()
    table = evaluate_checkpoint(run / "deploy.pth", other_path, output_dir=tmp_path / "b")
    warning = capsys.readouterr().err
    assert (
        "data.input_size [128, 128] -> [64, 64]" in warning
        and "data.heatmap_size [32, 32] -> [16, 16]" in warning
    )
    assert table == expected
    assert json.loads((tmp_path / "b" / "tables.json").read_text())["branch0"] == expected


def test_progress_without_a_terminal_prints_lines(capsys) -> None:
    import io

    stream = io.StringIO()
    items = list(Progress(range(500), 500, "epoch 3", interval=0.0, stream=stream))
    assert items == list(range(500))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 501 and lines[-1].startswith("epoch 3: 500/500") and "\r" not in stream.getvalue()
    quiet = io.StringIO()
    list(Progress(range(500), 500, "epoch 3", stream=quiet))  # default interval: one line at the end
    assert len(quiet.getvalue().splitlines()) == 1


def test_evaluate_refuses_an_output_folder_that_is_a_file(tiny_run, tmp_path: Path) -> None:
    from utils.output_paths import OutputPathError

    config_path, run = tiny_run
    a_file = tmp_path / "tables"
    a_file.write_text("keep")
    with pytest.raises(OutputPathError, match="cannot create the output folder"):
        evaluate_checkpoint(run / "deploy.pth", config_path, output_dir=a_file)
    assert a_file.read_text() == "keep"
