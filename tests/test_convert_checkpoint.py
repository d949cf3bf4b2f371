"""tools/convert_checkpoint.py and engine/convert/checkpoints.py: other code bases' files -> identical heatmaps here.

Each test writes a file in another code base's layout by renaming one of this project's (small) models the
other way round, with a plain table of names kept here independently of engine/convert/checkpoints.py; the key order is
shuffled so that only names, not positions, can carry the mapping.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
from pathlib import Path

import pytest
import torch

from engine.convert.checkpoints import convert_state_dict
from engine.training.build import load_init_weights
from models.registry import build_model
from tools.convert_checkpoint import main
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import CheckpointError

SMALL = {"num_features": 16, "depth": 2}
SMALL_SETS = ["--set", "model.num_features=16", "--set", "model.depth=2"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, 32, 32)


def trained_like(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """Give every BN non-default affine weights and running statistics, then switch to eval mode."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    with torch.no_grad():
        model.train()(images)
    return model.eval()


# ------------------------------------------------------- the other code bases' names, written plainly
STEM_NAMES = [
    ("stem.0.", "conv1."),
    ("stem.1.", "bn1."),
    ("stem.3.", "layer1.0."),
    ("stem.5.", "layer2.0."),
    ("stem.6.", "layer3.0."),
]
HOURGLASS_INDEX = {"skip": 0, "down": 1, "up": 2}


def their_hourglass(rest: str, depth: int) -> str:
    """Our nested 'inner.inner.skip.0.bn1.weight' -> their 'L.j.0.bn1.weight' (L = 0 innermost)."""
    parts = rest.split(".")
    nesting = 0
    while parts[nesting] == "inner":
        nesting += 1
    if parts[nesting] in HOURGLASS_INDEX:
        level, index, tail = depth - 1 - nesting, HOURGLASS_INDEX[parts[nesting]], parts[nesting + 1 :]
    else:  # a block number right after the last 'inner': the residual at the bottom of the hourglass
        level, index, tail = 0, 3, parts[nesting:]
    return f"{level}.{index}." + ".".join(tail)


def bearpaw_name(key: str, depth: int) -> str:
    """This project's HourglassNet key -> bearpaw / FPD's HourglassNet key."""
    key = key.replace("shortcut.", "downsample.0.")
    for ours, theirs in STEM_NAMES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    if match := re.fullmatch(r"path\.stacks\.(\d+)\.(hourglass|residual|feature|heatmap)\.(.+)", key):
        stack, part, rest = match.groups()
        if part == "hourglass":
            return f"hg.{stack}.hg.{their_hourglass(rest, depth)}"
        return f"{ {'residual': 'res', 'feature': 'fc', 'heatmap': 'score'}[part] }.{stack}.{rest}"
    if match := re.fullmatch(r"path\.reinjects\.(\d+)\.(feature|heatmap)\.(.+)", key):
        stack, part, rest = match.groups()
        return f"{'fc_' if part == 'feature' else 'score_'}.{stack}.{rest}"
    raise AssertionError(f"no bearpaw name for {key}")


def okdhp_name(key: str, depth: int) -> str:
    """This project's OKDHPHourglass key -> the official hourglass_okd_share_less.py key."""
    key = key.replace("shortcut.", "downsample.0.")
    for ours, theirs in STEM_NAMES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    fau = [(r"fau\.paths\.(\d+)\.(.+)", "convs.{}.{}"), (r"fau\.squeeze\.(.+)", "fc.{}")]
    fau.append((r"fau\.heads\.(\d+)\.(.+)", "fcs.{}.{}"))
    for pattern, template in fau:
        if match := re.fullmatch(pattern, key):
            return template.format(*match.groups())
    if match := re.fullmatch(r"(shared|branches\.(\d+))\.(stacks|reinjects)\.(\d+)\.(\w+)\.(.+)", key):
        where, branch, kind, index, part, rest = match.groups()
        place = f"s_{index}" if where == "shared" else f"b_{branch}_s_{index}"
        if kind == "reinjects":
            return f"{'_fc' if part == 'feature' else '_score'}_{place}.{rest}"
        if part == "heatmap":
            return f"score_{place}.{rest}"
        if part == "hourglass":
            return f"ind_{place}.0.hg.{their_hourglass(rest, depth)}"
        return f"ind_{place}.{ {'residual': 1, 'feature': 2}[part] }.{rest}"
    raise AssertionError(f"no official OKDHP name for {key}")


