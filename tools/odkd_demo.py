"""The whole ODKD pipeline on a CPU in minutes: two teachers, then students with and without distillation over
several seeds, one table of mean and spread.

Usage (from the repository root; ``bash start.sh odkd-demo`` runs the same)::

    python tools/odkd_demo.py [--seeds 3] [--data-root data/demo_coco] [--output-root output] [--quiet]

1. writes the synthetic COCO-format set (``datasets/synthetic_coco.py``) unless ``--data-root`` holds one;
2. trains the primary teacher (``experiments/odkd/demo_pt.yaml``) and the senior teacher with its mask head
   (``demo_st.yaml``, keypoints + mask BCE), once;
3. trains the student (``demo_student_*.yaml``) once per seed (``seed`` 0, 1, ...: initialisation,
   augmentation and order) in three variants: without distillation, with plain orderly heatmap distillation
   (the same teachers and schedule, maps as they are, no mask) and with ODKD as configured;
4. evaluates every ``deploy.pth`` on the synthetic validation images (COCO AP through pycocotools, flip test,
   ground-truth boxes) and prints one table: each teacher's AP, and each student variant's mean AP over the
   seeds with its sample standard deviation, its range and every seed's value, so that a difference between
   variants can be read against the spread between seeds.

Runs go to ``<output-root>/odkd_demo_{pt,st}`` and ``<output-root>/odkd_demo_<variant>_seed<k>`` and always
start over, so the demo gives the same numbers twice on the same machine. It shows the pipeline, not the
paper's numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import one_paragraph  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.paths import EXPERIMENTS_DIR  # noqa: E402

EXPERIMENTS = EXPERIMENTS_DIR / "odkd"
TEACHERS = (  # (row of the table, experiment yaml under experiments/odkd, run folder suffix)
    ("teacher PT", "demo_pt", "pt"),
    ("teacher ST", "demo_st", "st"),
)
PLAIN_KD = ["loss.binarize=none", "loss.mask_mode=none", "loss.mu=0.0"]  # heatmaps as they are, no mask
STUDENTS = (  # (row of the table, experiment yaml, its overrides, run folder prefix)
    ("no-KD", "demo_student_baseline", [], "no_kd"),
    ("heatmap KD", "demo_student_odkd", PLAIN_KD, "heatmap_kd"),
    ("ODKD", "demo_student_odkd", [], "odkd"),
)


def describe(section: dict) -> str:
    """A short name of a network for the table, e.g. 'hrnet w16 +mask' or 'hourglass 2x32'."""
    if section["name"] == "hrnet":
        return f"hrnet w{section['width']}" + (" +mask" if section.get("mask_head") else "")
    if section["name"] == "hourglass":
        return f"hourglass {section['num_stacks']}x{section['num_features']}"
    return section["name"]


@contextlib.contextmanager
def silenced(quiet: bool):
    """Swallow stdout and stderr while ``quiet`` (``--quiet`` prints only the table)."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def train_and_evaluate(name: str, overrides: list[str], output: Path, quiet: bool) -> dict:
    """Train one demo experiment into ``output`` (starting over) and evaluate its deploy.pth."""
    from engine.experiment.config import load_config
    from engine.inference.evaluation import evaluate_checkpoint
    from engine.training.run import TrainingRun
    from utils.flops import count_params

    config_path = EXPERIMENTS / f"{name}.yaml"
    config = load_config(config_path, overrides)
    started = time.perf_counter()
    with silenced(quiet):  # progress lines, warnings and tables; a UserError still propagates to main
        run = TrainingRun(config, output)
        run.fit(overwrite=True, log=(lambda _line: None) if quiet else print)
        trained = time.perf_counter() - started
        table = evaluate_checkpoint(
            output / "deploy.pth",
            config_path,
            overrides=overrides,
            output_dir=output / "eval_deploy",
            overwrite=True,  # the run started over: its earlier evaluation is out of date
        )
    return {
        "network": describe(config.model),
        "params": count_params(run.network),
        "AP": table["AP"],
        "AP50": table["AP50"],
        "train_s": trained,
    }


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of the seeds' values."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_table(teachers: list[tuple[str, dict]], students: list[tuple[str, list[dict]]], data: str) -> str:
    """The demo's one table: the teachers' AP, then each student variant's AP over the seeds (mean, sample
    standard deviation, range, every seed), with its mean AP50 and training seconds per run."""
    seeds = len(students[0][1]) if students else 0
    lines = [
        f"ODKD demo: COCO AP on the synthetic validation set {data} (flip test, ground-truth boxes)",
        f"{'run':<15}{'network':<18}{'params':>11}{'AP':>8}{'AP50':>8}{'train s':>9}",
    ]
    for label, row in teachers:
        lines.append(
            f"{label:<15}{row['network']:<18}{row['params']:>11,}{row['AP']:>8.3f}{row['AP50']:>8.3f}"
            f"{row['train_s']:>9.0f}"
        )
    lines += [
        "",
        f"students over {seeds} seed(s): mean AP, sample standard deviation (n - 1), range, AP of seed 0, 1, ...",
        f"{'student':<15}{'network':<18}{'params':>11}{'mean AP':>9}{'sd':>7}{'min':>7}{'max':>7}"
        f"{'AP50':>7}{'train s':>9}  per seed",
    ]
    for label, runs in students:
        aps = [run["AP"] for run in runs]
        mean, deviation = spread(aps)
        first = runs[0]
        lines.append(
            f"{label:<15}{first['network']:<18}{first['params']:>11,}{mean:>9.3f}{deviation:>7.3f}"
            f"{min(aps):>7.3f}{max(aps):>7.3f}{statistics.fmean(r['AP50'] for r in runs):>7.3f}"
            f"{statistics.fmean(r['train_s'] for r in runs):>9.0f}  {' '.join(f'{ap:.3f}' for ap in aps)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit 0 after printing the table, 2 with one ``error:`` paragraph."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path("data/demo_coco"), help="synthetic COCO folder"
    )
    parser.add_argument("--output-root", type=Path, default=Path("output"), help="where the runs go")
    parser.add_argument(
        "--seeds", type=int, default=3, help="student runs per variant, seeds 0..N-1 (default 3)"
    )
    parser.add_argument("--train", type=int, default=300, help="synthetic training images (if written)")
    parser.add_argument("--valid", type=int, default=60, help="synthetic validation images (if written)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic set (if written)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value in every config, e.g. --set train.epochs=2 --set train.lr_steps=[1]")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="print only the final table")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        print(f"error: --seeds must be at least 1, got {args.seeds}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        from datasets.synthetic_coco import make_synthetic_coco

        if not (args.data_root / "annotations" / "person_keypoints_val2017.json").is_file():
            make_synthetic_coco(args.data_root, args.train, args.valid, args.seed)
            print(
                f"wrote the synthetic COCO set {args.data_root} ({args.train} train, {args.valid} val images)"
            )
        common = [f"data.root={args.data_root}", *args.overrides]
        wired = [
            f"teachers.pt.checkpoint={args.output_root / 'odkd_demo_pt' / 'deploy.pth'}",
            f"teachers.st.checkpoint={args.output_root / 'odkd_demo_st' / 'deploy.pth'}",
        ]
        teachers = []
        for label, name, folder in TEACHERS:
            if not args.quiet:
                print(f"== {label}: experiments/odkd/{name}.yaml", flush=True)
            output = args.output_root / f"odkd_demo_{folder}"
            teachers.append((label, train_and_evaluate(name, common, output, args.quiet)))
        students = []
        for label, name, changes, folder in STUDENTS:
            runs = []
            for seed in range(args.seeds):
                if not args.quiet:
                    print(
                        f"== student {label}, seed {seed}: experiments/odkd/{name}.yaml {' '.join(changes)}"
                    )
                overrides = [
                    *common,
                    *(wired if name == "demo_student_odkd" else []),
                    *changes,
                    f"seed={seed}",
                ]
                output = args.output_root / f"odkd_demo_{folder}_seed{seed}"
                runs.append(train_and_evaluate(name, overrides, output, args.quiet))
            students.append((label, runs))
    except UserError as error:
        print(f"error: {one_paragraph(error)}", file=sys.stderr)
        return 2
    print(format_table(teachers, students, str(args.data_root)))
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
