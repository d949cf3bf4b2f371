"""Walk a paper table: train the rows that have no finished run (teachers first), evaluate, write the table.

For every row in order: the experiments its run needs are trained first (the teachers named by
``teachers.<name>.experiment``, recursively), then its own (fresh, or resumed from ``last.pth`` when a
previous walk was interrupted; a finished run is never trained again); then the row's network is
evaluated by the table's protocol (``deploy.pth``, or one head of ``best.pth``) and the score stored beside
the run, so that a later walk or ``--collect`` reuses it. The table is rewritten after every row, so a walk
killed at any point leaves a table of what was done, and the same command finishes it.

A row that fails (missing data, a bad config, a crash, a teacher that could not be trained) is reported in
the table with its error; the walk goes on with the next row. Teachers' checkpoints are taken from the
teachers' own run folders under the same output root, so a walk under ``--quick`` or another
``--output-root`` never reads or writes the runs of another root.
"""

from __future__ import annotations

import gc
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch

from engine.experiment.catalogue import resolve_config_path
from engine.experiment.config import load_config, read_raw_config
from engine.inference.evaluation import evaluate_checkpoint
from engine.tables import quick
from engine.tables.report import (
    DONE,
    ERROR,
    INTERRUPTED,
    NOT_BUILT,
    NOT_EVALUATED,
    NOT_RUN,
    RowResult,
    render_markdown,
    write_all,
    write_table,
)
from engine.tables.runs import (
    EVAL_DIR,
    RunState,
    evaluation_key,
    inspect_run,
    read_result,
    run_folder,
    write_result,
)
from engine.tables.spec import Row, Table, TableError, teacher_experiments
from engine.training.run import BEST, DEPLOY, TrainingRun
from utils.errors import UserError

T = TypeVar("T")


def plain_message(error: BaseException) -> str:
    """An error as one line (the entry point passes engine.cli.one_paragraph, which also cleans worker errors)."""
    return " ".join(str(error).split())


@dataclass
class WalkOptions:
    """How to walk: where runs go, quick or full, collect only, data roots and overrides for every row."""

    output_root: Path
    quick: bool = False
    collect: bool = False
    data_roots: dict[str, str] = field(default_factory=dict)  # dataset name ('' = every dataset) -> folder
    overrides: list[str] = field(default_factory=list)  # --set items for every row's training and evaluation
    log: Callable[[str], None] = print
    describe: Callable[[BaseException], str] = plain_message

    @property
    def tables_dir(self) -> Path:
        return self.output_root / "tables"


