"""benchmarks/train_speed.py runs end to end on a tiny model and prints a row for every speed switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.train_speed import ALL_SETUPS, main

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = """\
description: a two-branch OKDHP hourglass small enough to time in a test
base: {base}
model:
  name: okdhp_hourglass
  num_joints: 16
  num_features: 8
  depth: 2
  shared_stacks: 1
  branch_stacks: [1, 1]
  fau: released
  fau_width: 8
data:
  input_size: [32, 32]
  heatmap_size: [8, 8]
"""


@pytest.mark.slow
def test_train_speed_prints_every_setup(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.format(base=REPO_ROOT / "experiments" / "mpii" / "demo.yaml"))
    argv = ["--config", str(config), "--device", "cpu", "--batch-size", "2", "--warmup", "1", "--iters", "1"]
    assert main([*argv, "--threads", "1", "--no-compile", "--peak-tflops", "1.0"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ")}
    for setup in ALL_SETUPS:
        assert setup.name in rows, f"no row for {setup.name}"
    baseline = rows["fp32 eager (released setup)"].split(" | ")
    assert baseline[2] == "1.00x" and baseline[3].endswith("%")  # ratio to itself, MFU with a peak
    for name in ("channels_last", "bf16 autocast", "channels_last + bf16"):
        assert rows[name].split(" | ")[2].endswith("x")  # measured on every CPU
    assert "fp16 autocast needs a GPU" in rows["fp16 autocast + GradScaler"]
    assert "--no-compile" in rows["torch.compile"]
    assert "FLOPs per image" in out and "load average" in out
