"""Checkpoint reading: empty, truncated and foreign files are one-paragraph errors; wrapped models' keys fit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.cli import evaluate_main, run_cli
from utils.checkpoint import load_checkpoint, load_model_weights, save_checkpoint, strip_wrapper_prefixes
from utils.errors import CheckpointError


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "last.pth"
    save_checkpoint({"kind": "train", "model": small_model().state_dict(), "epoch": 3}, path)
    return path


def test_a_good_checkpoint_reads_back(checkpoint: Path) -> None:
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 3 and "0.weight" in state["model"]


def test_empty_file_is_named_and_called_empty(tmp_path: Path) -> None:
    path = tmp_path / "best.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{path}.*is empty \(0 bytes\)"):
        load_checkpoint(path)
    assert path.read_bytes() == b""


@pytest.mark.parametrize("keep", [0.5, 0.99, 8])
def test_truncated_file_is_named_and_called_truncated(checkpoint: Path, keep: float) -> None:
    data = checkpoint.read_bytes()
    cut = data[: int(keep * len(data)) if keep < 1 else int(keep)]
    checkpoint.write_bytes(cut)
    with pytest.raises(CheckpointError, match=rf"{checkpoint}.*truncated \({len(cut)} bytes"):
        load_checkpoint(checkpoint)
    assert checkpoint.read_bytes() == cut


def test_truncated_legacy_format_is_called_truncated(tmp_path: Path) -> None:
    path = tmp_path / "old.pth"
    torch.save({"model": small_model().state_dict()}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=rf"{path}.*truncated"):
        load_checkpoint(path)


def test_foreign_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint {path}: ") as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_empty_checkpoint_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "deploy.pth"
    path.write_bytes(b"")
    assert run_cli(evaluate_main, ["--checkpoint", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and "empty" in stderr and str(path) in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1


def test_strip_wrapper_prefixes_in_any_combination() -> None:
    value = torch.zeros(1)
    keys = {
        "conv.weight": "conv.weight",
        "module.conv.weight": "conv.weight",
        "_orig_mod.conv.weight": "conv.weight",
        "module._orig_mod.conv.weight": "conv.weight",
        "_orig_mod.module.conv.weight": "conv.weight",
        "module.module.conv.weight": "conv.weight",
        "backbone._orig_mod.conv.weight": "backbone.conv.weight",
        "modules.0.weight": "modules.0.weight",  # 'modules.' is not the wrapper's prefix
    }
    for key, expected in keys.items():
        assert list(strip_wrapper_prefixes({key: value})) == [expected], key


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapped_weights_load_into_the_plain_model(prefix: str) -> None:
    source = small_model()
    nn.init.constant_(source[0].weight, 0.5)
    wrapped = {prefix + key: value for key, value in source.state_dict().items()}
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    load_model_weights(target, wrapped, "wrapped.pth")
    assert torch.equal(target[0].weight, source[0].weight)


def test_data_parallel_state_dict_loads() -> None:
    source = nn.DataParallel(small_model())
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))
    load_model_weights(target, source.state_dict(), "dp.pth")
    assert torch.equal(target[2].bias, source.module[2].bias)


def test_other_model_still_refused_and_duplicates_named() -> None:
    other = nn.Sequential(nn.Conv2d(3, 8, 3)).state_dict()
    with pytest.raises(CheckpointError, match="other.pth does not fit"):
        load_model_weights(small_model(), {f"module.{k}": v for k, v in other.items()}, "other.pth")
    state = small_model().state_dict()
    doubled = {**state, **{f"module.{k}": v for k, v in state.items()}}
    with pytest.raises(CheckpointError, match="twice"):
        load_model_weights(small_model(), doubled, "doubled.pth")


def test_non_finite_weights_are_refused_naming_the_tensor_and_the_file(tmp_path: Path) -> None:
    state = small_model().state_dict()
    state["1.running_var"][2] = float("nan")
    state["2.weight"][0] = float("inf")
    path = tmp_path / "diverged.pth"
    save_checkpoint({"kind": "deploy", "model": state}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {path}: weight '1.running_var' holds 1 non-finite value")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"kind": "foo"},
            "has kind 'foo', which this project does not write (known: converted, deploy, train)",
        ),
        ({"codec": None}, "its 'codec' entry is None, not {input_size"),
        ({"codec": {"input_size": [64, 64], "heatmap_size": [16], "sigma": 1.0}}, "its 'codec' entry is {"),
        (
            {"codec": {"input_size": [64, 64], "heatmap_size": [16, 16], "sigma": float("nan")}},
            "'codec' entry",
        ),
    ],
)
def test_unknown_kind_and_malformed_codec_are_refused(tmp_path: Path, extra: dict, expected: str) -> None:
    path = tmp_path / "odd.pth"
    save_checkpoint({"kind": "deploy", "model": small_model().state_dict(), **extra}, path)
    with pytest.raises(CheckpointError, match=re.escape(expected)):
        load_checkpoint(path)


def test_a_checkpoint_without_kind_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "older.pth"
    save_checkpoint({"model": small_model().state_dict()}, path)
    assert "0.weight" in load_checkpoint(path)["model"]


def test_evaluate_refuses_a_null_codec_in_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "deploy.pth"
    save_checkpoint({"kind": "deploy", "model": small_model().state_dict(), "codec": None}, path)
    assert run_cli(evaluate_main, ["--checkpoint", str(path)]) == 2
    stderr = capsys.readouterr().err
    assert (
        stderr.startswith(f"error: checkpoint {path}: its 'codec' entry is None") and stderr.count("\n") == 1
    )