class TableWalk:
    """One walk over one or more tables; an experiment shared by rows or tables is trained once."""

    def __init__(self, options: WalkOptions) -> None:
        self.options = options
        self.root = options.output_root
        self.outcomes: dict[str, str | None] = {}  # experiment -> None (trained or finished) or its error
        self.epochs: dict[str, int] = {}  # experiment -> its configured epochs (config + overrides)
        self.quick_roots = quick.data_folders(self.root / "data") if options.quick else {}
        self.data_ready = False

    # ------------------------------------------------------------------ overrides
    def _data_items(self, dataset: str) -> list[str]:
        if self.options.quick:
            return quick.data_overrides(dataset, self.quick_roots)
        root = self.options.data_roots.get(dataset, self.options.data_roots.get(""))
        return [f"data.root={root}"] if root else []

    def training_overrides(self, experiment: str) -> list[str]:
        """The ``--set`` items of an experiment's training: quick settings, data root, teachers' files, user's."""
        raw = read_raw_config(resolve_config_path(experiment))
        items = self._data_items(str(raw["data"]["name"]))
        if self.options.quick:
            items += quick.training_overrides() + quick.model_overrides(dict(raw["model"]))
        for name, teacher in teacher_experiments(experiment).items():
            items.append(f"teachers.{name}.checkpoint={run_folder(self.root, teacher) / DEPLOY}")
        return items + self.options.overrides

    def evaluation_overrides(self, table: Table, row: Row) -> list[str]:
        """The ``--set`` items of a row's evaluation: data root, the protocol's boxes, the user's.

        A row evaluated with its own experiment's config (a ``best.pth`` head too, whose network the config
        rebuilds) also gets the training's model settings; another config (e.g. OCHuman's) takes the network
        from the ``deploy.pth`` and no model or teacher setting.
        """
        assert row.evaluation_config is not None
        raw = read_raw_config(resolve_config_path(row.evaluation_config))
        dataset = str(raw["data"]["name"])
        own = row.evaluation_config == row.experiment
        items = self._data_items(dataset)
        if self.options.quick:
            items += quick.training_overrides() + (quick.model_overrides(dict(raw["model"])) if own else [])
        elif table.protocol.boxes is not None and dataset == "coco":
            items.append(f"data.use_gt_boxes={'true' if table.protocol.boxes == 'gt' else 'false'}")
        if raw["data"].get("with_mask"):
            items.append(
                "data.with_mask=false"
            )  # scoring reads keypoints only (and detector boxes have no mask)
        skipped = ("teachers.",) if own else ("model.", "teachers.")
        return items + [o for o in self.options.overrides if not o.startswith(skipped)]

    # ------------------------------------------------------------------ training
    def run_state(self, experiment: str) -> RunState:
        """The state of an experiment's run folder for the epochs it would be trained for."""
        if experiment not in self.epochs:
            config = load_config(resolve_config_path(experiment), self.training_overrides(experiment))
            self.epochs[experiment] = config.train.epochs
        return inspect_run(run_folder(self.root, experiment), self.epochs[experiment])

    def ensure_trained(self, experiment: str) -> str | None:
        """Train an experiment (its teachers first) unless its run is done; None, or the error that stopped it."""
        if experiment in self.outcomes:
            return self.outcomes[experiment]
        error = None
        for teacher in teacher_experiments(experiment).values():
            teacher_error = self.ensure_trained(teacher)
            if teacher_error is not None:
                error = f"its teacher {teacher} could not be trained: {teacher_error}"
                break
        if error is None:
            _, error = self._guarded(lambda: self._train(experiment), f"training {experiment}")
        self.outcomes[experiment] = error
        return error

    def _train(self, experiment: str) -> None:
        config_path = resolve_config_path(experiment)
        config = load_config(config_path, self.training_overrides(experiment))
        folder = run_folder(self.root, experiment)
        state = inspect_run(folder, config.train.epochs)
        if state.done:
            self.options.log(f"== {experiment}: {state.describe()}, not trained again")
            return
        resume = state.kind == "interrupted"
        how = f"resuming, {state.describe()}" if resume else f"{config.train.epochs} epochs"
        self.options.log(f"== training {experiment} -> {folder} ({how})")
        run = TrainingRun(config, folder)
        try:
            run.fit(resume=resume, overwrite=not resume, log=self.options.log)
        finally:
            run.runtime.close()
            del run
            _free_memory()

    def _guarded(self, action: Callable[[], T], what: str) -> tuple[T | None, str | None]:
        """``(action(), None)``, or ``(None, message)`` when it fails: a bug also prints its traceback, Ctrl-C stops."""
        try:
            return action(), None
        except KeyboardInterrupt:
            raise
        except UserError as error:
            message = self.options.describe(error)
        except Exception as error:  # a crash of one row must not lose the others
            traceback.print_exc(file=sys.stderr)
            message = f"{type(error).__name__} while {what}: {self.options.describe(error)}"
        self.options.log(f"error ({what}): {message}")
        _free_memory()
        return None, message

    # ------------------------------------------------------------------ rows
    def row_result(self, table: Table, row: Row, *, train: bool) -> RowResult:
        """Train (unless ``train`` is off: collect) and evaluate one row; every failure becomes the result."""
        if row.experiment is None:
            return RowResult(row, NOT_BUILT, row.not_built or "")
        folder = run_folder(self.root, row.experiment)
        result = RowResult(row, NOT_RUN, run=str(folder))
        started = time.perf_counter()
        if train:
            error = self.ensure_trained(row.experiment)
            result.seconds["train"] = round(time.perf_counter() - started, 1)
            if error is not None:
                result.status, result.detail = ERROR, f"error: {error}"
                return result
        state, error = self._guarded(lambda: self.run_state(row.experiment), f"reading {folder}")
        if state is None:
            result.status, result.detail = ERROR, f"error: {error}"
            return result
        result.detail = "" if state.kind == "missing" else state.describe()
        if not state.done:
            result.status = INTERRUPTED if state.kind == "interrupted" else NOT_RUN
            return result
        started = time.perf_counter()
        value, error = self._guarded(
            lambda: self._score(table, row, folder, evaluate=train), f"evaluating {row.experiment}"
        )
        result.seconds["evaluate"] = round(time.perf_counter() - started, 1)
        if error is not None:
            result.status, result.detail = ERROR, f"error: {error}"
        elif value is None:
            result.status = NOT_EVALUATED
            result.detail += "; not evaluated yet: run the command without --collect"
        else:
            result.status, result.ours = DONE, value
            if row.head:
                result.detail += f"; {row.head} of best.pth"
        return result

    def _score(self, table: Table, row: Row, folder: Path, *, evaluate: bool) -> float | None:
        """The row's number from the stored evaluation, evaluating first when there is none (and ``evaluate``)."""
        assert row.evaluation_config is not None
        protocol = table.protocol
        checkpoint = folder / (BEST if row.head else DEPLOY)
        boxes = "gt" if self.options.quick else protocol.boxes
        key = evaluation_key(
            checkpoint.name, row.evaluation_config, boxes, protocol.flip, self.options.overrides
        )
        stored = read_result(folder, key, checkpoint)
        if stored is None:
            if not evaluate:
                return None
            if not checkpoint.is_file():
                raise TableError(f"{checkpoint} does not exist (the run has no {checkpoint.name})")
            overrides = self.evaluation_overrides(table, row)
            self.options.log(f"== evaluating {checkpoint} with {row.evaluation_config} ({protocol.text})")
            tables = evaluate_checkpoint(
                checkpoint,
                resolve_config_path(row.evaluation_config),
                overrides=overrides,
                flip=protocol.flip,
                output_dir=folder / EVAL_DIR / key,
            )
            if not all(isinstance(value, dict) for value in tables.values()):
                tables = {"network": tables}  # one network: the table itself
            write_result(
                folder,
                key,
                checkpoint,
                tables,
                {"evaluate": row.evaluation_config, "overrides": overrides, "protocol": protocol.text},
            )
            stored = read_result(folder, key, checkpoint)
            assert stored is not None
        heads: dict[str, dict[str, float]] = stored["tables"]
        if row.head is not None:
            if row.head not in heads:
                raise TableError(
                    f"{table.path}: row {row.label!r}: {checkpoint} has no head '{row.head}'; its heads: "
                    f"{', '.join(heads)}"
                )
            scores = heads[row.head]
        else:
            scores = next(iter(heads.values()))
        if row.metric not in scores:
            raise TableError(
                f"{table.path}: row {row.label!r}: the evaluation has no '{row.metric}'; it has "
                f"{', '.join(scores)}"
            )
        return float(scores[row.metric]) * protocol.scale

    # ------------------------------------------------------------------ tables
    def walk(self, table: Table) -> tuple[list[RowResult], Path]:
        """Every row of a table in order, the table rewritten after each; returns the results and the markdown."""
        train = not self.options.collect
        if train and self.options.quick and not self.data_ready:
            quick.prepare_data(self.quick_roots, log=self.options.log)
            self.data_ready = True
        results: list[RowResult] = []
        if not train:
            results = [self.row_result(table, row, train=False) for row in table.rows]
            return results, self._write(table, results)
        try:
            for index, row in enumerate(table.rows, start=1):
                self.options.log(f"== [{table.name} {index}/{len(table.rows)}] {row.label}")
                results.append(self.row_result(table, row, train=True))
                self._write(table, results)
        except KeyboardInterrupt as interrupt:
            self._write(table, results)
            raise KeyboardInterrupt(
                f"{interrupt} -- the table {table.name} stopped at row {len(results) + 1}; what was done is kept: "
                f"run `{_rerun(table.name, self.options)}` again to finish it (finished rows are not trained again)"
            ) from None
        return results, self._write(table, results)

    def _write(self, table: Table, results: list[RowResult]) -> Path:
        """The table with the rows done so far and, for the others, what their folders hold now."""
        pending = [self.row_result(table, row, train=False) for row in table.rows[len(results) :]]
        return write_table(self.options.tables_dir, table, results + pending, quick=self.options.quick)

    def walk_all(self, tables: list[Table]) -> tuple[list[list[RowResult]], Path]:
        """Every table in turn, then ``all.md``: every table's section (the block README carries)."""
        walked = [self.walk(table)[0] for table in tables]
        sections = [
            render_markdown(table, results, quick=self.options.quick)
            for table, results in zip(tables, walked)
        ]
        return walked, write_all(self.options.tables_dir, sections)


def _rerun(name: str, options: WalkOptions) -> str:
    return f"bash start.sh table {name}" + (" --quick" if options.quick else "")


def _free_memory() -> None:
    """Give back what a finished or failed row held (GPU memory above all) before the next one starts."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
