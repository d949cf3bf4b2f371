"""JPEG decoders against OpenCV: identical pixels on every real sample JPEG, and decode time per image.

    python benchmarks/jpeg_decoders.py [--data ../shared/data] [--rounds 20]

Decoders: OpenCV (``cv2.imdecode``, the project's reader), simplejpeg (``read_image(decoder="simplejpeg")``:
accurate DCT, fancy upsampling, BGR) and torchvision's ``decode_jpeg`` (RGB, flipped to BGR to compare). A
decoder whose package is absent gets a "not installed" row. Each round decodes every image once with every
decoder in turn (interleaved), so a change in the machine's load falls on all alike; the table gives the
median over rounds of the time to decode all images, per image, and the ratio to OpenCV.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.inference_setups import cpu_name, load_text, package_version  # noqa: E402
from datasets.transforms import IMREAD_FLAGS, read_image_bytes, simplejpeg_decode  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.paths import SHARED_DATA  # noqa: E402

Decoder = Callable[[np.ndarray], np.ndarray]


def opencv_decoder() -> Decoder:
    import cv2

    return lambda data: cv2.imdecode(data, IMREAD_FLAGS)


def simplejpeg_decoder() -> Decoder:
    importlib.import_module("simplejpeg")
    return simplejpeg_decode


def torchvision_decoder() -> Decoder:
    """torchvision's decode_jpeg; torchvision 0.29 deprecates its image decoding (TorchCodec): warning muted."""
    import torch

    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io")
    from torchvision.io import decode_jpeg

    def decode(data: np.ndarray) -> np.ndarray:
        rgb = decode_jpeg(torch.from_numpy(data.copy())).permute(1, 2, 0).numpy()
        return np.ascontiguousarray(rgb[:, :, ::-1])

    return decode


DECODERS = {
    "OpenCV cv2.imdecode": ("opencv-python", opencv_decoder),
    "simplejpeg decode_jpeg (fastdct=False, fastupsample=False)": ("simplejpeg", simplejpeg_decoder),
    "torchvision.io.decode_jpeg": ("torchvision", torchvision_decoder),
}


def cv2_version() -> str:
    import cv2

    return str(cv2.__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="folder searched for *.jpg")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths or args.rounds < 1:
        raise UserError(f"--data {args.data}: no JPEG files there (or --rounds {args.rounds} < 1)")
    encoded = [read_image_bytes(path) for path in paths]
    ready: dict[str, Decoder] = {}
    absent: dict[str, str] = {}
    for name, (package, make) in DECODERS.items():
        try:
            ready[name] = make()
        except ImportError as error:
            absent[name] = f"not installed ({package}: {error})"
    reference = [ready["OpenCV cv2.imdecode"](data) for data in encoded]
    identical = {}
    for name, decode in ready.items():
        decoded = [decode(data) for data in encoded]
        identical[name] = sum(
            d is not None and d.shape == r.shape and np.array_equal(d, r) for d, r in zip(decoded, reference)
        )
    load_before = load_text()
    times: dict[str, list[float]] = {name: [] for name in ready}
    for _ in range(args.rounds):
        for name, decode in ready.items():
            start = time.perf_counter()
            for data in encoded:
                decode(data)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["OpenCV cv2.imdecode"])
    print(
        f"{len(paths)} JPEGs under {args.data}; {cpu_name()}, {os.cpu_count()} cores, 1 process; OpenCV "
        f"{cv2_version()}, simplejpeg {package_version('simplejpeg')}, torchvision "
        f"{package_version('torchvision')}, Python {sys.version.split()[0]}; median of {args.rounds} interleaved "
        f"rounds; {load_before} before, {load_text()} after\n"
    )
    print("| decoder | identical to OpenCV | ms per image | time / OpenCV |")
    print("|---|---|---|---|")
    for name in DECODERS:
        if name in absent:
            print(f"| {name} | - | - | {absent[name]} |")
            continue
        median = statistics.median(times[name])
        print(
            f"| {name} | {identical[name]} of {len(paths)} | {1000 * median / len(paths):.2f} | {median / base:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