def their_state(model: torch.nn.Module, rename, prefix: str = "") -> dict[str, torch.Tensor]:
    """The model's state_dict under the other code base's names, in shuffled order."""
    depth = model.config_section()["depth"]
    items = [(prefix + rename(key, depth), value.clone()) for key, value in model.state_dict().items()]
    random.Random(0).shuffle(items)
    return dict(items)


def convert(tmp_path: Path, source: Path, fmt: str, config: str, *sets: str) -> tuple[int, Path]:
    out = tmp_path / "converted.pth"
    return main([str(source), str(out), "--from", fmt, "--config", config, *sets]), out


def assert_same_heatmaps(reference: torch.nn.Module, out: Path, images: torch.Tensor) -> None:
    """A fresh model loaded from OUT gives bit-identical heatmaps (every stack, and the ensemble)."""
    state = load_checkpoint(out)
    fresh = build_model(state["model_config"])
    load_init_weights(fresh, out)
    fresh.eval()
    with torch.no_grad():
        expected, got = reference(images), fresh(images)
    assert len(got.stacks) == len(expected.stacks)
    assert all(torch.equal(a, b) for a, b in zip(expected.stacks, got.stacks, strict=True))
    if expected.ensemble is not None:
        assert torch.equal(expected.ensemble, got.ensemble)


