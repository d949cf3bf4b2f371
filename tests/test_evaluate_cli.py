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
