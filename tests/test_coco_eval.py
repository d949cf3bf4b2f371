"""COCO evaluation: the project's path equals pycocotools, rescoring and OKS-NMS follow HRNet."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from datasets.coco_eval import (
    COCO_METRIC_NAMES,
    coco_keypoint_eval,
    evaluate_results_file,
    format_coco_table,
    load_coco,
    nms_results,
    oks_nms,
    pairwise_oks,
    rescore,
    rescore_and_nms,
)
from datasets.keypoints import COCO_OKS_SIGMAS
from utils.errors import DataError


@pytest.fixture(scope="module")
def sample_files(coco_data: Path) -> tuple[Path, Path]:
    """(results file, annotation file) of the real COCO sample."""
    annotations = coco_data / "annotations"
    return annotations / "sample_keypoint_results.json", annotations / "person_keypoints_sample.json"


def gt_as_results(ann_path: Path) -> list[dict]:
    """Every person with keypoints of an annotation file, as a COCO result with score 1."""
    document = json.loads(ann_path.read_text())
    return [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in document["annotations"]
        if a.get("num_keypoints", 0) > 0
    ]


def test_results_file_matches_pycocotools(sample_files):
    results_path, ann_path = sample_files
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_path))
        coco_dt = coco_gt.loadRes(str(results_path))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours = evaluate_results_file(results_path, ann_path)
    assert list(ours) == list(COCO_METRIC_NAMES)
    assert [ours[name] for name in COCO_METRIC_NAMES] == pytest.approx(list(evaluator.stats), abs=1e-12)
    assert 0.5 < ours["AP"] < 1.0  # real predictions: good but not perfect


def test_ground_truth_as_results_gives_ap_one(sample_files, tmp_path):
    _, ann_path = sample_files
    results_path = tmp_path / "gt.json"
    results_path.write_text(json.dumps(gt_as_results(ann_path)))
    stats = evaluate_results_file(results_path, ann_path)
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)


def test_nms_removes_duplicates_in_a_results_file(sample_files, tmp_path):
    _, ann_path = sample_files
    results = gt_as_results(ann_path)
    rng = np.random.default_rng(0)
    duplicates = []
    for entry in results:
        keypoints = np.asarray(entry["keypoints"], dtype=np.float64).reshape(-1, 3)
        keypoints[:, :2] += rng.normal(0.0, 0.5, size=(len(keypoints), 2)) * (keypoints[:, 2:] > 0)
        duplicates.append({**entry, "keypoints": keypoints.reshape(-1).tolist(), "score": 0.6})
    results_path = tmp_path / "with_duplicates.json"
    results_path.write_text(json.dumps(results + duplicates))
    kept = nms_results(results + duplicates)
    assert len(kept) == len(results)
    assert [entry["keypoints"] for entry in kept] == [
        entry["keypoints"] for entry in results
    ]  # box score 1 wins
    assert evaluate_results_file(results_path, ann_path, nms=True)["AP"] == pytest.approx(1.0)


def test_rescore_follows_hrnet():
    keypoints = np.zeros((3, 4, 3))
    keypoints[0, :, 2] = [0.9, 0.5, 0.1, 0.2]  # only 0.9 and 0.5 are above 0.2
    keypoints[1, :, 2] = [0.1, 0.0, 0.2, 0.15]  # none above: score 0
    keypoints[2, :, 2] = 1.0
    scores = rescore(keypoints, np.array([0.5, 1.0, 0.8]), keypoint_score_threshold=0.2)
    assert scores == pytest.approx([0.5 * 0.7, 0.0, 0.8])


def hrnet_oks_iou(g, d, a_g, a_d, sigmas):
    """HRNet's lib/nms/nms.py oks_iou (in_vis_thre=None), transcribed as the reference."""
    variances = (sigmas * 2) ** 2
    xg, yg = g[0::3], g[1::3]
    ious = np.zeros(d.shape[0])
    for n_d in range(d.shape[0]):
        dx, dy = d[n_d, 0::3] - xg, d[n_d, 1::3] - yg
        e = (dx**2 + dy**2) / variances / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
        ious[n_d] = np.sum(np.exp(-e)) / e.shape[0]
    return ious