# ---------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(("num_stacks", "num_blocks"), [(2, 1), (3, 2)])
def test_bearpaw_checkpoint_converts_to_identical_heatmaps(tmp_path, images, num_stacks, num_blocks) -> None:
    model = build_model({"name": "hourglass", "num_stacks": num_stacks, "num_blocks": num_blocks, **SMALL})
    trained_like(model, images)
    source = tmp_path / "model_best.pth.tar"
    checkpoint = {
        "epoch": 100,
        "arch": "hg",
        "state_dict": their_state(model, bearpaw_name, prefix="module."),
        "best_acc": torch.tensor(0.8695),
        "optimizer": {"state": {}, "param_groups": []},
    }
    torch.save(checkpoint, source)
    sets = [*SMALL_SETS, "--set", f"model.num_stacks={num_stacks}", "--set", f"model.num_blocks={num_blocks}"]
    code, out = convert(tmp_path, source, "bearpaw", "mpii/hg2_baseline", *sets)
    assert code == 0
    state = load_checkpoint(out)
    assert state["kind"] == "converted"
    assert state["model_config"]["num_stacks"] == num_stacks
    assert state["config"]["model"]["num_features"] == 16
    origin = state["converted_from"]
    assert origin["format"] == "bearpaw" and origin["path"] == str(source.resolve())
    assert origin["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert state["config"]["data"]["color"] == "rgb_bearpaw_mpii"  # bearpaw's input normalisation
    assert_same_heatmaps(model, out, images)


@pytest.mark.parametrize(
    ("fmt", "container"), [("fpd", "final_state"), ("fpd", "checkpoint"), ("okdhp", "final_state")]
)
def test_fpd_and_official_single_network_files_convert(tmp_path, images, fmt, container) -> None:
    model = trained_like(
        build_model({"name": "hourglass", "num_stacks": 2, "num_joints": 17, **SMALL}), images
    )
    source = tmp_path / f"{container}.pth"
    if container == "final_state":  # final_state.pth / model_best.pth: a plain state_dict
        torch.save(their_state(model, bearpaw_name), source)
    else:  # checkpoint.pth: DataParallel keys in 'state_dict', the same weights without prefix beside them
        torch.save(
            {
                "epoch": 140,
                "model": "hourglass",
                "state_dict": their_state(model, bearpaw_name, prefix="module."),
                "best_state_dict": their_state(model, bearpaw_name),
                "perf": 0.7,
            },
            source,
        )
    code, out = convert(tmp_path, source, fmt, "coco/hg2_baseline", *SMALL_SETS)
    assert code == 0
    assert_same_heatmaps(model, out, images)


@pytest.mark.parametrize("shared_stacks", [1, 0])  # 0: the official hourglass_okd.py (nothing shared)
def test_official_multi_branch_file_converts_with_ensemble(tmp_path, images, shared_stacks) -> None:
    section = {
        "name": "okdhp_hourglass",
        **SMALL,
        "shared_stacks": shared_stacks,
        "branch_stacks": [2, 1, 2],
        "fau_width": 8,
        "released_indices": True,
    }
    model = trained_like(build_model(section), images)
    source = tmp_path / "final_state.pth"
    torch.save(their_state(model, okdhp_name), source)
    sets = [
        *SMALL_SETS,
        "--set",
        f"model.shared_stacks={shared_stacks}",
        "--set",
        "model.branch_stacks=[2,1,2]",
    ]
    code, out = convert(
        tmp_path, source, "okdhp", "mpii/hg4_okdhp_released", *sets, "--set", "model.fau_width=8"
    )
    assert code == 0
    assert_same_heatmaps(model, out, images)


def test_files_of_pytorch_before_0_4_1_get_zero_batch_counters(tmp_path, images) -> None:
    model = trained_like(build_model({"name": "hourglass", "num_stacks": 2, **SMALL}), images)
    state = {
        k: v for k, v in their_state(model, bearpaw_name).items() if not k.endswith("num_batches_tracked")
    }
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    code, out = convert(tmp_path, tmp_path / "old.pth", "bearpaw", "mpii/hg2_baseline", *SMALL_SETS)
    assert code == 0
    converted = load_checkpoint(out)["model"]
    assert all(v.item() == 0 for k, v in converted.items() if k.endswith("num_batches_tracked"))
    assert_same_heatmaps(model, out, images)


# ---------------------------------------------------------------------------------------- refusals
def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_file_of_another_size_is_refused_with_what_it_looks_like(tmp_path, images, capsys) -> None:
    model = build_model({"name": "hourglass", "num_stacks": 4, **SMALL})
    torch.save({"state_dict": their_state(model, bearpaw_name, prefix="module.")}, tmp_path / "hg4.pth")
    code, out = convert(tmp_path, tmp_path / "hg4.pth", "bearpaw", "mpii/hg2_baseline", *SMALL_SETS)
    assert code == 2 and not out.exists()
    err = error_line(capsys)
    assert "looks like a bearpaw hourglass with 4 stacks, 16 features, 16 joints, depth 2" in err
    assert "the config builds 2 stacks" in err and "--set model.num_stacks=4" in err


def test_full_size_refusal_names_the_experiment_that_fits() -> None:
    with torch.device("meta"):  # shapes only: no memory for 25 M parameters
        hg8 = build_model({"name": "hourglass", "num_stacks": 8})
        hg2 = build_model({"name": "hourglass", "num_stacks": 2})
    source = {"module." + bearpaw_name(k, 4): v for k, v in hg8.state_dict().items()}
    with pytest.raises(CheckpointError) as caught:
        convert_state_dict(source, "bearpaw", hg2, source_name="hg_s8_b1.pth.tar", family="mpii")
    message = str(caught.value)
    assert message.startswith(
        "hg_s8_b1.pth.tar looks like a bearpaw hourglass with 8 stacks, 256 features, 16 joints"
    )
    assert "the config builds 2 stacks: use experiments/mpii/hg8_baseline.yaml" in message


def test_multi_branch_file_against_a_single_network_config_is_refused(tmp_path, capsys) -> None:
    model = build_model({"name": "okdhp_hourglass", **SMALL, "shared_stacks": 1, "branch_stacks": [1, 1, 1]})
    torch.save(their_state(model, okdhp_name), tmp_path / "okd.pth")
    code, _ = convert(tmp_path, tmp_path / "okd.pth", "bearpaw", "mpii/hg2_baseline", *SMALL_SETS)
    assert code == 2 and "not a bearpaw network: convert it with --from okdhp" in error_line(capsys)
    code, _ = convert(tmp_path, tmp_path / "okd.pth", "okdhp", "mpii/hg2_baseline", *SMALL_SETS)
    err = error_line(capsys)
    assert code == 2
    assert "official OKDHP multi-branch hourglass with 1 shared stack and 3 branches of 1 stack each" in err
    assert "the config builds a single hourglass" in err


def test_unknown_and_missing_tensors_are_refused(tmp_path, capsys) -> None:
    model = build_model({"name": "hourglass", "num_stacks": 2, **SMALL})
    state = their_state(model, bearpaw_name)
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    code, _ = convert(tmp_path, tmp_path / "extra.pth", "fpd", "mpii/hg2_baseline", *SMALL_SETS)
    assert code == 2 and "no rule maps onto the model (e.g. extra.weight)" in error_line(capsys)
    del state["res.1.0.conv2.weight"]
    torch.save(state, tmp_path / "short.pth")
    code, _ = convert(tmp_path, tmp_path / "short.pth", "fpd", "mpii/hg2_baseline", *SMALL_SETS)
    assert (
        code == 2
        and "model weights not in the file (e.g. path.stacks.1.residual.0.conv2.weight)" in error_line(capsys)
    )


def test_non_checkpoint_file_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    code, _ = convert(tmp_path, tmp_path / "notes.txt", "bearpaw", "mpii/hg2_baseline")
    assert code == 2 and "is not a PyTorch checkpoint" in error_line(capsys)
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_weights.pth")
    code, _ = convert(tmp_path, tmp_path / "no_weights.pth", "bearpaw", "mpii/hg2_baseline")
    assert code == 2 and "holds no state_dict: its entries are epoch, lr" in error_line(capsys)


def test_file_with_python_objects_needs_unsafe_unpickle(tmp_path, images, capsys) -> None:
    model = trained_like(build_model({"name": "hourglass", "num_stacks": 2, **SMALL}), images)
    checkpoint = {"state_dict": their_state(model, bearpaw_name), "args": argparse.Namespace(stacks=2)}
    torch.save(checkpoint, tmp_path / "pickled.pth")
    code, _ = convert(tmp_path, tmp_path / "pickled.pth", "bearpaw", "mpii/hg2_baseline", *SMALL_SETS)
    err = error_line(capsys)
    assert code == 2 and "argparse.Namespace" in err and "--unsafe-unpickle" in err
    sets = [*SMALL_SETS, "--unsafe-unpickle"]
    code, out = convert(tmp_path, tmp_path / "pickled.pth", "bearpaw", "mpii/hg2_baseline", *sets)
    assert code == 0
    assert_same_heatmaps(model, out, images)


# ---------------------------------------------------------------------------------------- init weights
def test_load_init_weights_strips_prefixes_and_refuses_other_models(tmp_path, images) -> None:
    model = trained_like(build_model({"name": "hourglass", "num_stacks": 2, **SMALL}), images)
    wrapped = {"_orig_mod.module." + k: v for k, v in model.state_dict().items()}
    save_checkpoint(
        {"kind": "deploy", "model": wrapped, "model_config": model.config_section()}, tmp_path / "d.pth"
    )
    fresh = build_model({"name": "hourglass", "num_stacks": 2, **SMALL})
    load_init_weights(fresh, tmp_path / "d.pth")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))

    other = build_model({"name": "hourglass", "num_stacks": 3, **SMALL})
    with pytest.raises(CheckpointError, match="does not fit the model built from the config") as caught:
        load_init_weights(other, tmp_path / "d.pth")
    assert "\n" not in str(caught.value) and "num_stacks=2" in str(caught.value)

    torch.save(their_state(model, bearpaw_name), tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="tools/convert_checkpoint.py"):
        load_init_weights(fresh, tmp_path / "foreign.pth")


