"""tools/odkd_demo.py end to end at a smoke size: four runs, the teacher checkpoints wired in, one table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.odkd_demo import RUNS, main


@pytest.mark.slow
def test_odkd_demo_prints_one_table_and_nothing_else_when_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    smoke = ["train.epochs=2", "train.lr_steps=[1]", "train.val_every=2"]
    smoke += ["data.input_size=[48,64]", "data.heatmap_size=[12,16]"]
    args = ["--data-root", str(tmp_path / "coco"), "--output-root", str(tmp_path / "out"), "--quiet"]
    args += ["--train", "12", "--valid", "4"] + [item for value in smoke for item in ("--set", value)]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("wrote the synthetic COCO set")
    assert lines[1].startswith("ODKD demo: COCO AP") and lines[2].split()[:2] == ["run", "network"]
    rows = lines[3:-1]
    assert [row[:15].strip() for row in rows] == [label for label, _ in RUNS]
    assert lines[-1].startswith("total wall time")
    assert "== " not in captured.out and captured.err == ""  # --quiet: no progress, no per-run tables
    for _, name in RUNS:
        assert (tmp_path / "out" / f"odkd_{name}" / "deploy.pth").is_file()
    # the ODKD student was trained against the two teachers the demo had just written
    log = (tmp_path / "out" / "odkd_demo_student_odkd" / "log.jsonl").read_text()
    assert '"pt"' in log and '"st"' in log
