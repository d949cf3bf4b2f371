"""tools/model_summary.py as a user runs it: a subprocess on a yaml, its JSON equal to in-process counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models.registry import build_model
from tests.conftest import REPO_ROOT
from utils.flops import count_params, layer_macs, part_counts


def run_summary(config: dict, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "tools/model_summary.py", str(path), *args]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def summary_json(config: dict, tmp_path: Path, *args: str) -> dict:
    result = run_summary(config, tmp_path, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_multi_branch_summary_equals_module_counts(tmp_path: Path) -> None:
    section = {"name": "okdhp_hourglass", "num_features": 32, "depth": 3, "branch_stacks": [1, 2]}
    config = {"model": section, "data": {"input_size": [64, 48]}, "train": {"epochs": 1}}
    summary = summary_json(config, tmp_path, "--branch", "1")
    assert summary["input_size"] == [48, 64]  # data.input_size is [width, height]

    torch.set_num_threads(1)  # a tiny network: extra threads only add overhead (conftest resets this)
    model = build_model(section)
    images = torch.zeros(1, 3, 48, 64)
    assert summary["parts"] == part_counts(model, model.parts(), images)
    assert list(summary["parts"]) == ["stem", "shared_stacks", "branch0", "branch1", "fau"]
    assert summary["params"] == count_params(model)
    assert summary["macs"] == sum(layer_macs(model, images).values())
    deployed = model.deploy("branch1")[0]
    assert summary["deploy_branch"] == 1 and summary["deploy_config"] == model.deploy_section("branch1")
    assert summary["deploy_params"] == count_params(deployed)
    assert summary["deploy_macs"] == sum(layer_macs(deployed, images).values())


def test_single_network_summary(tmp_path: Path) -> None:
    section = {"name": "hourglass", "num_stacks": 2, "num_features": 32, "depth": 3}
    summary = summary_json({"model": section}, tmp_path, "--input-size", "64", "64")
    assert list(summary["parts"]) == ["stem", "stacks"]
    assert summary["deploy_branch"] is None
    assert summary["deploy_params"] == summary["params"] == count_params(build_model(section))
    assert summary["deploy_macs"] == summary["macs"]


@pytest.mark.slow
def test_full_size_balanced_okdhp_numbers(tmp_path: Path) -> None:
    summary = summary_json({"model": {"name": "okdhp_hourglass"}}, tmp_path)
    assert summary["input_size"] == [256, 256]
    assert summary["params"] == 30_915_696 and summary["deploy_params"] == 13_018_816
    assert summary["macs"] == pytest.approx(49.804e9, rel=0.005)
    assert summary["deploy_macs"] == pytest.approx(15.357e9, rel=0.005)
    assert summary["parts"]["fau"]["params"] == 5_461_360


def test_unknown_key_is_reported(tmp_path: Path) -> None:
    result = run_summary({"model": {"name": "hourglass", "num_stack": 4}}, tmp_path)
    assert result.returncode == 2
    assert "did you mean 'num_stacks'" in result.stderr


def test_invalid_yaml_is_one_line_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tools.model_summary import main

    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    assert main([str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {path}: not valid yaml") and error.count("\n") == 1


@pytest.mark.slow
def test_experiment_with_base_file_is_resolved(tmp_path: Path) -> None:
    experiment = REPO_ROOT / "experiments" / "mpii" / "hg4_okdhp_unbalanced.yaml"
    command = [sys.executable, "tools/model_summary.py", str(experiment), "--json"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["deploy_params"] == 13_018_816  # the unbalanced target branch is a 4-stack network
    assert summary["deploy_config"]["num_stacks"] == 4


def test_fpd_summary_counts_the_teacher_forward_apart(capsys) -> None:
    from tools.model_summary import main

    assert main([str(REPO_ROOT / "experiments" / "mpii" / "hg4_fpd.yaml"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["params"] == summary["deploy_params"] == 13_018_816  # the student is the deployed network
    teacher = summary["teachers"]["teacher"]
    assert teacher["params"] == 25_594_624 and teacher["fraction"] == 1.0
    assert summary["training_macs"] == summary["macs"] + teacher["macs"]
    assert teacher["macs"] == pytest.approx(28.094e9, rel=0.001)
