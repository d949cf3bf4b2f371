"""Export the deployable network of a checkpoint to ONNX, checked against PyTorch, with a sidecar JSON.

Usage (from the repository root)::

    python tools/export.py CHECKPOINT --onnx OUT.onnx [--input-size H W] [--dynamic-batch] [--opset N]
                           [--head NAME] [--image PHOTO.jpg]
    python tools/export.py CHECKPOINT --onnx OUT_int8.onnx --int8 --calibration IMAGE_FOLDER_OR_EXPERIMENT
                           [--calibration-count N] [--int8-max-displacement PX] [--accept-int8-error]

CHECKPOINT is a ``deploy.pth`` (one network), or a multi-branch ``best.pth`` / ``last.pth`` with ``--head``
naming the branch to extract. The graph's one output is the final heatmaps. The file is checked with
``onnx.checker`` and run with onnxruntime next to PyTorch on a real image crop (exit 2 when the heatmaps differ
by more than 1e-4); ``OUT.json`` beside it says how to crop, normalise and decode. With ``--int8`` the checked
graph is quantized statically (onnxruntime, QDQ, per-channel int8 weights) on person crops of the calibration
source, and written only when its keypoints stay within the stated bound of the fp32 graph's. Needs
``requirements-export.txt``. See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import run_cli  # noqa: E402
from engine.convert.int8 import (  # noqa: E402
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_MAX_DISPLACEMENT,
    Int8Request,
)
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
    quantization = parser.add_argument_group("int8 (static quantization, onnxruntime)")
    quantization.add_argument(
        "--int8", action="store_true", help="write a statically quantized int8 graph (needs --calibration)"
    )
    quantization.add_argument(
        "--calibration",
        metavar="DIR_OR_EXPERIMENT",
        help="a folder of images (each whole image one person) or an experiment (e.g. mpii/demo: its "
        "training persons, cropped from their boxes)",
    )
    quantization.add_argument(
        "--calibration-root", metavar="DIR", help="data.root of the calibration experiment"
    )
    quantization.add_argument(
        "--calibration-count",
        type=int,
        default=DEFAULT_CALIBRATION_COUNT,
        metavar="N",
        help=f"crops to calibrate on, evenly spaced over the source (default {DEFAULT_CALIBRATION_COUNT})",
    )
    quantization.add_argument(
        "--calibration-method", choices=CALIBRATION_METHODS, default="minmax", help="default minmax"
    )
    quantization.add_argument(
        "--reduce-range", action="store_true", help="7-bit weights, for x86 CPUs without VNNI"
    )
    quantization.add_argument(
        "--int8-max-displacement",
        type=float,
        default=DEFAULT_MAX_DISPLACEMENT,
        metavar="PX",
        help="bound on the mean keypoint shift from fp32, in heatmap pixels "
        f"(default {DEFAULT_MAX_DISPLACEMENT}); above it nothing is written",
    )
    quantization.add_argument(
        "--accept-int8-error",
        action="store_true",
        help="write the int8 file even above the bound (a warning, recorded in the sidecar)",
    )
    args = parser.parse_args(argv)
    if args.int8 != (args.calibration is not None):
        parser.error("--int8 and --calibration go together: int8 ranges are calibrated on person crops")

    from engine.convert.onnx import export_onnx

    int8 = None
    if args.int8:
        int8 = Int8Request(
            calibration=args.calibration,
            count=args.calibration_count,
            data_root=args.calibration_root,
            method=args.calibration_method,
            reduce_range=args.reduce_range,
            max_displacement=args.int8_max_displacement,
            accept_error=args.accept_int8_error,
        )

    export_onnx(
        args.checkpoint,
        args.onnx,
        input_hw=tuple(args.input_size) if args.input_size else None,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        head=args.head,
        image=args.image,
        overwrite=args.overwrite,
        int8=int8,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