def test_pairwise_oks_equals_hrnet_oks_iou():
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(0, 200, size=(6, 17, 3))
    keypoints[3] = keypoints[2] + rng.normal(0, 2, size=(17, 3))
    areas = rng.uniform(2000, 20000, size=6)
    ours = pairwise_oks(keypoints, areas)
    flat = keypoints.reshape(6, -1)
    for i in range(6):
        assert ours[i] == pytest.approx(hrnet_oks_iou(flat[i], flat, areas[i], areas, COCO_OKS_SIGMAS))
    assert ours[2, 3] > 0.9 and ours[0, 1] < 0.1


def test_oks_nms_keeps_distinct_and_drops_overlapping():
    rng = np.random.default_rng(2)
    person_a = np.concatenate([rng.uniform(100, 200, (17, 2)), np.ones((17, 1))], axis=1)
    person_b = person_a + [300.0, 0.0, 0.0]
    near_a = person_a + [1.0, -1.0, 0.0]
    keypoints = np.stack([near_a, person_a, person_b])
    keep = oks_nms(keypoints, np.array([0.7, 0.9, 0.8]), np.full(3, 10000.0), threshold=0.9)
    assert keep.tolist() == [1, 2]  # highest score first; the near copy of A goes
    keep, scores = rescore_and_nms(
        np.array([7, 7, 8]), keypoints, np.array([0.7, 0.9, 0.8]), np.full(3, 10000.0)
    )
    assert keep.tolist() == [1, 2] and scores == pytest.approx([0.7, 0.9, 0.8])
    keep, _ = rescore_and_nms(np.array([7, 8, 9]), keypoints, np.ones(3), np.full(3, 10000.0))
    assert keep.tolist() == [0, 1, 2]  # NMS never crosses images


def test_eval_without_results_and_restricted_images(sample_files):
    _, ann_path = sample_files
    coco = load_coco(ann_path)
    empty = coco_keypoint_eval(coco, [])
    assert empty["AP"] == 0.0 and empty["AR"] == 0.0
    results = [r for r in gt_as_results(ann_path) if r["image_id"] == 785]
    assert coco_keypoint_eval(coco, results)["AP"] < 0.5  # the other images' persons are missed
    assert coco_keypoint_eval(coco, results, image_ids=[785])["AP"] == pytest.approx(1.0)


def test_verbose_shows_pycocotools_output(sample_files, capsys):
    results_path, ann_path = sample_files
    evaluate_results_file(results_path, ann_path)
    assert capsys.readouterr().out == ""
    evaluate_results_file(results_path, ann_path, verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_format_coco_table():
    stats = dict(zip(COCO_METRIC_NAMES, np.linspace(0.5, 0.95, 10)))
    text = format_coco_table(stats, title="COCO val2017")
    lines = text.splitlines()
    assert lines[0] == "COCO val2017"
    assert lines[1].split("|")[1].strip() == "AP" and lines[1].count("|") == 11
    assert lines[3].split("|")[1].strip() == "50.0" and lines[3].split("|")[10].strip() == "95.0"


def test_bad_files_raise_data_error(sample_files, tmp_path):
    results_path, ann_path = sample_files
    with pytest.raises(DataError, match="missing.json"):
        evaluate_results_file(tmp_path / "missing.json", ann_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataError, match="COCO keypoint results format"):
        evaluate_results_file(bad, ann_path)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(
        json.dumps([{"image_id": 123456789, "category_id": 1, "keypoints": [0] * 51, "score": 1}])
    )
    with pytest.raises(DataError, match="123456789"):
        evaluate_results_file(foreign, ann_path)


def write_results(tmp_path: Path, results: list, name: str = "results.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(results))
    return path


def real_results(sample_files) -> list[dict]:
    return json.loads(sample_files[0].read_text())


@pytest.mark.parametrize("count", [34, 50, 54])
def test_wrong_keypoint_count_names_the_entry_and_the_expected_count(sample_files, tmp_path, count):
    results = real_results(sample_files)
    values = results[3]["keypoints"]
    results[3]["keypoints"] = (values * 2)[:count]
    path = write_results(tmp_path, results)
    before = path.read_bytes()
    with pytest.raises(DataError) as caught:
        evaluate_results_file(path, sample_files[1])
    message = str(caught.value)
    assert str(path) in message and "entry 3 (image_id" in message
    assert f"{count} keypoint values" in message and "17 keypoints" in message and "expected 51" in message
    assert path.read_bytes() == before


def test_entry_without_score_is_named(sample_files, tmp_path):
    results = real_results(sample_files)
    del results[5]["score"]
    path = write_results(tmp_path, results)
    with pytest.raises(DataError, match=rf"{path}: entry 5 has no 'score'"):
        evaluate_results_file(path, sample_files[1])
    assert evaluate_results_file(path, sample_files[1], nms=True)["AP"] > 0.5  # --nms: box score 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"keypoints": [float("nan")] * 51}, "NaN or infinite"),
        ({"keypoints": "1 2 3"}, "list of numbers"),
        ({"score": None}, "score must be a finite number"),
        ({"category_id": 2}, "category_id 2 is not a keypoint category"),
        ({"image_id": [785]}, "image_id must be an integer id"),
        ({"image_id": 123456789}, "names image_id 123456789, which .* does not have"),
    ],
)
def test_malformed_entries_are_named(sample_files, tmp_path, change, expected):
    results = real_results(sample_files)
    results[2].update(change)
    path = write_results(tmp_path, results)
    with pytest.raises(DataError, match=rf"{path}.*entry 2.*{expected}"):
        evaluate_results_file(path, sample_files[1])


