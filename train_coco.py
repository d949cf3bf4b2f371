"""Train a pose network on COCO: `python train_coco.py --config experiments/coco/<experiment>.yaml`."""

import sys

from engine.cli import run_cli, train_main

if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: train_main("coco", argv)))
