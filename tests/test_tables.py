"""The paper tables: table files, --collect, failing rows, a quick table end to end, and a walk killed mid-row.

The quick walk runs a two-row table (FPD's teacher trained first) on synthetic data, is interrupted in the
middle of its second row, and is finished by ``bash start.sh table ... --quick``: the rows already done are
not trained again and the interrupted one resumes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import engine.tables.quick as quick
import engine.training.run as training_run
from engine.cli import run_cli
from engine.tables.spec import PAPER_ORDER, TableError, load_table, table_names, training_order
from tools.table import main

REPO_ROOT = Path(__file__).resolve().parents[1]
README_BEGIN = "<!-- tables: begin"
README_END = "<!-- tables: end -->"

TINY_TABLE = """\
title: a two-row table for the tests
source: the test
protocol:
  text: PCKh@0.5 Mean on the synthetic validation set
  metric: Mean
rows:
  - {label: "2-stack baseline", experiment: mpii/hg2_baseline, paper: 88.6, source: SPEC B}
  - {label: "FPD student", experiment: mpii/hg4_fpd, paper: 89.7, source: SPEC B}
  - {label: "a metric the evaluation lacks", experiment: mpii/hg2_baseline, metric: Nose, paper: null, source: test}
"""


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table line of a markdown text (header and rule excluded)."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| row |"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_table_loads_with_the_papers_values() -> None:
    assert table_names() == list(PAPER_ORDER)  # a file for every table of the papers, in the papers' order
    mpii = load_table("okdhp_mpii")
    paper = {row.experiment: row.paper for row in mpii.rows if row.metric == "Mean"}
    assert (
        paper["mpii/hg4_okdhp"] == 90.0
        and paper["mpii/hg8_okdhp"] == 90.6
        and paper["mpii/hg2_baseline"] == 88.6
    )
    students = load_table("odkd_students")
    assert students.protocol.boxes == "detector" and students.protocol.scale == 100
    for row in students.rows[:6]:
        assert "likely (figure script)" in row.source
    # FPD's teacher comes before its student; a table's experiments each appear once
    assert training_order(load_table("okdhp_cost").experiments)[:3] == [
        "mpii/hg4_baseline",
        "mpii/hg8_baseline",
        "mpii/hg4_fpd",
    ]


def test_each_row_is_evaluated_by_its_tables_protocol(tmp_path: Path) -> None:
    from engine.tables.walk import TableWalk, WalkOptions

    walk = TableWalk(WalkOptions(output_root=tmp_path, data_roots={"coco": "/data/coco"}))
    students = load_table("odkd_students")
    teacher = next(row for row in students.rows if row.experiment == "odkd/st_hrnet_w48_mask")
    items = walk.evaluation_overrides(students, teacher)
    assert items == ["data.root=/data/coco", "data.use_gt_boxes=false", "data.with_mask=false"]
    # training reads the teachers from their run folders under the same root, the data from --data-root
    training = walk.training_overrides("odkd/hrnet_w16_odkd")
    assert f"teachers.pt.checkpoint={tmp_path / 'odkd_pt_hrnet_w32' / 'deploy.pth'}" in training
    assert training[0] == "data.root=/data/coco"
    ochuman = load_table("ochuman")
    quick = TableWalk(WalkOptions(output_root=tmp_path, quick=True))
    items = quick.evaluation_overrides(ochuman, ochuman.rows[-1])  # another config: no model settings
    assert f"data.root={tmp_path / 'data' / 'ochuman'}" in items and not any(
        i.startswith("model.") for i in items
    )


def test_a_bad_table_file_is_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(TINY_TABLE.replace("paper: 88.6", "paperr: 88.6"))
    with pytest.raises(TableError, match=r"unknown key 'paperr' \(did you mean 'paper'\?\)"):
        load_table(str(path))
    path.write_text(TINY_TABLE.replace("mpii/hg2_baseline, paper: 88.6", "mpii/hg2_baseline_x, paper: 88.6"))
    assert run_cli(main, [str(path), "--collect", "--output-root", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "'mpii/hg2_baseline_x' is not an experiment" in error
    assert len(error.strip().splitlines()) == 1


def test_collect_on_an_empty_root_gives_every_row_and_the_readme_block(tmp_path: Path) -> None:
    assert main(["all", "--collect", "--output-root", str(tmp_path)]) == 0
    for name in table_names():
        table = load_table(name)
        rows = table_rows((tmp_path / "tables" / f"{name}.md").read_text())
        assert len(rows) == len(table.rows), name
        assert all(cells[3 + table.has_gflops] in ("not run", "not built") for cells in rows)
        data = json.loads((tmp_path / "tables" / f"{name}.json").read_text())
        assert [row["label"] for row in data["rows"]] == [row.label for row in table.rows]
    # README carries the --collect output: the same rows, experiments and paper values as the table files
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme[readme.index(README_BEGIN) : readme.index(README_END)]
    generated = (tmp_path / "tables" / "all.md").read_text()
    assert [cells[:3] for cells in table_rows(block)] == [cells[:3] for cells in table_rows(generated)]


def test_a_failing_row_is_reported_and_the_table_still_written(tmp_path: Path, capsys) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_TABLE)
    missing = tmp_path / "no_such_data"
    code = main([str(path), "--output-root", str(tmp_path / "out"), "--data-root", str(missing)])
    assert code == 1
    rows = table_rows((tmp_path / "out" / "tables" / "tiny.md").read_text())
    assert [cells[3] for cells in rows] == ["error", "error", "error"]
    assert str(missing) in rows[0][-1] and "its teacher mpii/hg8_baseline could not be trained" in rows[1][-1]


@pytest.mark.slow
def test_quick_table_interrupted_mid_row_finishes_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    torch.set_num_threads(1)  # a shared 2-core machine runs the quick steps far faster on one thread
    # the quick mode's own code, on an even smaller set and network (the walk does not depend on the sizes)
    for name, value in (("FEATURES", 8), ("ITERATIONS", 2), ("BATCH", 4), ("MPII_IMAGES", (16, 8))):
        monkeypatch.setattr(quick, name, value)
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_TABLE)
    root = tmp_path / "quick"
    epochs: list[int] = []
    real_epoch = training_run.train_one_epoch

    def interrupted_in_the_fpd_run(model, loss, loader, optimizer, epoch, runtime, **kwargs):
        epochs.append(epoch)
        if len(epochs) == 6:  # hg2_baseline 0, 1; its teacher hg8_baseline 0, 1; hg4_fpd 0, then here
            raise KeyboardInterrupt
        return real_epoch(model, loss, loader, optimizer, epoch, runtime, **kwargs)

    with monkeypatch.context() as interrupted:
        interrupted.setattr(training_run, "train_one_epoch", interrupted_in_the_fpd_run)
        with pytest.raises(KeyboardInterrupt, match="run `bash start.sh table tiny --quick` again"):
            main([str(path), "--quick", "--output-root", str(root)])
    done = {
        name: (root / name / "deploy.pth").stat().st_mtime_ns
        for name in ("mpii_hg2_baseline", "mpii_hg8_baseline")
    }
    rows = table_rows((root / "tables" / "tiny.md").read_text())
    assert rows[0][3] != "not run" and float(rows[0][3]) >= 0.0  # row 1 finished and evaluated
    assert rows[1][3] == "interrupted" and "interrupted after 1/2 epochs" in rows[1][-1]

    # the same command again (start.sh table runs tools/table.py: tests/test_start.py), in this process:
    # finishes the table, trains no finished run again
    capsys.readouterr()
    code = main([str(path), "--quick", "--output-root", str(root)])
    out = capsys.readouterr().out
    assert code == 1  # row 3 asks for a metric that does not exist
    assert "== mpii/hg2_baseline: finished (2/2 epochs), not trained again" in out
    assert "== mpii/hg8_baseline: finished (2/2 epochs), not trained again" in out
    assert "resumed from" in out and "mpii_hg4_fpd/last.pth at epoch 1" in out
    assert "== training mpii/hg2_baseline" not in out and "== training mpii/hg8_baseline" not in out
    assert {name: (root / name / "deploy.pth").stat().st_mtime_ns for name in done} == done
    rows = table_rows((root / "tables" / "tiny.md").read_text())
    assert len(rows) == 3 and rows[0][1] == "`mpii/hg2_baseline`" and rows[1][1] == "`mpii/hg4_fpd`"
    assert float(rows[1][3]) >= 0.0 and rows[1][-1] == "finished (2/2 epochs)"
    assert rows[2][3] == "error" and "the evaluation has no 'Nose'" in rows[2][-1]
    assert "QUICK MODE" in (root / "tables" / "tiny.md").read_text()
    # the evaluations were stored: --collect reuses them without recomputing (row 3 still lacks its metric)
    assert main([str(path), "--quick", "--collect", "--output-root", str(root)]) == 1
    assert table_rows((root / "tables" / "tiny.md").read_text())[1][3] == rows[1][3]


def test_odkd_tables_label_the_figure_script_values_and_test_on_detector_boxes() -> None:
    """SPEC C: the only ODKD numbers come from a figure script (likely, not certain), on detector boxes."""
    from engine.tables.report import RowResult, render_markdown

    for name in table_names():
        table = load_table(name)
        figure_script = name.startswith("odkd_")  # odkd_students, odkd_ablations (ochuman: no paper values)
        expected = "paper: likely (figure script)" if figure_script else "paper"
        assert table.paper_column == expected, name
        if figure_script:
            assert table.protocol.boxes == "detector", name
            results = [RowResult(row, "not run") for row in table.rows]
            header = render_markdown(table, results).splitlines()[4]
            assert header.startswith("| row | experiment | paper: likely (figure script) | ours |"), header
