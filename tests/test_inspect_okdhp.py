"""tools/inspect_okdhp.py: FAU weights per joint and branch, and every head's heatmaps, on real MPII persons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.registry import build_codec, build_dataset
from datasets.transforms import read_image
from engine.cli import run_cli
from models.registry import build_model
from tests.deploy_helpers import mpii_data_section, tiny_okdhp_run
from tests.test_export import assert_one_paragraph
from tools.inspect_okdhp import main as inspect_main
from utils.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_okdhp_run(tmp_path_factory)


def test_fau_weights_and_heatmaps_of_real_persons(run_dir, mpii_data, tmp_path, capsys) -> None:
    real = ["--set", f"data.root={mpii_data}", "--set", "data.annotation_file=annot/sample.json"]
    code = run_cli(inspect_main, [str(run_dir / "best.pth"), *real, "--out", str(tmp_path), "--images", "3"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "fau_weights.json").read_text())
    assert summary["branches"] == ["branch0", "branch1"] and summary["persons"] == 3
    weights = np.array(summary["weights"])  # (persons, joints, branches)
    assert weights.shape == (3, 16, 2)
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(summary["mean_weights"], weights.mean(axis=0), atol=1e-6)

    state = load_checkpoint(run_dir / "best.pth")
    model = build_model(state["config"]["model"]).eval()
    model.load_state_dict(state["model"])
    data = mpii_data_section(mpii_data)
    dataset = build_dataset(data, "valid", train=False, codec=build_codec(data))
    images = torch.stack([dataset[i]["image"] for i in range(3)])
    with torch.no_grad():
        direct = model.fau.branch_weights(model.stem(images)).permute(0, 2, 1).numpy()
    np.testing.assert_allclose(weights, direct, atol=1e-6)

    for name in ("fau_weights.png", "heatmaps_0.png", "heatmaps_1.png", "heatmaps_2.png"):
        picture = read_image(tmp_path / name)
        assert min(picture.shape[:2]) > 100, name


def test_a_single_network_has_no_fau(run_dir, tmp_path, capsys) -> None:
    code = run_cli(inspect_main, [str(run_dir / "deploy.pth"), "--out", str(tmp_path)])
    assert_one_paragraph(code, capsys.readouterr().err, "has no FAU", "multi-branch")


def test_fau_weights_of_a_multi_branch_mobile_net_read_the_encoder() -> None:
    from engine.inference.inspection import fau_weights

    model = build_model(
        {"name": "okdhp_mobile", "backbone": "mobilenet_v2", "deconv_channels": 8, "fau_channels": 8}
    ).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        weights = fau_weights(model, images)
        expected = model.fau.branch_weights(model.encoder(images))
    assert weights.shape == (2, 3, 16)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 16))


def test_earlier_pictures_are_replaced_only_with_overwrite(run_dir, tmp_path, capsys) -> None:
    (tmp_path / "fau_weights.png").write_text("an earlier picture")
    code = run_cli(inspect_main, [str(run_dir / "best.pth"), "--out", str(tmp_path), "--images", "1"])
    assert_one_paragraph(code, capsys.readouterr().err, f"{tmp_path / 'fau_weights.png'} already exists")
    assert (tmp_path / "fau_weights.png").read_text() == "an earlier picture"
    code = run_cli(
        inspect_main, [str(run_dir / "best.pth"), "--out", str(tmp_path), "--images", "1", "--overwrite"]
    )
    assert code == 0, capsys.readouterr().err
    assert min(read_image(tmp_path / "fau_weights.png").shape[:2]) > 100
