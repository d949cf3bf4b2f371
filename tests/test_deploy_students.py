"""benchmarks/deploy_speed.py --students: the students' table on one tiny setting, its structure and exact facts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.deploy_speed import main
from benchmarks.students import SETUPS, STUDENT_NAMES, TABLE_HEAD, scaled_size
from engine.cli import run_cli
from engine.experiment.catalogue import resolve_config_path
from engine.experiment.config import load_config
from models.registry import build_model
from tools.model_summary import summarize
from utils.flops import count_params

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The MPII MobileNetV2 student at a quarter of its input (64x64), one round, kept ONNX files."""
    folder = tmp_path_factory.mktemp("students")
    argv = [
        "--students", "mobilenet_v2", "--input-scale", "0.25", "--rounds", "1", "--warmup", "0",
        "--threads", "1", "--calibration-count", "2", "--json", str(folder / "students.json"),
        "--keep-onnx", str(folder / "onnx"),
    ]  # fmt: skip
    return {"argv": argv, "folder": folder}


@pytest.mark.slow  # exports and quantizes one small network (about 5 s)
def test_students_table_structure_and_exact_facts(tiny_table: dict, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(main, tiny_table["argv"]) == 0
    stdout = capsys.readouterr().out
    folder: Path = tiny_table["folder"]
    document = json.loads((folder / "students.json").read_text())

    # structure: the header names the command, machine, load and versions; one table line per setup
    header = document["header"]
    assert {
        "cpu",
        "cores",
        "torch",
        "onnxruntime",
        "onnx",
        "numpy",
        "python",
        "load_before",
        "load_after",
    } <= set(header)
    assert header["command"].startswith("python benchmarks/deploy_speed.py --students mobilenet_v2")
    assert "load average:" in stdout and f"onnxruntime {header['onnxruntime']}" in stdout
    lines = stdout.splitlines()
    start = lines.index(TABLE_HEAD)
    rows = lines[start + 2 : start + 2 + len(SETUPS)]
    assert [row.split(" | ")[5] for row in rows] == list(SETUPS)
    assert rows[0].startswith("| MobileNetV2 (MobilePose, MPII) (mpii/mobilenet_v2_okdhp, branch0) | 64x64 |")
    (student,) = document["students"]
    assert student["name"] == "mobilenet_v2" and student["input_size"] == [64, 64]
    assert list(student["setups"]) == list(SETUPS)

    # exact facts: parameters and MACs from independent counts of the same deployed network
    config = load_config(resolve_config_path("mpii/mobilenet_v2_okdhp"))
    deployed = build_model(config.model).deploy_section("branch0")
    assert student["section"] == deployed
    assert student["params"] == count_params(build_model(deployed))
    summary = summarize(deployed, 64, 64)  # tools/model_summary.py: per part, on the meta device
    assert student["params"] == summary["params"] and student["macs"] == summary["macs"] == 130_354_688
    assert f"| {student['params']:,} | {student['macs'] / 1e9:.2f} |" in rows[0]
    for precision, suffix in (("fp32", ""), ("int8", "_int8")):
        assert (
            student["onnx_bytes"][precision]
            == (folder / "onnx" / f"mobilenet_v2{suffix}.onnx").stat().st_size
        )
    assert (
        student["onnx_bytes"]["int8"] < student["onnx_bytes"]["fp32"] / 2
    )  # int8 weights: a quarter, plus scales

    setups = student["setups"]
    assert setups[SETUPS[0]]["max_abs_difference"] == 0.0  # the reference itself
    assert setups["onnxruntime fp32"]["max_abs_difference"] < 1e-3
    int8 = setups["onnxruntime int8"]["max_abs_difference"]
    assert math.isfinite(int8) and int8 > 0.0  # reported, and quantization did change the heatmaps
    for setup in setups.values():
        assert len(setup["latency_rounds_ms"]) == 1 and setup["latency_ms"] > 0 and setup["throughput"] > 0


def test_scaled_sizes_keep_the_paper_sizes_and_stay_runnable() -> None:
    assert [scaled_size(s, 1.0) for s in (256, 192)] == [256, 192]
    assert [scaled_size(s, 0.25) for s in (256, 192)] == [64, 64]
    assert scaled_size(192, 0.5) == 128 and scaled_size(256, 0.01) == 64


def test_an_unknown_student_is_one_paragraph(capsys: pytest.CaptureFixture) -> None:
    assert run_cli(main, ["--students", "hg3"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --students hg3: no such student") and error.count("\n") == 1
    assert all(name in error for name in STUDENT_NAMES)


def test_an_existing_json_is_kept_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    existing = tmp_path / "students.json"
    existing.write_text("{}")
    assert run_cli(main, ["--students", "hg2", "--json", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_text() == "{}"
