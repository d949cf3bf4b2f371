"""Export the deployable network of a checkpoint to ONNX, checked against PyTorch, with a sidecar JSON.

Usage (from the repository root)::

    python tools/export.py CHECKPOINT --onnx OUT.onnx [--input-size H W] [--dynamic-batch] [--opset N]
                           [--head NAME] [--image PHOTO.jpg]

CHECKPOINT is a ``deploy.pth`` (one network), or a multi-branch ``best.pth`` / ``last.pth`` with ``--head``
naming the branch to extract. The graph's one output is the final heatmaps. The file is checked with
``onnx.checker`` and run with onnxruntime next to PyTorch on a real image crop (exit 2 when the heatmaps differ
by more than 1e-4); ``OUT.json`` beside it says how to crop, normalise and decode. Needs
``requirements-export.txt``. See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import run_cli  # noqa: E402
from engine.convert.onnx import DEFAULT_OPSET  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: exit 0 on success, 2 with one ``error:`` paragraph otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="deploy.pth, or best.pth / last.pth with --head")
    parser.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="the file to write")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="input height and width (default: the size the network was trained with)",
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="a free batch dimension (default: batch 1)"
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--head", help="branch of a multi-branch checkpoint to export, e.g. branch0")
    parser.add_argument(
        "--image",
        type=Path,
        help="a real image for the onnxruntime check (default: the first sample image in ../shared/data)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUT.onnx and its sidecar OUT.json"
    )
    args = parser.parse_args(argv)

    from engine.convert.onnx import export_onnx

    export_onnx(
        args.checkpoint,
        args.onnx,
        input_hw=tuple(args.input_size) if args.input_size else None,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        head=args.head,
        image=args.image,
        overwrite=args.overwrite,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