def test_out_never_replaces_src_and_replaces_a_file_only_with_overwrite(tmp_path, capsys) -> None:
    source = tmp_path / "hg2.pth"
    torch.save(
        their_state(build_model({"name": "hourglass", "num_stacks": 2, **SMALL}), bearpaw_name), source
    )
    before = source.read_bytes()
    args = ["--from", "fpd", "--config", "mpii/hg2_baseline", *SMALL_SETS]
    assert main([str(source), str(source), *args, "--overwrite"]) == 2
    assert f"would replace the input file {source}" in error_line(capsys)
    assert source.read_bytes() == before
    out = tmp_path / "converted.pth"
    out.write_text("an earlier result")
    assert convert(tmp_path, source, "fpd", "mpii/hg2_baseline", *SMALL_SETS)[0] == 2
    assert f"{out} already exists" in error_line(capsys) and out.read_text() == "an earlier result"
    assert convert(tmp_path, source, "fpd", "mpii/hg2_baseline", *SMALL_SETS, "--overwrite")[0] == 0
    assert load_checkpoint(out)["kind"] == "converted"


def test_a_source_with_nan_weights_is_refused(tmp_path, capsys) -> None:
    state = their_state(build_model({"name": "hourglass", "num_stacks": 2, **SMALL}), bearpaw_name)
    name = next(key for key, value in state.items() if value.is_floating_point())
    state[name].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    code, out = convert(tmp_path, tmp_path / "nan.pth", "fpd", "mpii/hg2_baseline", *SMALL_SETS)
    assert code == 2 and f"weight '{name}' holds 1 non-finite value" in error_line(capsys)
    assert not out.exists()
