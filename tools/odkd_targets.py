"""What ODKD's processing does to perfect teacher maps: empty targets and the decoded position of each target.

Usage (from the repository root)::

    python tools/odkd_targets.py [--coco-root ../shared/data/coco] [--ann-file annotations/person_keypoints_sample.json]
                                 [--synthetic-root DIR] [--tau 0.5]

The teachers are made perfect: their heatmaps are the ground-truth targets (the codec's Gaussians) and the
senior teacher's mask is the person's instance mask, both at the COCO setting of ``experiments/odkd``
(256x192 input, 64x48 heatmaps, sigma 2; validation crops, no augmentation). Each map then goes through the
loss's own code (``ODKDLoss.primary_target``: binarization; ``senior_target``: restriction to the mask, then
binarization) for every ``binarize`` x ``tau_mode``, and the tool prints, over the labelled joints:

- ``empty``: the share whose processed map is all zero (such a joint gets weight 0 in the distillation term;
  before, it was taught "no joint here");
- ``decode err``: the mean and the largest distance, in heatmap pixels, between the true joint and the
  codec's decode (argmax + quarter pixel) of the processed map, over the non-empty maps. A hard-binarized
  sigma-2 peak is a flat 21-pixel plateau: the argmax takes its first pixel in raster order and the quarter
  pixel cannot recover the centre. The ``gaussian`` row is the codec's own rounding error.

It reads the real COCO sample (``--coco-root``) and a synthetic COCO-format set (``--synthetic-root``; written to
a temporary folder with the demo's generator when not given). Everything is deterministic: no training.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.cli import one_paragraph  # noqa: E402
from utils.errors import UserError  # noqa: E402

ODKD_SETTING = {"input_size": [192, 256], "heatmap_size": [48, 64], "sigma": 2.0}  # experiments/odkd
VARIANTS = (  # (row label, binarize, tau_mode)
    ("gaussian (binarize: none)", "none", "absolute"),
    ("hard, absolute tau", "hard", "absolute"),
    ("hard, relative tau", "hard", "relative"),
    ("soft, absolute tau", "soft", "absolute"),
    ("soft, relative tau", "soft", "relative"),
)


@dataclass
class PerfectTeachers:
    """Ground-truth maps as both teachers' heatmaps, the instance masks as the senior teacher's mask logits,
    the labelled joints and their true positions in heatmap pixels."""

    heatmaps: torch.Tensor  # (N, J, h, w)
    mask_logits: torch.Tensor  # (N, 1, h, w)
    labelled: np.ndarray  # (N, J) bool
    joints: np.ndarray  # (N, J, 2) heatmap pixels


def perfect_teachers(root: Path, ann_file: str) -> PerfectTeachers:
    """Every validation person of a COCO-format folder at the ODKD setting, as perfect teacher outputs."""
    from datasets.registry import build_dataset
    from datasets.transforms import affine_points, crop_matrix

    section = {
        "name": "coco",
        "root": str(root),
        "ann_file": ann_file,
        "use_gt_boxes": True,
        "with_mask": True,
    }
    dataset = build_dataset({**section, **ODKD_SETTING}, "valid", False)
    maps, masks, labelled, joints = [], [], [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        record, draw = dataset.records[index], dataset.draw_augmentation(index, 0)
        matrix = crop_matrix(draw.center, draw.scale, draw.rotation, dataset.input_size)
        joints.append(dataset.codec.input_to_heatmap(affine_points(record.joints, matrix)))
        maps.append(sample["target"].double())
        coverage = sample["mask"].double().clamp(1e-6, 1 - 1e-6)
        masks.append(torch.log(coverage / (1 - coverage)))  # sigmoid gives the coverage back
        labelled.append(sample["target_weight"][:, 0].numpy() > 0)
    return PerfectTeachers(torch.stack(maps), torch.stack(masks), np.stack(labelled), np.stack(joints))


def measure(teachers: PerfectTeachers, tau: float) -> list[dict[str, object]]:
    """For each variant and each teacher, the empty share and the decode error over the labelled joints."""
    from datasets.codec import HeatmapCodec
    from losses.odkd import ODKDLoss
    from models.output import PoseOutput

    output = PoseOutput(stacks=[teachers.heatmaps], branches=[teachers.heatmaps], mask=teachers.mask_logits)
    rows = []
    for label, binarize, tau_mode in VARIANTS:
        loss = ODKDLoss(tau=tau, binarize=binarize, tau_mode=tau_mode)
        for teacher, target in (
            ("PT", loss.primary_target(output)),
            ("ST in mask", loss.senior_target(output)),
        ):
            coords, peaks = HeatmapCodec.decode(target)
            present = peaks[..., 0].numpy() > 0
            error = np.linalg.norm(coords.double().numpy() - teachers.joints, axis=2)
            used = teachers.labelled & present
            rows.append(
                {
                    "variant": label,
                    "teacher": teacher,
                    "labelled": int(teachers.labelled.sum()),
                    "empty": int((teachers.labelled & ~present).sum()),
                    "mean_error": float(error[used].mean()) if used.any() else float("nan"),
                    "max_error": float(error[used].max()) if used.any() else float("nan"),
                }
            )
    return rows


def format_rows(title: str, rows: list[dict[str, object]]) -> str:
    """One plain-text table."""
    lines = [
        title,
        f"{'variant':<27}{'teacher':<12}{'labelled':>9}{'empty':>7}{'empty %':>9}{'decode err':>12}{'max':>7}",
    ]
    for row in rows:
        share = 100.0 * row["empty"] / max(row["labelled"], 1)
        lines.append(
            f"{row['variant']:<27}{row['teacher']:<12}{row['labelled']:>9}{row['empty']:>7}{share:>8.1f}%"
            f"{row['mean_error']:>12.3f}{row['max_error']:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the two tables; exit 2 with one ``error:`` paragraph on bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--coco-root", type=Path, default=Path("../shared/data/coco"), help="real COCO folder"
    )
    parser.add_argument(
        "--ann-file", default="annotations/person_keypoints_sample.json", help="under --coco-root"
    )
    parser.add_argument(
        "--synthetic-root", type=Path, help="synthetic COCO folder (default: written to a temp dir)"
    )
    parser.add_argument("--tau", type=float, default=0.5, help="binarization threshold (ODKD's default 0.5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    setting = "256x192 input, 64x48 heatmaps, sigma 2; decode error in heatmap pixels (x4 = input pixels)"
    try:
        real = perfect_teachers(args.coco_root, args.ann_file)
        print(format_rows(f"real COCO ({args.coco_root / args.ann_file}), perfect teachers, {setting}",
                          measure(real, args.tau)))  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            root = args.synthetic_root
            if root is None:
                from datasets.synthetic_coco import make_synthetic_coco

                root = make_synthetic_coco(Path(folder) / "coco", num_train=1, num_valid=60)
            synthetic = perfect_teachers(root, "annotations/person_keypoints_{split}.json")
            print()
            print(format_rows(f"synthetic COCO ({root if args.synthetic_root else 'generated, seed 0'}), "
                              f"perfect teachers, {setting}", measure(synthetic, args.tau)))  # fmt: skip
    except UserError as error:
        print(f"error: {one_paragraph(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
