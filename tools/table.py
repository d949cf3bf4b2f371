"""One command per paper table: train what is missing, evaluate, and write the paper's numbers beside ours.

Usage (from the repository root; ``bash start.sh table ...`` runs the same)::

    python tools/table.py                         the tables, with their row counts
    python tools/table.py NAME [--list]           the rows of table NAME (experiments/tables/NAME.yaml) and their runs
    python tools/table.py NAME                    train the rows without a finished run (teachers first),
                                                  resume interrupted ones, evaluate, write the table
    python tools/table.py NAME --collect          only gather what exists ("not run" for a missing row)
    python tools/table.py NAME --quick            the same walk on synthetic data, tiny inputs, two short
                                                  epochs per row: minutes on a CPU (output/tables_quick/)
    python tools/table.py all [--collect]         every table in turn, plus all.md (the block README carries)

Options: ``--output-root DIR`` (default ``output``, or ``output/tables_quick`` with ``--quick``): runs go to
``DIR/<family>_<name>/`` as with ``start.sh <experiment>``, tables to ``DIR/tables/NAME.md`` and ``.json``;
``--data-root [DATASET=]DIR`` (repeatable; without ``DATASET=`` for every dataset of the table);
``--set KEY=VALUE`` for every row (e.g. ``--set runtime.precision=bf16``). The exit code is 0 when every
row has its number or a reason it has none, 1 when a row failed (its error is in the table), 2 for a usage
error. The table command runs in one process; rows trained elsewhere (e.g. with torchrun) into the same
folders are recognised as finished and only evaluated.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import one_paragraph, run_cli  # noqa: E402
from engine.experiment.catalogue import TRAIN_FAMILIES  # noqa: E402
from engine.tables.spec import ALL, Table, TableError, load_table, table_names, training_order  # noqa: E402

if TYPE_CHECKING:
    from engine.tables.walk import TableWalk

QUICK_ROOT = Path("output/tables_quick")
# On a shared 2-core machine two threads ran a quick training step 20x slower than one (docs/tables.md).
QUICK_THREADS = 1
DATASETS = tuple(name for names in TRAIN_FAMILIES.values() for name in names)  # mpii, coco, ochuman


def parse_data_roots(items: list[str]) -> dict[str, str]:
    """``['coco=/data/coco', '/data/mpii']`` -> ``{'coco': '/data/coco', '': '/data/mpii'}``."""
    roots = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if sep and name in DATASETS:
            roots[name] = folder
        else:
            roots[""] = item
    return roots


def list_tables() -> None:
    """The table names, their row counts and titles."""
    print(
        "tables (experiments/tables/<name>.yaml; run one with: bash start.sh table NAME [--quick | --collect | --list]):"
    )
    for name in table_names():
        table = load_table(name)
        print(f"  {name:<16} {len(table.rows):>3} rows  {table.title}")
    print(f"  {ALL:<16}          every table in turn")


def list_rows(tables: list[Table], walk: TableWalk) -> None:
    """Each table's rows: label, experiment, paper value, source, and the state of its run folder."""
    for table in tables:
        print(f"{table.name}: {table.title}\n  protocol: {table.protocol.text}\n  paper: {table.source}")
        for index, row in enumerate(table.rows, start=1):
            if row.experiment is None:
                state = f"not built: {row.not_built}"
            else:
                try:
                    state = walk.run_state(row.experiment).describe()
                except Exception as error:  # a row whose config cannot be read says so and the list goes on
                    state = f"error: {one_paragraph(error)}"
            what = row.experiment or "(none)"
            extra = "".join(
                f" {v}" for v in (row.head, None if row.metric == table.protocol.metric else row.metric) if v
            )
            paper = "not reported" if row.paper is None else row.paper
            print(f"  {index:>2}. {row.label}: {what}{extra} | paper {paper} ({row.source}) | {state}")
        order = training_order(table.experiments)
        teachers = [e for e in order if e not in table.experiments]
        if teachers:
            print(f"  trained first (teachers): {', '.join(teachers)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", nargs="?", help=f"a table (experiments/tables/NAME.yaml), a table yaml path, or '{ALL}'"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--collect", action="store_true", help="only gather what exists; train nothing")
    mode.add_argument("--list", action="store_true", help="show the rows and the state of their runs")
    parser.add_argument(
        "--quick", action="store_true", help="synthetic data, tiny inputs, two short epochs per row"
    )
    parser.add_argument("--output-root", type=Path, default=None, help="runs and tables (default output)")
    parser.add_argument(
        "--data-root", action="append", default=[], metavar="[DATASET=]DIR",
        help="dataset folder (mpii=, coco=, ochuman=; without a name: every dataset)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value of every row, e.g. --set runtime.precision=bf16 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (default: torch's choice; 1 with --quick, see docs/tables.md)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.name is None:
        list_tables()
        return 0
    if args.quick and args.data_root:
        parser.error("--quick writes and uses its own synthetic data sets: drop --data-root")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TableError(
            "the table command runs in one process, not under torchrun: train rows on several GPUs with "
            "`torchrun ... train_mpii.py --config EXPERIMENT --output-dir output/<family>_<name>`, then run "
            "`bash start.sh table NAME`, which evaluates the finished runs without training them again"
        )
    import torch

    from engine.tables.walk import TableWalk, WalkOptions  # torch is imported only past the cheap paths

    threads = args.threads or (QUICK_THREADS if args.quick else None)
    if threads is not None:
        torch.set_num_threads(threads)

    tables = [load_table(n) for n in table_names()] if args.name == ALL else [load_table(args.name)]
    options = WalkOptions(
        output_root=args.output_root or (QUICK_ROOT if args.quick else Path("output")),
        quick=args.quick,
        collect=args.collect,
        data_roots=parse_data_roots(args.data_root),
        overrides=list(args.overrides),
        log=lambda line: print(line, flush=True),
        describe=one_paragraph,
    )
    walk = TableWalk(options)
    if args.list:
        list_rows(tables, walk)
        return 0
    started = time.perf_counter()
    if args.name == ALL:
        walked, path = walk.walk_all(tables)
    else:
        results, path = walk.walk(tables[0])
        walked = [results]
    print()
    print(path.read_text(), end="")
    failed = [r for results in walked for r in results if r.status == "error"]
    print(
        f"\nwritten: {path} (and .json beside each table); {len(failed)} row(s) failed; "
        f"wall time {time.perf_counter() - started:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
