"""PCKh (HRNet protocol) on the real 2958-person MPII validation ground truth, against a plain-loop reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io

from datasets.pckh import (
    TABLE_KEYS,
    compute_pckh,
    evaluate_prediction_file,
    format_pckh_table,
    load_gt_mat,
    load_pred_mat,
    save_gt_mat,
    save_pred_mat,
)
from utils.errors import DataError

# MPII joint indices, written out independently of datasets.pckh.
PAIRS = {
    "Head": (9, 9),
    "Shoulder": (12, 13),
    "Elbow": (11, 14),
    "Wrist": (10, 15),
    "Hip": (2, 3),
    "Knee": (1, 4),
    "Ankle": (0, 5),
}


@pytest.fixture(scope="module")
def detections(mpii_data):
    """The real validation ground truth + an older method's predictions, as stored (MATLAB layout)."""
    path = mpii_data / "annot" / "detections_our_format.mat"
    return path, scipy.io.loadmat(str(path))


def reference_table(pred, gt, missing, headboxes, threshold=0.5):
    """Straightforward PCKh in MATLAB layout: pred/gt (16, 2, N), missing (16, N), headboxes (2, 2, N)."""
    counts, hits, hits_01 = [0] * 16, [0] * 16, [0] * 16
    for i in range(gt.shape[2]):
        head = 0.6 * math.hypot(
            headboxes[1, 0, i] - headboxes[0, 0, i], headboxes[1, 1, i] - headboxes[0, 1, i]
        )
        for j in range(16):
            if missing[j, i]:
                continue
            distance = math.hypot(pred[j, 0, i] - gt[j, 0, i], pred[j, 1, i] - gt[j, 1, i])
            counts[j] += 1
            hits[j] += distance / head <= threshold
            hits_01[j] += distance / head <= 0.1
    rate = [100.0 * h / c for h, c in zip(hits, counts)]
    rate_01 = [100.0 * h / c for h, c in zip(hits_01, counts)]
    table = {name: (rate[a] + rate[b]) / 2 for name, (a, b) in PAIRS.items()}
    fourteen = [j for j in range(16) if j not in (6, 7)]
    total = sum(counts[j] for j in fourteen)
    table["Mean"] = sum(rate[j] * counts[j] for j in fourteen) / total
    table["Mean@0.1"] = sum(rate_01[j] * counts[j] for j in fourteen) / total
    table["MeanUnweighted"] = sum(rate[j] for j in fourteen) / 14
    return table, rate


def to_rows(matlab_joints):
    """(16, 2, N) MATLAB layout -> (N, 16, 2)."""
    return np.transpose(matlab_joints, (2, 0, 1))


def assert_tables_equal(table, expected):
    assert set(table) == set(TABLE_KEYS)
    for key in TABLE_KEYS:
        assert table[key] == pytest.approx(expected[key], abs=1e-9), key


def test_ground_truth_as_prediction_scores_100_on_every_joint(detections):
    path, content = detections
    gt = load_gt_mat(path)
    assert len(gt) == 2958
    result = compute_pckh(to_rows(content["pos_gt_src"]), gt)
    assert all(value == 100.0 for value in result.table.values())
    counted = result.counts > 0
    assert counted.all() and np.all(result.per_joint[counted] == 100.0)
    assert set(result.per_joint_table()) == {"rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
                                              "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri"}  # fmt: skip


@pytest.mark.parametrize("offset", [(15.0, 20.0), (-9.0, 12.0)])
def test_known_offset_gives_the_computable_result(detections, offset):
    path, content = detections
    gt_joints = content["pos_gt_src"]
    moved = gt_joints + np.array(offset)[None, :, None]
    expected, expected_rates = reference_table(
        moved, gt_joints, content["jnt_missing"], content["headboxes_src"]
    )
    result = compute_pckh(to_rows(moved), load_gt_mat(path))
    assert_tables_equal(result.table, expected)
    np.testing.assert_allclose(result.per_joint, expected_rates, atol=1e-9)
    assert 5.0 < expected["Mean"] < 100.0  # the offset really splits the persons


