"""tools/export.py: ONNX files whose onnxruntime heatmaps equal PyTorch's on real crops, and a complete sidecar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets.keypoints import COCO, MPII
from datasets.registry import build_codec, build_dataset
from datasets.transforms import COLOR_MODES, normalize_image
from engine.cli import run_cli
from engine.convert.int8 import DEFAULT_MAX_DISPLACEMENT
from engine.convert.onnx import TOLERANCE, color_description
from engine.inference.onnx_network import SIDECAR_FORMAT, OnnxRuntimeNetwork
from models.registry import build_model
from tests.conftest import require_package
from tests.deploy_helpers import (
    coco_data_section,
    max_abs,
    mpii_data_section,
    random_deploy_checkpoint,
    tiny_okdhp_run,
    with_nan_weight,
)
from tools.export import main as export_main
from tools.standalone_pose import main as standalone_main
from utils.checkpoint import load_checkpoint, save_checkpoint

require_package("onnxruntime")

SIDECAR_KEYS = {
    "format", "onnx_file", "opset", "input", "output", "input_size", "heatmap_size", "stride", "sigma",
    "color", "skeleton", "joint_names", "flip_pairs", "limbs", "crop", "flip_test", "decode", "model",
    "source", "check", "precision", "quantization",
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_okdhp_run(tmp_path_factory)


def export(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the tool in this process; returns (exit code, stdout, stderr)."""
    code = run_cli(export_main, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def real_crops(data: dict, codec_source: dict | None = None) -> tuple[torch.Tensor, object]:
    """The validation crops of a real sample section, with the codec of ``codec_source`` (default: data's)."""
    codec = build_codec({**data, **(codec_source or {})})
    dataset = build_dataset(data, "valid", train=False, codec=codec)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))]), dataset


def onnx_heatmaps(path: Path, crops: torch.Tensor) -> np.ndarray:
    return OnnxRuntimeNetwork(path)(crops).final.numpy()


def assert_complete_sidecar(
    document: dict, skeleton, input_wh: tuple[int, int], heatmap_wh: tuple[int, int]
) -> None:
    assert set(document) == SIDECAR_KEYS
    assert document["format"] == SIDECAR_FORMAT
    assert document["input_size"] == {"width": input_wh[0], "height": input_wh[1]}
    assert document["heatmap_size"] == {"width": heatmap_wh[0], "height": heatmap_wh[1]}
    assert document["stride"] == [input_wh[0] / heatmap_wh[0], input_wh[1] / heatmap_wh[1]]
    assert document["joint_names"] == list(skeleton.joint_names)
    assert document["flip_pairs"] == [list(p) for p in skeleton.flip_pairs]
    assert document["limbs"] == [list(limb) for limb in skeleton.limbs]
    assert document["output"]["shape"][1:] == [skeleton.num_joints, heatmap_wh[1], heatmap_wh[0]]
    assert document["color"]["mean"] == [0.485, 0.456, 0.406] and document["color"]["std"] == [
        0.229,
        0.224,
        0.225,
    ]
    assert document["decode"]["quarter_offset"] == 0.25 and "argmax" in document["decode"]["rule"]
    assert document["check"]["max_abs_difference"] <= TOLERANCE
    assert document["precision"] == "fp32" and document["quantization"] is None
    assert {"enabled", "shift_heatmap", "rule"} <= set(document["flip_test"])


def test_deploy_checkpoint_exports_with_equal_heatmaps(run_dir, mpii_data, tmp_path, capsys) -> None:
    out = tmp_path / "hg.onnx"
    deploy = load_checkpoint(run_dir / "deploy.pth")
    source = tmp_path / "deploy.pth"  # as a run whose best head was branch1 writes it
    save_checkpoint({**deploy, "source_head": "branch1"}, source)
    code, stdout, stderr = export(capsys, source, "--onnx", out)
    assert code == 0, stderr
    assert "max |heatmap difference|" in stdout and "(hourglass, head branch1," in stdout
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["source"]["head"] == "branch1"  # the head it was extracted from, not its own only head
    assert_complete_sidecar(document, MPII, (64, 64), (16, 16))
    assert document["color"]["mode"] == "bgr_imagenet" and document["color"]["channel_order"] == "BGR"
    assert document["input"]["shape"] == [1, 3, 64, 64]
    assert document["model"]["name"] == "hourglass" and document["model"]["num_stacks"] == 2

    model = build_model(deploy["model_config"]).eval()
    model.load_state_dict(deploy["model"])
    crops, _ = real_crops(mpii_data_section(mpii_data))
    with torch.no_grad():
        expected = model(crops).final.numpy()
    assert max_abs(onnx_heatmaps(out, crops), expected) < TOLERANCE  # batch 1 file, run person by person
    assert np.abs(expected).max() > 0.05  # a trained network: the comparison is not of zeros


