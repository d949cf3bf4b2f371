"""Train a pose network on MPII: `python train_mpii.py --config experiments/mpii/<experiment>.yaml`."""

import sys

from engine.cli import run_cli, train_main

if __name__ == "__main__":
    sys.exit(run_cli(lambda argv: train_main("mpii", argv)))
