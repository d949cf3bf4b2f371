"""start.sh: the teachers it trains first are the ones the run will miss (it sees the run's --set), a teacher's
training gets the machine's and the data's arguments only, and the list and its errors name experiments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_training import REPO

SHIM = """#!/bin/sh
# A stand-in interpreter: start.sh's helpers run for real, trainings and evaluations are only recorded.
case "$1" in
-c) exit 0 ;;
-m) exec "{python}" "$@" ;;
*) echo "$*" >>"{log}" ;;
esac
"""


def start(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run start.sh with the stand-in interpreter; returns the result and the commands it ran."""
    log = tmp_path / "commands.txt"
    shim = tmp_path / "python"
    shim.write_text(SHIM.format(python=sys.executable, log=log))
    shim.chmod(0o755)
    result = subprocess.run(
        ["bash", str(REPO / "start.sh"), *args], cwd=REPO, env={**os.environ, "PYTHON": str(shim)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result, log.read_text().splitlines() if log.is_file() else []


def test_a_teacher_named_by_set_that_exists_is_not_trained(tmp_path: Path) -> None:
    teacher = tmp_path / "hg8.pth"
    teacher.write_bytes(b"a checkpoint")
    result, commands = start(tmp_path, "mpii/hg4_fpd", "--set", f"teachers.teacher.checkpoint={teacher}")
    assert result.returncode == 0, result.stderr
    assert "teacher first" not in result.stdout
    assert [command.split()[0] for command in commands] == ["train_mpii.py", "evaluate.py"]
    assert commands[0].startswith("train_mpii.py --config experiments/mpii/hg4_fpd.yaml")
    assert commands[0].endswith(f"--set teachers.teacher.checkpoint={teacher}")


def test_a_missing_teacher_is_trained_first_with_the_machine_and_data_arguments(tmp_path: Path) -> None:
    data = tmp_path / "mpii"
    student_args = [
        "--set",
        "runtime.device=cpu",
        "--set",
        "train.lr=1e-3",
        "--set",
        "data.use_gt_boxes=true",  # the test boxes are the data's: the teacher validates on the same ones
        "--data-root",
        str(data),
        "--resume",
    ]
    result, commands = start(
        tmp_path,
        "mpii/hg4_fpd",
        "--set",
        f"teachers.teacher.checkpoint={tmp_path / 'absent.pth'}",
        *student_args,
    )
    assert result.returncode == 0, result.stderr
    assert "== teacher first: mpii/hg8_baseline" in result.stdout
    teacher_training, _, student_training, _ = commands
    assert teacher_training.startswith("train_mpii.py --config experiments/mpii/hg8_baseline.yaml")
    assert teacher_training.endswith(
        f"--set runtime.device=cpu --set data.use_gt_boxes=true --data-root {data}"
    )  # not the lr, not --resume
    assert student_training.endswith(" ".join(student_args))


def test_the_list_holds_the_demos_and_a_shared_base_is_no_experiment(tmp_path: Path) -> None:
    result, _ = start(tmp_path, "list")
    names = result.stdout.split()
    assert names[:2] == ["demo", "odkd-demo"] and "mpii/hg4_okdhp" in names
    assert not any(name.rsplit("/", 1)[-1].startswith("_") for name in names)
    result, commands = start(tmp_path, "mpii/_defaults")
    assert result.returncode == 2 and not commands
    assert "'mpii/_defaults' is a shared base that experiments start from" in result.stderr
    result, _ = start(tmp_path, "mpii/hg4_fpdd")
    assert result.returncode == 2 and "did you mean 'mpii/hg4_fpd'?" in result.stderr


def test_table_runs_the_table_tool_with_the_data_root_and_the_arguments(tmp_path: Path) -> None:
    result, commands = start(tmp_path, "table", "okdhp_mpii", "--quick", "--output-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert commands == [f"tools/table.py okdhp_mpii --quick --output-root {tmp_path}"]
