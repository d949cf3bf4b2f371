"""Pictures of a multi-branch OKDHP checkpoint: FAU weights per joint and branch, and every branch's heatmaps.

Usage (from the repository root)::

    python tools/inspect_okdhp.py CHECKPOINT [--config EXPERIMENT] [--set KEY=VALUE] [--data-root DIR]
                                  --out DIR [--images N]

CHECKPOINT is a multi-branch ``best.pth`` / ``last.pth`` (okdhp_hourglass or okdhp_mobile). The first N
validation persons of the config's dataset (default: the config saved in the checkpoint) give
``fau_weights.png`` and ``fau_weights.json`` (each branch's weight for each joint, averaged) and
``heatmaps_<k>.png`` (ground truth, ensemble and each branch, one column per joint). See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import add_config_arguments, overrides_from, run_cli  # noqa: E402
from engine.experiment.catalogue import resolve_config_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit 0 on success, 2 with one ``error:`` paragraph otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a multi-branch best.pth or last.pth")
    add_config_arguments(parser, required=False)
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--images", type=int, default=4, metavar="N", help="validation persons (default 4)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the pictures of an earlier inspection in --out"
    )
    args = parser.parse_args(argv)

    from engine.inference.inspection import inspect_checkpoint

    inspect_checkpoint(
        args.checkpoint,
        args.out,
        config_path=resolve_config_path(args.config) if args.config else None,
        overrides=overrides_from(args),
        num_images=args.images,
        overwrite=args.overwrite,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
