"""Top-down pose on any image, folder or video: draw the skeletons and write the keypoints in image pixels.

python demo.py photo.jpg --checkpoint output/mpii_demo/deploy.pth                  whole image = one person
python demo.py images/ --checkpoint deploy.pth --boxes boxes.json                 {file name: [[x, y, w, h]]}
python demo.py val2017/ --checkpoint deploy.pth --detections dets.json --score-threshold 0.5
python demo.py photo.jpg --onnx pose.onnx                                          onnxruntime, pose.json beside
python demo.py clip.mp4 --checkpoint deploy.pth [--detections dets.json]          video: dets' image_id = frame
See docs/deploy.md for the file formats.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: exit 0 on success, 2 with one ``error:`` paragraph otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs",
        type=Path,
        metavar="IMAGE_FOLDER_OR_VIDEO",
        help="an image, a folder of images, or a video (.mp4, .avi, ...)",
    )
    parser.add_argument("--checkpoint", type=Path, help="deploy.pth, or best.pth / last.pth with --head")
    parser.add_argument(
        "--onnx", type=Path, help="an exported file (tools/export.py) to run with onnxruntime instead"
    )
    persons = parser.add_mutually_exclusive_group()
    persons.add_argument("--boxes", type=Path, help="JSON {image file name: [[x, y, w, h], ...]}")
    persons.add_argument(
        "--detections",
        type=Path,
        help="COCO detection results; image_id = the file name stem as a number (a video: the frame index)",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=0.5, help="drop detections below this score (default 0.5)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("output/demo"), help="output folder (default output/demo)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in --out"
    )
    parser.add_argument(
        "--head", help="branch of a multi-branch checkpoint (branch0, ...) or 'ensemble' (PyTorch only)"
    )
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test")
    parser.add_argument("--device", help="PyTorch device (default: cuda when there is one, else cpu)")
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.onnx is None:
        parser.error("give --checkpoint (PyTorch) or --onnx (onnxruntime), or both")

    from engine.inference.demo import run_demo

    run_demo(
        args.inputs,
        checkpoint=args.checkpoint,
        onnx=args.onnx,
        boxes_file=args.boxes,
        detections_file=args.detections,
        score_threshold=args.score_threshold,
        out_dir=args.out,
        head=args.head,
        flip=args.flip,
        device=args.device,
        overwrite=args.overwrite,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
