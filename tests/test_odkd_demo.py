"""tools/odkd_demo.py: end to end at a smoke size (the two teachers, then the ODKD student over two seeds), the
table's mean and spread against the runs' own evaluations, and the three student variants' configs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

import tools.odkd_demo as demo
from engine.experiment.config import load_config
from losses.registry import LOSSES


def test_the_three_student_variants_differ_only_in_their_distillation() -> None:
    configs = {
        label: load_config(demo.EXPERIMENTS / f"{name}.yaml", changes)
        for label, name, changes, _ in demo.STUDENTS
    }
    assert list(configs) == ["no-KD", "heatmap KD", "ODKD"]
    for config in configs.values():  # one recipe for every variant
        assert (config.train, config.data, config.test) == (
            configs["ODKD"].train,
            configs["ODKD"].data,
            configs["ODKD"].test,
        )
    assert configs["no-KD"].loss == {"name": "mse"} and not configs["no-KD"].teachers
    plain, odkd = (LOSSES.resolved(configs[label].loss) for label in ("heatmap KD", "ODKD"))
    assert {k for k in plain if plain[k] != odkd[k]} == {"binarize", "mask_mode", "mu"}
    assert (plain["binarize"], plain["mask_mode"], plain["mu"]) == ("none", "none", 0.0)
    assert configs["heatmap KD"].teachers == configs["ODKD"].teachers


def test_the_table_reports_mean_sample_deviation_and_range() -> None:
    teacher = {"network": "hrnet w8", "params": 10, "AP": 0.5, "AP50": 0.9, "train_s": 3.0}
    runs = [{**teacher, "AP": ap} for ap in (0.1, 0.3, 0.2)]
    lines = demo.format_table([("teacher PT", teacher)], [("ODKD", runs)], "data").splitlines()
    row = lines[-1].split()
    assert row[0] == "ODKD" and row[4:8] == [
        "0.200",
        "0.100",
        "0.100",
        "0.300",
    ]  # sd of 0.1, 0.3, 0.2 (n - 1)
    assert row[-3:] == ["0.100", "0.300", "0.200"]


@pytest.mark.slow
def test_odkd_demo_prints_one_table_of_seeds_and_nothing_else_when_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "STUDENTS", demo.STUDENTS[-1:])  # ODKD only: the teachers' wiring and the seeds
    smoke = ["train.epochs=2", "train.lr_steps=[1]", "train.val_every=2"]  # PT in epoch 0, ST in epoch 1
    smoke += ["data.input_size=[48,64]", "data.heatmap_size=[12,16]"]
    out = tmp_path / "out"
    args = ["--data-root", str(tmp_path / "coco"), "--output-root", str(out), "--quiet", "--seeds", "2"]
    args += ["--train", "8", "--valid", "2"] + [item for value in smoke for item in ("--set", value)]
    assert demo.main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("wrote the synthetic COCO set")
    assert lines[1].startswith("ODKD demo: COCO AP") and lines[2].split()[:2] == ["run", "network"]
    assert [row[:15].strip() for row in lines[3:5]] == [label for label, _, _ in demo.TEACHERS]
    assert lines[5] == "" and lines[6].startswith("students over 2 seed(s)")
    assert lines[8][:15].strip() == "ODKD" and len(lines) == 10 and lines[-1].startswith("total wall time")
    assert "== " not in captured.out and captured.err == ""  # --quiet: no progress, no per-run tables
    aps = []
    for seed in range(2):
        run = out / f"odkd_demo_odkd_seed{seed}"
        assert f"seed: {seed}" in (run / "config.yaml").read_text()
        aps.append(json.loads((run / "eval_deploy" / "tables.json").read_text())["branch0"]["AP"])
    row = lines[8]
    assert float(row[44:53]) == pytest.approx(statistics.fmean(aps), abs=5e-4)
    assert float(row[53:60]) == pytest.approx(statistics.stdev(aps), abs=5e-4)
    assert [float(v) for v in row.split()[-2:]] == pytest.approx(aps, abs=5e-4)
    # the student was trained against the two teachers the demo had just written, PT then ST
    log = [json.loads(line) for line in (out / "odkd_demo_odkd_seed0" / "log.jsonl").read_text().splitlines()]
    assert [record["teachers"] for record in log] == [["pt"], ["st"]]
    assert "count/kd_pt_empty" in log[0]["train"]
