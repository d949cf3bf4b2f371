"""Command-line front ends shared by train_mpii.py, train_coco.py and evaluate.py.

Each entry point is argument parsing plus one call. A ``UserError`` (bad config, missing data, a checkpoint of
another model, a non-finite loss) ends the program with one paragraph on stderr and exit code 2, never a wall
of traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.experiment.catalogue import TRAIN_FAMILIES, missing_teachers, resolve_config_path, trainer_for
from utils.errors import ConfigError, UserError


def one_paragraph(error: BaseException) -> str:
    """The message of an error as one paragraph (a DataLoader worker's re-raised traceback is cut away)."""
    text = str(error)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+(Error|Exception): ", "", last.strip())
    return " ".join(text.split())


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a main function, turning user errors and Ctrl-C into a clear message and an exit code."""
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {one_paragraph(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print(str(error) or "interrupted", file=sys.stderr)
        return 130


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config", required=required, help="experiment yaml, or a name such as mpii/hg4_okdhp"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-4 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--data-root", help="shortcut for --set data.root=DIR")


def overrides_from(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    return overrides


def train_main(family: str, argv: Sequence[str] | None = None) -> int:
    """Train one experiment of a dataset family ('mpii' or 'coco')."""
    from engine.experiment.config import load_config
    from engine.training.run import TrainingRun

    parser = argparse.ArgumentParser(
        description=f"Train a pose network on {family.upper()} (single or OKDHP)."
    )
    add_config_arguments(parser)
    parser.add_argument("--output-dir", help="run folder (default: output/<experiment>)")
    parser.add_argument("--resume", action="store_true", help="continue from <output-dir>/last.pth")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an output folder that holds a run (deletes it)",
    )
    parser.add_argument(
        "--allow-change", action="append", default=[], metavar="KEY",
        help="with --resume: let this config key differ from the run's saved config, e.g. train.epochs to "
        "train longer (repeatable; the change is logged in log.jsonl)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other")
    if args.allow_change and not args.resume:
        parser.error("--allow-change goes with --resume (a fresh run takes any config)")

    config = load_config(resolve_config_path(args.config), overrides_from(args))
    if config.data["name"] not in TRAIN_FAMILIES[family]:
        other = next(f for f, names in TRAIN_FAMILIES.items() if config.data["name"] in names)
        raise ConfigError(
            f"{args.config} is a '{config.data['name']}' experiment; train it with train_{other}.py"
        )
    output_dir = Path(args.output_dir) if args.output_dir else Path("output") / config.experiment
    run = TrainingRun(config, output_dir)
    try:
        run.fit(
            resume=args.resume,
            overwrite=args.overwrite,
            allow_change=args.allow_change,
            log=lambda line: print(line, flush=True),
        )
    finally:
        run.runtime.close()
    return 0


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """Evaluate predictions files (MPII .mat, COCO results .json) or a checkpoint."""
    parser = argparse.ArgumentParser(
        description="Evaluate pose predictions: PCKh (MPII) from a .mat, COCO AP from a results .json, "
        "or a checkpoint of this project on its dataset.",
    )
    mode = parser.add_argument_group("predictions file (any method)")
    mode.add_argument("--preds", help="MPII predictions .mat holding 'preds' (N, 16, 2), 1-based pixels")
    mode.add_argument("--gt", help="MPII ground truth in the gt_valid.mat layout")
    mode.add_argument("--threshold", type=float, default=0.5, help="PCKh threshold (default 0.5)")
    mode.add_argument("--results", help="COCO keypoint results .json")
    mode.add_argument("--ann", help="COCO keypoint annotations .json")
    mode.add_argument("--nms", action="store_true", help="rescore and OKS-NMS the results first")
    ckpt = parser.add_argument_group("checkpoint")
    add_config_arguments(ckpt, required=False)
    ckpt.add_argument("--checkpoint", help="last.pth / best.pth (all heads) or deploy.pth (one network)")
    ckpt.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test")
    ckpt.add_argument("--output-dir", help="where tables, pred.mat / results and images go")
    ckpt.add_argument(
        "--vis", type=int, default=0, metavar="N", help="draw predictions on the first N images"
    )
    ckpt.add_argument("--workers", type=int, default=None, help="data loader workers")
    ckpt.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation in --output-dir"
    )
    ckpt.add_argument(
        "--split",
        choices=("valid", "test"),
        default="valid",
        help="the config's val_set (default) or test_set: COCO test-dev2017 has no ground truth, so its "
        "results JSON for the evaluation server is written and nothing is scored; OCHuman test is scored",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)

    if args.preds or args.gt:
        if not (args.preds and args.gt):
            parser.error("--preds and --gt go together")
        if not (math.isfinite(args.threshold) and args.threshold > 0):
            parser.error(f"--threshold must be a positive number (e.g. 0.5), got {args.threshold:g}")
        from datasets.pckh import evaluate_prediction_file, format_pckh_table

        table = evaluate_prediction_file(args.preds, args.gt, threshold=args.threshold)
        print(format_pckh_table(table, title=f"PCKh@{args.threshold:g} of {args.preds}"))
        result: dict = table
    elif args.results or args.ann:
        if not (args.results and args.ann):
            parser.error("--results and --ann go together")
        from datasets.coco_eval import evaluate_results_file, format_coco_table

        result = evaluate_results_file(args.results, args.ann, nms=args.nms)
        print(format_coco_table(result, title=f"COCO keypoint AP of {args.results}"))
    elif args.checkpoint:
        from engine.inference.evaluation import evaluate_checkpoint

        result = evaluate_checkpoint(
            checkpoint=Path(args.checkpoint),
            config_path=resolve_config_path(args.config) if args.config else None,
            overrides=overrides_from(args),
            flip=args.flip,
            output_dir=Path(args.output_dir) if args.output_dir else None,
            vis=args.vis,
            workers=args.workers,
            overwrite=args.overwrite,
            split=args.split,
        )
    else:
        parser.error("give --preds/--gt, --results/--ann, or --checkpoint [--config]")
    if args.json:
        print(json.dumps(result))
    return 0


def _start_helper(argv: Sequence[str] | None) -> int:
    """What start.sh asks about an experiment: ``python -m engine.cli trainer CONFIG`` and
    ``python -m engine.cli missing-teachers CONFIG [TRAINER ARGS]``, which reads the ``--set`` overrides among
    the trainer's arguments (the rest are not about teachers) so that it sees the teachers the run will see."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "trainer":
        print(trainer_for(args[1]))
        return 0
    if len(args) >= 2 and args[0] == "missing-teachers":
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--set", dest="overrides", action="append", default=[])
        known, _ = parser.parse_known_args(args[2:])
        print("\n".join(missing_teachers(args[1], known.overrides)))
        return 0
    print(
        "usage: python -m engine.cli trainer CONFIG | missing-teachers CONFIG [--set KEY=VALUE ...]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(run_cli(_start_helper))
