"""A run's ``log.jsonl``: one JSON record per epoch (learning rate, loss terms, teachers, validation tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Add one epoch's record as a line of ``log.jsonl``."""
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_log(path: Path, start_epoch: int) -> None:
    """Drop log lines of epochs that will be run again after a resume."""
    if not path.is_file():
        return
    kept = [
        line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] < start_epoch
    ]
    path.write_text("".join(line + "\n" for line in kept))


def read_log(path: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run's ``log.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
