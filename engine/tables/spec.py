"""A paper table as a small declarative file: its rows (experiment, the paper's value and its source) and protocol.

``tables/<name>.yaml`` (at the repository root, apart from ``experiments/`` so that no experiment listing
picks them up)::

    title: OKDHP on MPII, stacked hourglass
    source: SPEC B, "Tables to reproduce"
    protocol:
      text: MPII validation (2,958 persons), PCKh@0.5 Mean ..., flip test   # said in the table's header
      metric: Mean          # the key of the evaluation table that the table reports
      scale: 1              # ours = table[metric] * scale (COCO AP is a fraction: 100)
      boxes: gt             # COCO only: gt | detector (data.use_gt_boxes at evaluation)
      flip: true            # flip test at evaluation
    notes: optional text under the table
    paper_column: optional header of the paper values' column (default "paper")
    rows:
      - label: 4-stack OKDHP (2 shared + 3 x 2)
        experiment: mpii/hg4_okdhp   # trained into <output root>/mpii_hg4_okdhp; null with not_built: why
        paper: 90.0                  # the paper's value as SPEC writes it, or null (not reported)
        source: SPEC B MPII table
        metric: Head                 # optional: another key of the evaluation table
        head: branch1                # optional: this head of best.pth instead of deploy.pth
        evaluate: coco/ochuman_hg4_okdhp   # optional: the config that evaluates (another dataset)
        paper_gflops: 47             # optional: the paper's training cost, shown in its own column

Nothing here imports torch: listing tables and rows is cheap. Every unknown key, missing key or value of the
wrong type is a ``TableError`` naming the file, the row and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.experiment.catalogue import experiment_name, experiment_paths, resolve_config_path
from engine.experiment.config import read_raw_config, read_yaml
from utils.errors import ConfigError, UserError, closest
from utils.paths import EXPERIMENTS_DIR

TABLES_DIR = EXPERIMENTS_DIR / "tables"
ALL = "all"  # the name that walks every table in turn
# The papers' order (OKDHP's tables, then ODKD's); a table file not named here comes after them, by name.
PAPER_ORDER = (
    "okdhp_mpii",
    "okdhp_coco",
    "okdhp_cost",
    "okdhp_mobile",
    "odkd_students",
    "odkd_ablations",
    "ochuman",
)
BOXES = ("gt", "detector")
TABLE_KEYS = ("title", "source", "protocol", "notes", "paper_column", "rows")
PROTOCOL_KEYS = ("text", "metric", "scale", "boxes", "flip")
ROW_KEYS = (
    "label",
    "experiment",
    "not_built",
    "paper",
    "source",
    "metric",
    "head",
    "evaluate",
    "paper_gflops",
    "ablation_of",
    "changes",
)


class TableError(UserError):
    """A table file is missing or invalid."""


@dataclass(frozen=True)
class Protocol:
    """How a row's network is scored: the metric key, its scale, the boxes and the flip test."""

    text: str
    metric: str
    scale: float = 1.0
    boxes: str | None = None
    flip: bool = True


@dataclass(frozen=True)
class Row:
    """One row of a paper table."""

    label: str
    experiment: str | None
    paper: float | None
    source: str
    metric: str
    not_built: str | None = None
    head: str | None = None
    evaluate: str | None = None
    paper_gflops: float | None = None
    ablation_of: str | None = None  # the experiment this row ablates; ``changes`` lists the config keys
    changes: tuple[str, ...] = ()  # in which its resolved config differs from that one (tests hold it)

    @property
    def evaluation_config(self) -> str | None:
        """The experiment whose config evaluates the row (its own unless ``evaluate`` names another)."""
        return self.evaluate or self.experiment


@dataclass(frozen=True)
class Table:
    """A paper table: where it comes from, how it is scored, its rows."""

    name: str
    path: Path
    title: str
    source: str
    protocol: Protocol
    rows: tuple[Row, ...]
    notes: str = ""
    paper_column: str = "paper"  # the paper values' column header (ODKD's: "paper: likely (figure script)")

    @property
    def experiments(self) -> list[str]:
        """The experiments of the rows, each once, in row order."""
        return list(dict.fromkeys(row.experiment for row in self.rows if row.experiment))

    @property
    def has_gflops(self) -> bool:
        return any(row.paper_gflops is not None for row in self.rows)


def table_names() -> list[str]:
    """Every table file's name (``tables/<name>.yaml``), in the papers' order."""
    names = sorted(path.stem for path in TABLES_DIR.glob("*.yaml"))
    return sorted(
        names, key=lambda name: PAPER_ORDER.index(name) if name in PAPER_ORDER else len(PAPER_ORDER)
    )


