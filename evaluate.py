"""Evaluate pose predictions with the field's protocols (MPII PCKh, COCO AP), or a checkpoint of this project.

python evaluate.py --preds pred.mat --gt gt_valid.mat [--threshold 0.5] [--json]
python evaluate.py --results results.json --ann person_keypoints_val2017.json [--nms] [--json]
python evaluate.py --config experiments/mpii/hg4_okdhp.yaml --checkpoint output/hg4_okdhp/best.pth [--json]
"""

import sys

from engine.cli import evaluate_main, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(evaluate_main))