def test_branch_of_a_multi_branch_checkpoint_with_head(run_dir, mpii_data, tmp_path, capsys) -> None:
    out = tmp_path / "branch1.onnx"
    code, _, stderr = export(
        capsys, run_dir / "best.pth", "--onnx", out, "--head", "branch1", "--dynamic-batch"
    )
    assert code == 0, stderr
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["source"]["head"] == "branch1" and document["input"]["shape"][0] == "batch"

    state = load_checkpoint(run_dir / "best.pth")
    multi = build_model(state["config"]["model"]).eval()
    multi.load_state_dict(state["model"])
    crops, _ = real_crops(mpii_data_section(mpii_data))
    with torch.no_grad():
        expected = multi(crops).heads()["branch1"].numpy()
    assert max_abs(onnx_heatmaps(out, crops), expected) < TOLERANCE  # the whole batch at once


def test_hrnet_student_exports(coco_data, tmp_path, capsys) -> None:
    section = {"name": "hrnet", "num_joints": 17, "width": 8, "stage_modules": [1, 1, 1], "stage_blocks": 1}
    data = coco_data_section(coco_data)
    checkpoint = random_deploy_checkpoint(section, data, tmp_path / "hrnet.pth")
    out = tmp_path / "hrnet.onnx"
    code, _, stderr = export(
        capsys, checkpoint, "--onnx", out, "--image", coco_data / "images/val2017/000000000785.jpg"
    )
    assert code == 0, stderr
    document = json.loads(out.with_suffix(".json").read_text())
    assert_complete_sidecar(document, COCO, (48, 64), (12, 16))
    assert document["color"]["mode"] == "rgb_imagenet" and document["color"]["channel_order"] == "RGB"
    assert (
        document["check"]["max_abs_heatmap"] > 0.1
    )  # realistic heatmaps, not the near-zero of a fresh HRNet

    model = build_model(section).eval()
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    crops, _ = real_crops(data)
    with torch.no_grad():
        assert max_abs(onnx_heatmaps(out, crops), model(crops).final.numpy()) < TOLERANCE


@pytest.mark.slow  # a resnet18 encoder: the largest network of these tests
def test_mobile_network_exports_at_another_input_size(coco_data, tmp_path, capsys) -> None:
    section = {"name": "mobile", "num_joints": 17, "backbone": "resnet18", "deconv_channels": 16}
    data = coco_data_section(coco_data, input_size=[64, 64], heatmap_size=[16, 16], sigma=1.0)
    checkpoint = random_deploy_checkpoint(section, data, tmp_path / "mobile.pth")
    out = tmp_path / "mobile.onnx"
    code, _, stderr = export(capsys, checkpoint, "--onnx", out, "--input-size", "96", "64")
    assert code == 0, stderr
    document = json.loads(out.with_suffix(".json").read_text())
    assert_complete_sidecar(document, COCO, (64, 96), (16, 24))

    model = build_model(section).eval()
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    crops, _ = real_crops(data, {"input_size": [64, 96], "heatmap_size": [16, 24]})
    with torch.no_grad():
        assert max_abs(onnx_heatmaps(out, crops), model(crops).final.numpy()) < TOLERANCE