def table_path(name: str) -> Path:
    """``tables/<name>.yaml``, or a yaml path as given; a TableError naming the tables otherwise."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = TABLES_DIR / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    names = table_names()
    raise TableError(
        f"no table '{name}'{closest(name, names)}: looked for {candidate}; the tables are "
        f"{', '.join(names)} (or '{ALL}' for every one of them); `bash start.sh table` lists them"
    )


def load_table(name: str) -> Table:
    """Read and check a table file: keys, types, and that every experiment it names exists."""
    path = table_path(name)
    try:
        raw = read_yaml(path)
    except ConfigError as error:
        raise TableError(str(error)) from None
    where = str(path)
    if not isinstance(raw, dict):
        raise TableError(f"{where}: expected a mapping with {', '.join(TABLE_KEYS)}")
    _check_keys(raw, TABLE_KEYS, where, required=("title", "source", "protocol", "rows"))
    protocol = _protocol(raw["protocol"], f"{where}: protocol")
    rows = raw["rows"]
    if not isinstance(rows, list) or not rows:
        raise TableError(
            f"{where}: 'rows' must be a non-empty list of rows (label, experiment, paper, source)"
        )
    known = {experiment_name(p) for p in experiment_paths()}
    return Table(
        name=path.stem,
        path=path,
        title=_text(raw["title"], f"{where}: title"),
        source=_text(raw["source"], f"{where}: source"),
        protocol=protocol,
        rows=tuple(_row(item, protocol, f"{where}: rows[{i}]", known) for i, item in enumerate(rows)),
        notes=" ".join(str(raw.get("notes") or "").split()),
        paper_column=_text(raw.get("paper_column", "paper"), f"{where}: paper_column"),
    )


def teacher_experiments(experiment: str) -> dict[str, str]:
    """``{teacher name: experiment that trains it}`` for the teachers of an experiment that name one."""
    teachers = read_raw_config(resolve_config_path(experiment)).get("teachers") or {}
    return {
        str(name): str(section["experiment"])
        for name, section in teachers.items()
        if isinstance(section, dict) and section.get("experiment")
    }


def training_order(experiments: list[str]) -> list[str]:
    """The experiments to train, each after the teachers it needs (recursively), each once."""
    order: list[str] = []

    def visit(experiment: str, path: tuple[str, ...]) -> None:
        if experiment in order:
            return
        if experiment in path:
            raise TableError(f"teacher cycle: {' -> '.join((*path, experiment))}")
        for teacher in teacher_experiments(experiment).values():
            visit(teacher, (*path, experiment))
        order.append(experiment)

    for experiment in experiments:
        visit(experiment, ())
    return order


def _check_keys(raw: dict[str, Any], valid: tuple[str, ...], where: str, required: tuple[str, ...]) -> None:
    for key in raw:
        if key not in valid:
            raise TableError(
                f"{where}: unknown key '{key}'{closest(str(key), valid)}; valid keys: {', '.join(valid)}"
            )
    for key in required:
        if key not in raw:
            raise TableError(f"{where}: the key '{key}' is missing (needed: {', '.join(required)})")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TableError(f"{where} must be a non-empty text, got {value!r}")
    return " ".join(value.split())


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TableError(f"{where} must be a number (as the paper writes it) or null, got {value!r}")
    return float(value)


def _protocol(raw: Any, where: str) -> Protocol:
    if not isinstance(raw, dict):
        raise TableError(f"{where} must be a mapping with text and metric (and scale, boxes, flip)")
    _check_keys(raw, PROTOCOL_KEYS, where, required=("text", "metric"))
    boxes = raw.get("boxes")
    if boxes is not None and boxes not in BOXES:
        raise TableError(f"{where}.boxes must be one of {', '.join(BOXES)}, got {boxes!r}")
    scale = _number(raw.get("scale", 1.0), f"{where}.scale")
    if not isinstance(raw.get("flip", True), bool):
        raise TableError(f"{where}.flip must be true or false, got {raw['flip']!r}")
    return Protocol(
        text=_text(raw["text"], f"{where}.text"),
        metric=_text(raw["metric"], f"{where}.metric"),
        scale=1.0 if scale is None else scale,
        boxes=boxes,
        flip=raw.get("flip", True),
    )


def _row(raw: Any, protocol: Protocol, where: str, known: set[str]) -> Row:
    if not isinstance(raw, dict):
        raise TableError(f"{where} must be a mapping with label, experiment, paper and source")
    _check_keys(raw, ROW_KEYS, where, required=("label", "experiment", "paper", "source"))
    where = f"{where} ({raw['label']!r})"
    experiment = raw["experiment"]
    if experiment is None:
        if not raw.get("not_built"):
            raise TableError(f"{where}: experiment is null, so not_built must say why the row has no run")
    else:
        for key in ("experiment", "evaluate"):
            name = raw.get(key)
            if name is not None and str(name) not in known:
                raise TableError(
                    f"{where}: {key} '{name}' is not an experiment{closest(str(name), known)}; "
                    "`bash start.sh list` shows them"
                )
    head = raw.get("head")
    ablation_of, changes = raw.get("ablation_of"), raw.get("changes")
    if (ablation_of is None) != (changes is None):
        raise TableError(
            f"{where}: ablation_of and changes go together (the experiment, the keys that differ)"
        )
    if ablation_of is not None and str(ablation_of) not in known:
        raise TableError(
            f"{where}: ablation_of '{ablation_of}' is not an experiment{closest(str(ablation_of), known)}"
        )
    if changes is not None and not (
        isinstance(changes, list) and changes and all(isinstance(key, str) for key in changes)
    ):
        raise TableError(f"{where}: changes must be a non-empty list of dotted config keys, got {changes!r}")
    return Row(
        label=_text(raw["label"], f"{where}: label"),
        experiment=None if experiment is None else str(experiment),
        paper=_number(raw["paper"], f"{where}: paper"),
        source=_text(raw["source"], f"{where}: source"),
        metric=_text(raw.get("metric", protocol.metric), f"{where}: metric"),
        not_built=None if raw.get("not_built") is None else _text(raw["not_built"], f"{where}: not_built"),
        head=None if head is None else _text(head, f"{where}: head"),
        evaluate=None if raw.get("evaluate") is None else str(raw["evaluate"]),
        paper_gflops=_number(raw.get("paper_gflops"), f"{where}: paper_gflops"),
        ablation_of=None if ablation_of is None else str(ablation_of),
        changes=tuple(changes or ()),
    )
