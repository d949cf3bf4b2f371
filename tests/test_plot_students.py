"""benchmarks/plot_students.py: the points it draws (paper values from the table files, ours from stored
evaluations) and the picture it writes, on a tiny students' table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.plot_students import main, points
from benchmarks.students import STUDENTS
from datasets.transforms import read_image
from engine.cli import run_cli
from engine.tables.runs import evaluation_key, run_folder, write_result

SETUPS = {"onnxruntime fp32": 120.0, "onnxruntime int8": 80.0}


def student(name: str) -> dict:
    known = next(s for s in STUDENTS if s.name == name)
    return {
        "name": name,
        "experiment": known.experiment,
        "accuracy_experiments": list(known.accuracy_experiments),
        "setups": {setup: {"latency_ms": ms * (2 if name == "hg4" else 1)} for setup, ms in SETUPS.items()},
    }


@pytest.fixture
def tiny(tmp_path: Path) -> dict:
    document = {
        "header": {"cpu": "test CPU", "threads": "1"},
        "students": [student(n) for n in ("hg4", "hrnet_w16", "mobilenet_v2_coco")],
    }
    path = tmp_path / "students.json"
    path.write_text(json.dumps(document))
    runs = tmp_path / "runs"
    folder = run_folder(runs, "mpii/hg4_okdhp")  # one finished run with a stored evaluation of its deploy.pth
    folder.mkdir(parents=True)
    (folder / "deploy.pth").write_bytes(b"weights")
    key = evaluation_key("deploy.pth", "mpii/hg4_okdhp", None, True, [])
    write_result(folder, key, folder / "deploy.pth", {"branch0": {"Mean": 88.25}}, {})
    return {"path": path, "document": document, "runs": runs, "tmp": tmp_path}


def test_points_are_the_papers_values_and_our_stored_one(tiny: dict) -> None:
    drawn, missing = points(tiny["document"], "onnxruntime fp32", tiny["runs"])
    found = {(p.student, p.kind, p.distilled): (p.value, p.latency_ms) for p in drawn}
    assert len(found) == len(drawn)  # hg4's rows are in two tables with the same values: drawn once
    assert found == {
        ("hg4", "paper", False): (89.2, 240.0),  # experiments/tables/okdhp_mpii.yaml and okdhp_cost.yaml
        ("hg4", "paper", True): (90.0, 240.0),
        ("hg4", "ours", True): (88.25, 240.0),  # the stored evaluation; the baseline has no run: not drawn
        ("hrnet_w16", "paper", False): (68.4, 120.0),  # odkd_students.yaml (AP x 100)
        ("hrnet_w16", "paper", True): (71.7, 120.0),
    }
    assert missing == ["mobilenet_v2_coco"]  # no paper value and no run: listed, not drawn
    assert {p.panel for p in drawn if p.student == "hg4"} != {
        p.panel for p in drawn if p.student == "hrnet_w16"
    }
    fastest, _ = points(tiny["document"], "fastest", tiny["runs"])
    assert {p.setup for p in fastest} == {"onnxruntime int8"} and {p.latency_ms for p in fastest} == {
        80.0,
        160.0,
    }


def test_the_picture_is_written_and_not_replaced_without_overwrite(tiny: dict, capsys) -> None:
    out = tiny["tmp"] / "students.png"
    argv = [str(tiny["path"]), "--out", str(out), "--runs", str(tiny["runs"])]
    assert run_cli(main, argv) == 0
    assert "5 points of 2 students" in capsys.readouterr().out
    picture = read_image(out)
    assert picture is not None and picture.shape[1] > picture.shape[0] > 300  # two panels side by side
    assert run_cli(main, argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_a_file_that_is_not_a_students_table_is_one_paragraph(tmp_path: Path, capsys) -> None:
    wrong = tmp_path / "other.json"
    wrong.write_text("[1, 2]")
    assert run_cli(main, [str(wrong), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a students' table" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