def test_empty_results_file_is_an_error_not_ap_zero(sample_files, tmp_path):
    path = write_results(tmp_path, [])
    with pytest.raises(DataError, match=rf"results file {path} holds no results"):
        evaluate_results_file(path, sample_files[1])


def test_unreadable_annotation_and_results_files(sample_files, tmp_path):
    results_path, ann_path = sample_files
    with pytest.raises(DataError, match=rf"{results_path} is not a COCO annotation file.*--results"):
        evaluate_results_file(results_path, results_path)  # the two files swapped
    no_keypoints = tmp_path / "instances.json"
    document = json.loads(ann_path.read_text())
    document["categories"] = [{"id": 1, "name": "person", "supercategory": "person"}]
    no_keypoints.write_text(json.dumps(document))
    with pytest.raises(DataError, match="defines no keypoint category"):
        evaluate_results_file(results_path, no_keypoints)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(DataError, match=rf"results file {binary} is not a JSON text file"):
        evaluate_results_file(binary, ann_path)
    with pytest.raises(DataError, match=rf"COCO annotation file {binary} is not a JSON text file"):
        evaluate_results_file(results_path, binary)
    with pytest.raises(DataError, match=rf"results file {tmp_path} is a folder"):
        evaluate_results_file(tmp_path, ann_path)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(DataError, match=rf"COCO annotation file {broken} is not valid JSON"):
        evaluate_results_file(results_path, broken)
    with pytest.raises(DataError, match=rf"COCO annotation file not found: {tmp_path / 'nope.json'}"):
        evaluate_results_file(results_path, tmp_path / "nope.json")
    (tmp_path / "zero.json").write_bytes(b"")
    with pytest.raises(DataError, match=r"results file .*zero.json is empty \(0 bytes\)"):
        evaluate_results_file(tmp_path / "zero.json", ann_path)


def test_bad_results_on_the_command_line_are_one_paragraph(sample_files, tmp_path, capsys):
    from engine.cli import evaluate_main, run_cli

    results = real_results(sample_files)
    results[0]["keypoints"] = results[0]["keypoints"][:34]
    path = write_results(tmp_path, results)
    for args in (
        ["--results", str(path), "--ann", str(sample_files[1])],
        ["--results", str(write_results(tmp_path, [], "empty.json")), "--ann", str(sample_files[1])],
        ["--results", str(tmp_path / "missing.json"), "--ann", str(sample_files[1])],
        ["--results", str(sample_files[0]), "--ann", str(tmp_path / "missing.json")],
    ):
        assert run_cli(evaluate_main, args) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert "Traceback" not in captured.err and captured.out == ""
