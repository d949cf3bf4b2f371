"""evaluate.py's predictions-file modes on the real samples: PCKh from a .mat, COCO AP from a results .json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from datasets.coco_eval import evaluate_results_file
from datasets.pckh import TABLE_KEYS, evaluate_prediction_file

REPO = Path(__file__).resolve().parents[1]


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pckh_of_a_predictions_file(mpii_data: Path) -> None:
    mat = mpii_data / "annot" / "detections_our_format.mat"  # holds pos_pred_src next to the ground truth
    table = last_json(run_evaluate("--preds", str(mat), "--gt", str(mat), "--json"))
    assert list(table) == list(TABLE_KEYS)
    assert table == pytest.approx(evaluate_prediction_file(mat, mat))
    assert table["Mean"] == pytest.approx(82.337, abs=5e-4)  # the published table of these predictions
    strict = last_json(run_evaluate("--preds", str(mat), "--gt", str(mat), "--threshold", "0.1", "--json"))
    assert strict["Mean"] == pytest.approx(table["Mean@0.1"])


def test_coco_ap_of_a_results_file(coco_data: Path) -> None:
    results = coco_data / "annotations" / "sample_keypoint_results.json"
    ann = coco_data / "annotations" / "person_keypoints_sample.json"
    printed = run_evaluate("--results", str(results), "--ann", str(ann), "--json")
    stats = last_json(printed)
    assert list(stats) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    assert stats == pytest.approx(evaluate_results_file(results, ann))
    assert "| AP | AP50 | AP75 |" in printed.stdout  # the printed table precedes the JSON line
    assert f"| {100 * stats['AP']:.1f} | {100 * stats['AP50']:.1f} |" in printed.stdout


def test_modes_must_come_in_pairs() -> None:
    result = run_evaluate("--preds", "x.mat")
    assert result.returncode == 2 and "--preds and --gt go together" in result.stderr
    result = run_evaluate()
    assert result.returncode == 2 and "--checkpoint" in result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.deploy_helpers import tiny_okdhp_run

    return tiny_okdhp_run(tmp_path_factory)


def evaluate_in_process(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    from engine.cli import evaluate_main, run_cli

    code = run_cli(evaluate_main, [str(a) for a in args])
    return code, capsys.readouterr().err


def test_nan_weights_are_refused_not_scored(run_dir: Path, tmp_path: Path, capsys) -> None:
    from tests.deploy_helpers import with_nan_weight
    from tests.test_export import assert_one_paragraph

    checkpoint, weight = with_nan_weight(run_dir / "deploy.pth", tmp_path / "deploy.pth")
    code, stderr = evaluate_in_process(capsys, "--checkpoint", checkpoint)
    assert_one_paragraph(code, stderr, f"checkpoint {checkpoint}: weight '{weight}'", "NaN")
    assert not (tmp_path / "eval_deploy").exists()


def test_an_earlier_evaluation_is_replaced_only_with_overwrite(run_dir: Path, tmp_path: Path, capsys) -> None:
    from tests.test_export import assert_one_paragraph

    out = tmp_path / "eval"
    args = ["--checkpoint", run_dir / "deploy.pth", "--output-dir", out, "--set", "test.flip=false"]
    assert evaluate_in_process(capsys, *args)[0] == 0
    tables = (out / "tables.json").read_text()
    code, stderr = evaluate_in_process(capsys, *args)
    assert_one_paragraph(code, stderr, f"{out / 'tables.json'} already exists", "--overwrite")
    assert evaluate_in_process(capsys, *args, "--overwrite")[0] == 0
    assert (out / "tables.json").read_text() == tables


def test_an_odkd_yaml_tests_on_detector_boxes_and_names_the_missing_file(
    coco_data: Path, tmp_path: Path, capsys
) -> None:
    """The ODKD experiments' protocol is detector boxes (HRNet's 56.4-AP file); without that file, one
    paragraph names it and where to get it; ground-truth boxes only on request (--set data.use_gt_boxes=true)."""
    from tests.test_export import assert_one_paragraph
    from tests.test_test_dev import tiny_odkd_student

    data = {"root": str(coco_data), "ann_file": "annotations/person_keypoints_sample.json"}
    checkpoint, config = tiny_odkd_student(tmp_path, data)
    args = ["--checkpoint", checkpoint, "--config", config, "--no-flip", "--json"]
    code, stderr = evaluate_in_process(capsys, *args, "--output-dir", tmp_path / "missing")
    missing = coco_data / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    assert_one_paragraph(
        code,
        stderr,
        f"COCO detection file not found: {missing}",
        "(a 56.4-AP person detector)",
        "README of https://github.com/leoxiaobin/deep-high-resolution-net.pytorch",
        "--set data.use_gt_boxes=true",
    )
    assert not (tmp_path / "missing").exists()

    from engine.cli import evaluate_main, run_cli

    detections = coco_data / "person_detection_results" / "sample_detections.json"  # 118 real detector boxes
    for extra, persons in (([f"data.detection_file={detections}"], 118), (["data.use_gt_boxes=true"], 12)):
        out = tmp_path / extra[0].split("=")[0]
        settings = [item for value in extra for item in ("--set", value)]
        assert run_cli(evaluate_main, [str(a) for a in (*args, "--output-dir", out, *settings)]) == 0
        printed = capsys.readouterr().out
        boxes = "detector boxes, score >= 0" if persons == 118 else "ground-truth boxes"
        assert f"COCO val2017 keypoint AP ({boxes}) ({persons} persons" in printed, printed