def test_real_predictions_match_a_loop_reference(detections):
    path, content = detections
    expected, _ = reference_table(
        content["pos_pred_src"], content["pos_gt_src"], content["jnt_missing"], content["headboxes_src"]
    )
    table = evaluate_prediction_file(path, path)  # the file's pos_pred_src against its own ground truth
    assert_tables_equal(table, expected)
    # Values of this published method's table; Mean@0.1 is the true 0.1 threshold, not HRNet's 0.11.
    assert table["Mean"] == pytest.approx(82.337, abs=1e-3)
    assert table["Mean@0.1"] < table["Mean"]


def test_threshold_argument_and_mean_at_0_1_use_their_own_thresholds(detections):
    path, content = detections
    args = content["pos_pred_src"], content["pos_gt_src"], content["jnt_missing"], content["headboxes_src"]
    expected_02, _ = reference_table(*args, threshold=0.2)
    table = evaluate_prediction_file(path, path, threshold=0.2)
    assert_tables_equal(table, expected_02)


def test_pred_mat_round_trip_and_evaluation(detections, tmp_path):
    path, content = detections
    preds_zero_based = to_rows(content["pos_pred_src"]) - 1.0
    save_pred_mat(tmp_path / "pred.mat", preds_zero_based)
    stored = scipy.io.loadmat(str(tmp_path / "pred.mat"))["preds"]
    assert stored.shape == (2958, 16, 2)
    np.testing.assert_allclose(stored, to_rows(content["pos_pred_src"]))  # HRNet layout, 1-based
    np.testing.assert_allclose(load_pred_mat(tmp_path / "pred.mat"), stored)
    assert evaluate_prediction_file(tmp_path / "pred.mat", path) == evaluate_prediction_file(path, path)


def test_format_table_prints_every_column():
    table = dict.fromkeys(TABLE_KEYS, 12.3456)
    text = format_pckh_table(table, title="my run")
    lines = text.splitlines()
    assert lines[0] == "my run"
    for key in TABLE_KEYS:
        assert key in lines[1]
    assert lines[3].count("12.346") == len(TABLE_KEYS)


def test_gt_file_round_trip_and_bad_files(tmp_path, detections):
    path, _ = detections
    gt = load_gt_mat(path)
    boxes = np.stack([np.zeros((10, 2)), np.full((10, 2), 10.0)], axis=1)
    save_gt_mat(tmp_path / "gt.mat", gt.joints[:10], gt.annotated[:10], boxes)
    again = load_gt_mat(tmp_path / "gt.mat")
    np.testing.assert_allclose(again.joints, gt.joints[:10])
    np.testing.assert_array_equal(again.annotated, gt.annotated[:10])
    np.testing.assert_allclose(again.head_sizes, 0.6 * math.sqrt(200.0))

    scipy.io.savemat(str(tmp_path / "partial.mat"), {"jnt_missing": np.zeros((16, 3))})
    with pytest.raises(DataError, match="pos_gt_src"):
        load_gt_mat(tmp_path / "partial.mat")
    with pytest.raises(DataError, match="absent.mat"):
        load_gt_mat(tmp_path / "absent.mat")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="junk.mat"):
        load_gt_mat(tmp_path / "junk.mat")
    with pytest.raises(DataError, match="persons"):
        evaluate_prediction_file(path, tmp_path / "gt.mat")


def corrupted_copy(tmp_path, content, **fields):
    """The real ground truth with some fields replaced, written to tmp_path (the shared file is never touched)."""
    path = tmp_path / "gt_valid.mat"
    clean = {key: value for key, value in content.items() if not key.startswith("__")}
    scipy.io.savemat(str(path), {**clean, **fields})
    return path


def load_and_keep(path):
    """load_gt_mat's DataError message, checking the file was left as it was."""
    before = path.read_bytes()
    with pytest.raises(DataError) as caught:
        load_gt_mat(path)
    assert path.read_bytes() == before
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_head_boxes_of_another_number_of_persons(detections, tmp_path):
    _, content = detections
    path = corrupted_copy(tmp_path, content, headboxes_src=content["headboxes_src"][:, :, :-3])
    message = load_and_keep(path)
    assert "headboxes_src 2955" in message and "pos_gt_src 2958" in message