def assert_one_paragraph(code: int, stderr: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_multi_branch_checkpoint_without_head_lists_the_heads(run_dir, tmp_path, capsys) -> None:
    code, _, stderr = export(capsys, run_dir / "best.pth", "--onnx", tmp_path / "x.onnx")
    assert_one_paragraph(code, stderr, "multi-branch", "--head", "branch0, branch1")
    code, _, stderr = export(capsys, run_dir / "best.pth", "--onnx", tmp_path / "x.onnx", "--head", "branch7")
    assert_one_paragraph(code, stderr, "branch7", "branch0, branch1")
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnxruntime_says_what_to_install(run_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", tmp_path / "x.onnx")
    assert_one_paragraph(code, stderr, "'onnxruntime'", "requirements-export.txt")


def test_a_difference_above_the_tolerance_fails(run_dir, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("engine.convert.onnx.TOLERANCE", -1.0)  # any difference is too much
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", tmp_path / "x.onnx")
    assert_one_paragraph(code, stderr, "differ from PyTorch's", "no sidecar JSON")
    assert not (tmp_path / "x.json").exists()


def test_nan_weights_are_refused_before_any_file_is_written(run_dir, tmp_path, capsys) -> None:
    checkpoint, weight = with_nan_weight(run_dir / "deploy.pth", tmp_path / "diverged.pth")
    code, _, stderr = export(capsys, checkpoint, "--onnx", tmp_path / "x.onnx")
    assert_one_paragraph(code, stderr, f"checkpoint {checkpoint}: weight '{weight}'", "non-finite")
    assert not (tmp_path / "x.onnx").exists()


def test_output_paths_are_checked_before_the_export(run_dir, tmp_path, capsys) -> None:
    a_file = tmp_path / "models"
    a_file.write_text("keep")
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", a_file / "sub" / "x.onnx")
    assert_one_paragraph(code, stderr, f"cannot create the output folder {a_file / 'sub'}", "is a file")
    assert a_file.read_text() == "keep"

    (tmp_path / "x.json").write_text("an earlier sidecar")
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", tmp_path / "x.onnx")
    assert_one_paragraph(code, stderr, f"{tmp_path / 'x.json'} already exists", "--overwrite")
    assert (tmp_path / "x.json").read_text() == "an earlier sidecar"


def test_standalone_script_on_a_truncated_onnx_file(tmp_path, mpii_data, capsys) -> None:
    onnx = tmp_path / "cut.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch\x3a\xff\xff\x01")  # a model proto whose graph is cut off
    onnx.with_suffix(".json").write_text("{}")
    image = sorted((mpii_data / "images").glob("*.jpg"))[0]
    code = standalone_main([str(onnx), str(image)])
    assert_one_paragraph(code, capsys.readouterr().err, f"onnxruntime cannot load {onnx}", "export it again")


@pytest.mark.parametrize("color", COLOR_MODES)
def test_sidecar_colour_rule_reproduces_the_pipeline(color: str) -> None:
    """Another program applying the sidecar's formula gets exactly the network input of this pipeline."""
    rule = color_description(color)
    image = np.random.default_rng(0).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)  # BGR, as OpenCV reads
    planes = image[:, :, ::-1] if rule["channel_order"] == "RGB" else image
    mean, std = np.array(rule["mean"]), np.array(rule["std"])
    expected = ((planes / 255.0 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(normalize_image(image, color).numpy(), expected, atol=1e-5)


def quantized_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{weight name: (int8 values, scales)} of every per-channel quantized weight of a QDQ graph."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            values, scales = initializers[node.input[0]], initializers[node.input[1]]
            if values.dtype == np.int8 and scales.ndim == 1 and scales.size > 1:
                weights[node.input[0]] = (values, scales)
    return weights


@pytest.mark.slow  # quantizes a network (about 4 s)
def test_int8_export_writes_per_channel_weights_and_its_calibration(run_dir, tmp_path, capsys) -> None:
    """The tiny 1-epoch run's heatmaps are nearly flat (argmax jumps by a pixel under any noise): this test
    checks the int8 file and its sidecar with a bound of 2 heatmap pixels; the default bound (0.5) is held by
    the demo checkpoint in the next test."""
    out = tmp_path / "int8.onnx"
    code, stdout, stderr = export(
        capsys, run_dir / "deploy.pth", "--onnx", out, "--int8", "--calibration", run_dir / "config.yaml",
        "--int8-max-displacement", "2",
    )  # fmt: skip
    assert code == 0, stderr
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["precision"] == "int8"
    quantization = document["quantization"]
    assert quantization["format"] == "QDQ" and quantization["method"] == "minmax"
    calibration = quantization["calibration"]
    assert calibration["kind"] == "dataset" and calibration["source"] == str(run_dir / "config.yaml")
    assert calibration["count"] == calibration["available"] == 16  # the tiny run's 16 training persons
    check = quantization["check"]
    assert check["within_bound"] and check["mean_displacement"] <= check["bound"]["mean_displacement"] == 2
    assert check["crops"] == 32 and "mean keypoint displacement" in stdout

    # Per-channel int8 weights: every convolution's weight is stored as int8 with one scale per output channel,
    # and the stored values times their scales give back the fp32 weights to within half a step.
    # (A convolution followed directly by BatchNorm is exported with the BatchNorm folded in: its weight has
    # another name and other values; the others keep the checkpoint's names and values.)
    state = load_checkpoint(run_dir / "deploy.pth")["model"]
    convolutions = {k: v.numpy() for k, v in state.items() if k.endswith("weight") and v.ndim == 4}
    weights = quantized_weights(out)
    plain = {k: k.removesuffix("_quantized").removeprefix("model.") for k in weights}  # the wrapper's prefix
    named = {plain[k]: v for k, v in weights.items() if plain[k] in convolutions}
    assert len(weights) == len(convolutions) and len(named) >= 20  # every conv; 25 of 66 keep their weights
    for name, (values, scales) in named.items():
        fp32 = convolutions[name]
        assert values.shape == fp32.shape and scales.shape == (fp32.shape[0],)
        restored = values.astype(np.float64) * scales.reshape(-1, 1, 1, 1)
        assert np.all(np.abs(restored - fp32) <= scales.reshape(-1, 1, 1, 1) / 2 + 1e-7)


@pytest.mark.slow  # exports and calibrates a trained network (about 4 s, plus the shared run's 15 s once)
def test_int8_export_of_a_trained_network_holds_the_default_bound(short_mpii_run, tmp_path, capsys) -> None:
    """The default bound (0.5 heatmap px mean displacement) holds for a network with clear heatmaps.

    The checkpoint is the session's short MPII run (tests/short_runs.py, trained in every environment, CI
    included): ``mpii/hg2_baseline``'s recipe with a 1-stack, 32-feature hourglass, 8 epochs on 192 synthetic
    stick figures, at the CPU demo's sizes (64x64 input, 16x16 heatmaps, sigma 1). The demo's ``deploy.pth``
    (``bash start.sh demo``: a 2-stack branch of a 3-branch OKDHP, 10 epochs on 800 figures, PCKh 96) is the
    same kind of network trained longer, with sharper peaks; this one reaches PCKh about 76 with peaks near
    1, enough for argmax decoding to be stable under int8 noise. Calibration: 64 of its training persons
    (``--calibration`` its config.yaml), checked on them and their mirror images.
    """
    run = short_mpii_run["folder"]
    out = tmp_path / "trained_int8.onnx"
    code, _, stderr = export(
        capsys, run / "deploy.pth", "--onnx", out, "--int8", "--calibration", run / "config.yaml"
    )
    assert code == 0, stderr
    check = json.loads(out.with_suffix(".json").read_text())["quantization"]["check"]
    assert check["bound"]["mean_displacement"] == DEFAULT_MAX_DISPLACEMENT == 0.5
    assert check["within_bound"] and check["mean_displacement"] <= 0.5 and check["crops"] == 128
    assert check["max_abs_heatmap"] > 0.5  # clear peaks: the bound is checked where it means something
    assert len(quantized_weights(out)) > 0


@pytest.mark.slow  # quantizes a network twice (about 5 s)
def test_int8_bound_exceeded_writes_nothing_unless_accepted(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "int8.onnx"
    strict = ("--int8", "--calibration", run_dir / "config.yaml", "--int8-max-displacement", "1e-9")
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", out, *strict)
    assert_one_paragraph(code, stderr, "heatmap pixels on average", "bound 1e-09", f"{out} was not written")
    assert not out.exists() and not out.with_suffix(".json").exists()
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", out, *strict, "--accept-int8-error")
    assert code == 0, stderr
    assert json.loads(out.with_suffix(".json").read_text())["quantization"]["check"]["within_bound"] is False


def test_int8_with_an_empty_calibration_folder_is_one_paragraph(run_dir, tmp_path, capsys) -> None:
    empty = tmp_path / "no_photos"
    empty.mkdir()
    out = tmp_path / "int8.onnx"
    code, _, stderr = export(capsys, run_dir / "deploy.pth", "--onnx", out, "--int8", "--calibration", empty)
    assert_one_paragraph(code, stderr, f"--calibration {empty}", "holds no images")
    assert not out.exists() and not out.with_suffix(".json").exists()
