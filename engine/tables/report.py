"""A walked table as markdown and JSON: the paper's value beside ours and the difference, one line per row.

The markdown names the command that makes it and the protocol of its numbers, and never a time or a
machine-specific path, so the same runs give the same text (README carries the ``--collect`` output).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.tables.quick import DESCRIPTION as QUICK_DESCRIPTION
from engine.tables.spec import ALL, Row, Table

# A row's status: what the "ours" cell says when there is no number.
DONE, NOT_RUN, INTERRUPTED, ERROR, NOT_BUILT, NOT_EVALUATED = (
    "done",
    "not run",
    "interrupted",
    "error",
    "not built",
    "not evaluated",
)


@dataclass
class RowResult:
    """What the walk found or made for one row."""

    row: Row
    status: str
    detail: str = ""
    ours: float | None = None
    run: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def difference(self) -> float | None:
        if self.ours is None or self.row.paper is None:
            return None
        return self.ours - self.row.paper


def command(table: str, quick: bool) -> str:
    return f"bash start.sh table {table}" + (" --quick" if quick else "")


def _cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(table: Table, results: list[RowResult], *, quick: bool = False) -> str:
    """The table's section: a heading, the command, sources and protocol, then one line per row."""
    lines = [f"#### {table.title} (`{table.name}`)", ""]
    if quick:
        lines += [QUICK_DESCRIPTION, ""]
    lines += [
        f"`{command(table.name, quick)}` trains what is missing and evaluates; `--collect` only gathers what "
        f"exists. Paper values: {table.source}. Ours: {table.protocol.text}.",
        "",
    ]
    gflops = table.has_gflops
    header = ["row", "experiment", table.paper_column] + (["paper GFLOPs"] if gflops else [])
    header += ["ours", "ours - paper", "paper source", "status"]
    lines.append("| " + " | ".join(header) + " |")
    numeric = (table.paper_column, "paper GFLOPs", "ours", "ours - paper")
    lines.append("|" + "|".join("---:" if h in numeric else "---" for h in header) + "|")
    for result in results:
        row = result.row
        name = f"`{row.experiment}`" if row.experiment else "(none)"
        if row.head:
            name += f" {row.head}"
        if row.metric != table.protocol.metric:
            name += f" {row.metric}"
        paper = "not reported" if row.paper is None else f"{row.paper}"
        cells = [_cell(row.label), name, paper]
        if gflops:
            cells.append("" if row.paper_gflops is None else f"{row.paper_gflops:g}")
        ours = result.status if result.ours is None else f"{result.ours:.2f}"
        difference = result.difference
        cells += [
            ours,
            "" if difference is None else f"{difference:+.2f}",
            _cell(row.source),
            _cell(result.detail),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if table.notes:
        lines += ["", table.notes]
    return "\n".join(lines) + "\n"


def render_json(table: Table, results: list[RowResult], *, quick: bool = False) -> dict[str, Any]:
    """The same table as data: protocol, sources and every row's numbers, status and run folder."""
    return {
        "table": table.name,
        "title": table.title,
        "source": table.source,
        "paper_column": table.paper_column,
        "protocol": asdict(table.protocol),
        "quick": quick,
        "command": command(table.name, quick),
        "rows": [
            {
                "label": r.row.label,
                "experiment": r.row.experiment,
                "metric": r.row.metric,
                "head": r.row.head,
                "evaluate": r.row.evaluate,
                "paper": r.row.paper,
                "paper_gflops": r.row.paper_gflops,
                "source": r.row.source,
                "ours": r.ours,
                "difference": r.difference,
                "status": r.status,
                "detail": r.detail,
                "run": r.run,
                "seconds": r.seconds,
            }
            for r in results
        ],
    }


def write_table(folder: Path, table: Table, results: list[RowResult], *, quick: bool = False) -> Path:
    """``<folder>/<name>.md`` and ``.json``; returns the markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / f"{table.name}.md"
    markdown.write_text(render_markdown(table, results, quick=quick))
    (folder / f"{table.name}.json").write_text(json.dumps(render_json(table, results, quick=quick), indent=2))
    return markdown


def write_all(folder: Path, sections: list[str]) -> Path:
    """``<folder>/all.md``: every table's section, the block README carries."""
    path = folder / f"{ALL}.md"
    path.write_text("\n".join(sections))
    return path
