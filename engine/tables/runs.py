"""The state of a row's run folder, and a row's stored evaluation.

A run folder is ``<output root>/<family>_<name>`` (``output/mpii_hg4_okdhp``), the folder ``start.sh`` trains
into. Its state decides what the table command does with it:

- ``finished``: ``deploy.pth`` exists and ``log.jsonl`` reached the configured epochs: skipped;
- ``interrupted``: ``last.pth`` exists but the run did not finish: resumed with the trainer's resume;
- ``external``: ``deploy.pth`` exists without ``last.pth`` (e.g. a converted checkpoint put there): evaluated
  as it is, never trained over;
- ``started``: run files but no ``last.pth`` (stopped in its first epoch): trained again from the start;
- ``missing``: nothing there: trained.

An evaluation is stored as ``<run>/table_eval/<key>/result.json`` with the checkpoint's size, time and
sha256, so that ``--collect`` reuses it and a retrained checkpoint is evaluated again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.training.log import read_log
from engine.training.run import DEPLOY, LAST, LOG_FILE, RUN_FILES
from utils.checkpoint import file_sha256

EVAL_DIR = "table_eval"
RESULT = "result.json"


def run_folder(root: Path, experiment: str) -> Path:
    """``<root>/mpii_hg4_okdhp`` for ``mpii/hg4_okdhp``: the folder start.sh trains the experiment into."""
    return Path(root) / experiment.replace("/", "_")


@dataclass(frozen=True)
class RunState:
    """What a run folder holds: its kind (see the module docstring) and how many epochs its log reached."""

    kind: str
    epochs_done: int
    epochs: int

    @property
    def done(self) -> bool:
        """Whether the folder holds a network to evaluate that will not be trained any further."""
        return self.kind in ("finished", "external")

    def describe(self) -> str:
        return {
            "finished": f"finished ({self.epochs_done}/{self.epochs} epochs)",
            "interrupted": f"interrupted after {self.epochs_done}/{self.epochs} epochs",
            "external": "deploy.pth without a training log (put there, not trained here)",
            "started": "stopped in its first epoch (no last.pth)",
            "missing": "not run",
        }[self.kind]


def inspect_run(folder: Path, epochs: int) -> RunState:
    """The state of a run folder for a run of ``epochs`` epochs."""
    log = folder / LOG_FILE
    done = 0
    if log.is_file():
        try:
            done = max((int(r["epoch"]) + 1 for r in read_log(log)), default=0)
        except (ValueError, KeyError):  # a line cut by a kill: the run is not finished, last.pth decides
            done = 0
    if (folder / DEPLOY).is_file() and done >= epochs:
        kind = "finished"
    elif (folder / LAST).is_file():
        kind = "interrupted"
    elif (folder / DEPLOY).is_file():
        kind = "external"
    elif any((folder / name).exists() for name in RUN_FILES):
        kind = "started"
    else:
        kind = "missing"
    return RunState(kind, done, epochs)


def evaluation_key(
    checkpoint: str, evaluate: str, boxes: str | None, flip: bool, overrides: list[str]
) -> str:
    """The folder name of one evaluation: checkpoint, evaluating config and a hash of what else decides it.

    Data roots and runtime settings (device, workers) do not change a score, so they are not part of it: a
    ``--collect`` without ``--data-root`` finds what a run with it stored.
    """
    kept = sorted(o for o in overrides if not o.startswith(("data.root=", "runtime.")))
    digest = hashlib.sha1(json.dumps([checkpoint, evaluate, boxes, flip, kept]).encode()).hexdigest()[:8]
    return f"{Path(checkpoint).stem}-{evaluate.replace('/', '_')}-{digest}"


def read_result(folder: Path, key: str, checkpoint: Path) -> dict[str, Any] | None:
    """The stored evaluation ``key`` of ``checkpoint``, or None when there is none or the file changed since."""
    path = folder / EVAL_DIR / key / RESULT
    if not path.is_file() or not checkpoint.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except ValueError:  # not readable (written by hand, or damaged): evaluate again
        return None
    stat = checkpoint.stat()
    if stored.get("size") == stat.st_size and stored.get("mtime_ns") == stat.st_mtime_ns:
        return stored
    if stored.get("sha256") == file_sha256(checkpoint):
        return stored
    return None


def write_result(
    folder: Path, key: str, checkpoint: Path, tables: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Store an evaluation: ``{head: table}`` plus what identifies the checkpoint it was made from."""
    path = folder / EVAL_DIR / key / RESULT
    path.parent.mkdir(parents=True, exist_ok=True)
    stat = checkpoint.stat()
    record = {
        "checkpoint": str(checkpoint),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": file_sha256(checkpoint),
        "tables": tables,
        **extra,
    }
    temporary = path.with_name(f".{RESULT}.tmp")
    temporary.write_text(json.dumps(record, indent=2))
    os.replace(temporary, path)  # atomic: a kill leaves the old result or the new one, never half of one