def test_head_boxes_of_another_shape(detections, tmp_path):
    _, content = detections
    path = corrupted_copy(tmp_path, content, headboxes_src=content["headboxes_src"].reshape(4, 1, -1))
    assert "field headboxes_src has shape (4, 1, 2958), expected (2,2,N)" in load_and_keep(path)


@pytest.mark.parametrize(
    ("person", "corner", "value", "what"),
    [
        (17, (1, 0), None, "zero or negative width or height"),  # x2 = x1: zero width
        (5, (1, 1), -1.0, "zero or negative width or height"),  # y2 far above y1: negative height
        (3, (0, 0), float("nan"), "NaN"),
    ],
)
def test_unusable_head_box_names_the_first_bad_person(detections, tmp_path, person, corner, value, what):
    _, content = detections
    boxes = content["headboxes_src"].copy()
    boxes[1, 0, person + 1] = boxes[0, 0, person + 1]  # a second, later bad box: the first is named
    if value is None:
        boxes[corner[0], corner[1], person] = boxes[0, 0, person]
    else:
        boxes[corner[0], corner[1], person] = value
    message = load_and_keep(corrupted_copy(tmp_path, content, headboxes_src=boxes))
    assert "field headboxes_src: 2 of 2958 head boxes" in message
    assert f"person {person} (MATLAB column {person + 1})" in message and what in message


def test_nan_annotated_joint_is_named(detections, tmp_path):
    _, content = detections
    joints = content["pos_gt_src"].copy()
    joints[12, 0, 40] = np.nan
    assert not content["jnt_missing"][12, 40]
    message = load_and_keep(corrupted_copy(tmp_path, content, pos_gt_src=joints))
    assert "1 annotated joints are NaN" in message and "person 40, joint rsho" in message


def test_nan_predictions_are_counted_and_refused(detections, tmp_path):
    path, content = detections
    preds = to_rows(content["pos_pred_src"]).copy()
    preds[7, [3, 9], 0] = np.nan
    preds[100, 15, 1] = np.inf
    pred_path = tmp_path / "pred.mat"
    scipy.io.savemat(str(pred_path), {"preds": preds})
    before = pred_path.read_bytes()
    with pytest.raises(DataError) as caught:
        evaluate_prediction_file(pred_path, path)
    message = str(caught.value)
    assert message.startswith(
        f"{pred_path}: 'preds' has NaN or infinite coordinates for 3 joints of 2 of 2958"
    )
    assert "first: person 7, joint lhip" in message
    assert pred_path.read_bytes() == before


def test_bad_files_on_the_command_line_are_one_paragraph(detections, tmp_path, capsys):
    from engine.cli import evaluate_main, run_cli

    path, content = detections
    boxes = content["headboxes_src"].copy()
    boxes[1, 1, 0] = boxes[0, 1, 0]
    bad_gt = corrupted_copy(tmp_path, content, headboxes_src=boxes)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    (tmp_path / "zero.mat").write_bytes(b"")
    cells = np.empty((2,), dtype=object)
    cells[:] = ["a", np.zeros(3)]
    scipy.io.savemat(str(tmp_path / "cells.mat"), {"preds": cells})
    cases = {  # (--preds, --gt): what the message says
        (path, bad_gt): "field headboxes_src: 1 of 2958 head boxes are unusable",
        (tmp_path / "missing.mat", path): "prediction file not found",
        (path, tmp_path / "missing.mat"): "PCKh ground-truth file not found",
        (tmp_path / "junk.mat", path): "cannot read prediction file",
        (path, tmp_path): "is a folder",
        (tmp_path / "zero.mat", path): "zero.mat is empty (0 bytes)",
        (tmp_path / "cells.mat", path): "field preds does not hold a numeric array",
    }
    for (preds, gt), expected in cases.items():
        assert run_cli(evaluate_main, ["--preds", str(preds), "--gt", str(gt)]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert expected in captured.err and "Traceback" not in captured.err and captured.out == ""
    with pytest.raises(SystemExit) as caught:
        evaluate_main(["--preds", str(path), "--gt", str(path), "--threshold", "0"])
    assert caught.value.code == 2 and "--threshold must be a positive number" in capsys.readouterr().err
