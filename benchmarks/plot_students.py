"""The students' speed-accuracy picture: batch-1 CPU latency against each student's accuracy.

    python benchmarks/plot_students.py docs/students.json --out docs/students_speed_accuracy.png
        [--setup "onnxruntime fp32" | --setup fastest] [--runs output] [--overwrite]

The latency comes from the students' table (``benchmarks/deploy_speed.py --students --json``): one setup for
every student (default onnxruntime fp32; ``fastest``: each student's fastest setup, named beside its point).
The accuracy is the paper's, read from the table files (``experiments/tables/*.yaml``,
``engine.tables.spec.load_table``): each student's rows without and with distillation (its experiment and
its no-KD twin), scored by each table's own protocol, so MPII (PCKh) and COCO (AP) get one panel each. Ours
is drawn where a run has a stored evaluation of its ``deploy.pth`` under ``--runs`` (what ``tools/table.py``
writes); a student with neither is listed under the picture, not drawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import run_cli  # noqa: E402
from engine.tables.runs import evaluation_key, read_result, run_folder  # noqa: E402
from engine.tables.spec import Row, Table, load_table, table_names  # noqa: E402
from engine.training.run import DEPLOY  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.output_paths import prepare_outputs  # noqa: E402

FASTEST = "fastest"


@dataclass(frozen=True)
class Point:
    """One accuracy of one student: the paper's or ours, without (baseline) or with distillation."""

    student: str
    latency_ms: float
    setup: str
    panel: str  # the table's protocol text: MPII PCKh or COCO AP
    kind: str  # "paper" or "ours"
    distilled: bool
    value: float


def accuracy_rows(experiments: list[str]) -> list[tuple[Table, Row]]:
    """Every table row of these experiments scored by its table's own metric (not a per-joint or head row)."""
    found = []
    for name in table_names():
        table = load_table(name)
        for row in table.rows:
            if row.experiment in experiments and row.metric == table.protocol.metric and row.head is None:
                found.append((table, row))
    return found


def ours(table: Table, row: Row, runs: Path) -> float | None:
    """The stored evaluation of the row's ``deploy.pth`` under ``runs`` (tools/table.py's), or None."""
    folder = run_folder(runs, row.experiment or "")
    protocol = table.protocol
    key = evaluation_key(DEPLOY, row.evaluation_config or "", protocol.boxes, protocol.flip, [])
    stored = read_result(folder, key, folder / DEPLOY)
    if stored is None:
        return None
    scores = next(iter(stored["tables"].values()))
    return float(scores[row.metric]) * protocol.scale if row.metric in scores else None


def chosen_setup(student: dict[str, Any], setup: str) -> str:
    """The setup whose latency is drawn: the one asked for, or the student's fastest."""
    if setup == FASTEST:
        return min(student["setups"], key=lambda name: student["setups"][name]["latency_ms"])
    if setup not in student["setups"]:
        raise UserError(
            f"--setup {setup}: the table of {student['name']} has no such setup; it has "
            f"{', '.join(student['setups'])} (or {FASTEST})"
        )
    return setup


def points(document: dict[str, Any], setup: str, runs: Path) -> tuple[list[Point], list[str]]:
    """The points to draw, and the students that have no accuracy to draw."""
    drawn, missing = [], []
    for student in document["students"]:
        name = chosen_setup(student, setup)
        latency = float(student["setups"][name]["latency_ms"])
        found = []
        for table, row in accuracy_rows(student["accuracy_experiments"]):
            distilled = row.experiment == student["experiment"]
            for kind, value in (("paper", row.paper), ("ours", ours(table, row, runs))):
                if value is not None:
                    found.append(
                        Point(student["name"], latency, name, table.protocol.text, kind, distilled, value)
                    )
        drawn += dict.fromkeys(found)  # a row in two tables (okdhp_mpii, okdhp_cost) is one point
        if not found:
            missing.append(student["name"])
    return drawn, missing


def draw(drawn: list[Point], missing: list[str], setup: str, header: dict[str, Any], out: Path) -> None:
    """One panel per protocol; paper values hollow, ours filled; circles without, squares with distillation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - matplotlib.ticker.ScalarFormatter

    panels = list(dict.fromkeys(point.panel for point in drawn)) or ["no accuracy to draw"]
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.2), squeeze=False)
    for axis, panel in zip(axes[0], panels):
        for point in (p for p in drawn if p.panel == panel):
            marker = "s" if point.distilled else "o"
            filled = point.kind == "ours"
            axis.scatter(
                point.latency_ms, point.value, marker=marker, s=46, edgecolors="C0" if filled else "C1",
                facecolors="C0" if filled else "none", linewidths=1.4,
            )  # fmt: skip
        labelled = {p.student: p for p in drawn if p.panel == panel}
        for point in labelled.values():
            suffix = f" ({point.setup})" if setup == FASTEST else ""
            axis.annotate(
                f"{point.student}{suffix}", (point.latency_ms, point.value), textcoords="offset points",
                xytext=(6, -3), fontsize=8,
            )  # fmt: skip
        latencies = [p.latency_ms for p in drawn if p.panel == panel] or [1.0]
        wide = max(latencies) / min(latencies) >= 3.0  # a log axis only where the latencies span one
        if wide:
            axis.set_xscale("log")
            axis.set_xlim(min(latencies) / 1.3, max(latencies) * 1.6)  # room for the labels
            axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        else:
            axis.set_xlim(0.0, max(latencies) * 1.4)
        scale = "; log" if wide else ""
        axis.set_xlabel(f"batch-1 latency, ms ({'fastest setup' if setup == FASTEST else setup}{scale})")
        axis.set_ylabel("accuracy")
        axis.set_title(panel[:70] + ("..." if len(panel) > 70 else ""), fontsize=9)
        axis.grid(alpha=0.3)
    legend = [
        plt.Line2D([], [], marker="o", ls="", mfc="none", mec="C1", label="paper, no KD"),
        plt.Line2D([], [], marker="s", ls="", mfc="none", mec="C1", label="paper, distilled"),
    ]
    if any(point.kind == "ours" for point in drawn):
        legend += [
            plt.Line2D([], [], marker="o", ls="", mfc="C0", mec="C0", label="ours, no KD"),
            plt.Line2D([], [], marker="s", ls="", mfc="C0", mec="C0", label="ours, distilled"),
        ]
    axes[0][0].legend(handles=legend, fontsize=8, loc="lower right")
    note = f"CPU: {header.get('cpu', '?')}, {header.get('threads', '?')} threads; torch {header.get('torch', '?')}, "
    note += f"onnxruntime {header.get('onnxruntime', '?')}"
    if missing:
        note += f"; no accuracy to draw: {', '.join(missing)}"
    figure.text(0.01, 0.01, note, fontsize=7)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "table", type=Path, help="the students' table JSON (deploy_speed.py --students --json)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument(
        "--setup", default="onnxruntime fp32", help=f"the setup whose latency is drawn, or {FASTEST}"
    )
    parser.add_argument("--runs", type=Path, default=Path("output"), help="where trained runs are (ours)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        document = json.loads(args.table.read_text())
        document["students"][0]["setups"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise UserError(
            f"{args.table}: not a students' table ({type(error).__name__}: {error}); write one with python "
            "benchmarks/deploy_speed.py --students --json PATH"
        ) from None
    prepare_outputs([args.out], "--out", inputs=[args.table], overwrite=args.overwrite)
    drawn, missing = points(document, args.setup, args.runs)
    draw(drawn, missing, args.setup, document.get("header", {}), args.out)
    print(f"wrote {args.out}: {len(drawn)} points of {len(document['students']) - len(missing)} students")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
