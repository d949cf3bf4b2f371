"""Write the synthetic MPII-format stick-figure data set used by the CPU demo and tests.

Usage (from the repository root)::

    python tools/make_synthetic.py OUT_DIR [--train 800] [--valid 200] [--size 128] [--seed 0]

OUT_DIR then holds ``annot/{train,valid}.json`` (HRNet JSON), ``annot/gt_{train,valid}.mat`` and
``images/*.jpg``, and is read by a config with ``data: {name: mpii, root: OUT_DIR}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import make_synthetic_mpii  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    """Parse the command line, write the data set and print where it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (created if needed)")
    parser.add_argument("--train", type=int, default=800, help="number of training images (one person each)")
    parser.add_argument("--valid", type=int, default=200, help="number of validation images")
    parser.add_argument("--size", type=int, default=128, help="square image size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    args = parser.parse_args(argv)
    if min(args.train, args.valid) < 0 or args.size < 32:
        parser.error("--train/--valid must be >= 0 and --size >= 32")
    start = time.perf_counter()
    root = make_synthetic_mpii(args.out_dir, args.train, args.valid, seed=args.seed, image_size=args.size)
    print(
        f"wrote {args.train} train + {args.valid} valid images to {root} in {time.perf_counter() - start:.1f} s"
    )
    return root


if __name__ == "__main__":
    main()
