"""Input-pipeline and evaluation speed: samples/second of one loader worker, with full training augmentation.

Usage (from the repository root)::

    python benchmarks/input_pipeline.py [--data ../shared/data/mpii] [--samples 200]

Rows (one process, one thread for OpenCV and PyTorch, i.e. what one DataLoader worker does; best of 3 runs):

- the full training sample (read JPEG, scale/rotation/flip, affine warp, normalise, encode) on the real MPII
  JPEGs of ``annot/sample.json`` (1280x720 and 854x480, 256x256 crops) and on the synthetic set (128x128
  images, 128x128 crops), and the same with HRNet's per-joint Python loop as the encoder ("naive");
- the heatmap encoder alone: the vectorised codec against HRNet's loop;
- PCKh on all 2958 validation persons: vectorised against a per-person, per-joint Python loop;
- generating 1000 synthetic images.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.codec import HeatmapCodec  # noqa: E402
from datasets.mpii import MPIIDataset, load_mpii_records  # noqa: E402
from datasets.synthetic import make_synthetic_mpii  # noqa: E402
from datasets.transforms import read_image  # noqa: E402
from utils.pckh import evaluate_prediction_file, load_gt_mat, load_pred_mat  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii"


def hrnet_generate_target(
    codec: HeatmapCodec, joints: np.ndarray, joints_vis: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's JointsDataset.generate_target (Gaussian branch): one Python iteration per joint."""
    width, height = codec.heatmap_size
    sigma = codec.sigma
    target_weight = np.asarray(joints_vis, dtype=np.float32).reshape(-1, 1).copy()
    target = np.zeros((len(joints), height, width), dtype=np.float32)
    tmp_size = sigma * 3
    for joint_id in range(len(joints)):
        mu_x = int(joints[joint_id][0] / codec.stride[0] + 0.5)
        mu_y = int(joints[joint_id][1] / codec.stride[1] + 0.5)
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= width or ul[1] >= height or br[0] < 0 or br[1] < 0:
            target_weight[joint_id] = 0
            continue
        size = 2 * tmp_size + 1
        x = np.arange(0, size, 1, np.float32)
        y = x[:, np.newaxis]
        x0 = y0 = size // 2
        g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
        g_x = max(0, -ul[0]), min(br[0], width) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], height) - ul[1]
        img_x = max(0, ul[0]), min(br[0], width)
        img_y = max(0, ul[1]), min(br[1], height)
        if target_weight[joint_id] > 0.5:
            target[joint_id][img_y[0] : img_y[1], img_x[0] : img_x[1]] = g[g_y[0] : g_y[1], g_x[0] : g_x[1]]
    return target, target_weight


class NaiveEncoder(HeatmapCodec):
    """The codec with HRNet's loop as its encoder, to time the full pipeline the naive way."""

    def encode(self, joints: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return hrnet_generate_target(self, joints, visibility)


def loop_pckh(
    preds: np.ndarray, gt_joints: np.ndarray, annotated: np.ndarray, head_sizes: np.ndarray
) -> float:
    """PCKh@0.5 Mean (weighted, 14 joints) with one Python iteration per person and joint."""
    counts, hits = [0] * 16, [0] * 16
    for i in range(len(preds)):
        for j in range(16):
            if annotated[i][j] and j not in (6, 7):
                distance = math.hypot(
                    preds[i][j][0] - gt_joints[i][j][0], preds[i][j][1] - gt_joints[i][j][1]
                )
                counts[j] += 1
                hits[j] += distance <= 0.5 * head_sizes[i]
    return 100.0 * sum(hits) / sum(counts)


def rate(function: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` calls per second of ``function`` run ``count`` times."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, time.perf_counter() - start)
    return count / best


def pipeline_rate(dataset: MPIIDataset, samples: int) -> float:
    """Training samples per second, cycling through the dataset with a new augmentation draw each pass."""
    counter = iter(range(10**9))

    def one() -> None:
        step = next(counter)
        dataset.set_epoch(step // len(dataset))
        dataset[step % len(dataset)]

    return rate(one, samples)


def training_set(root: Path, size: int, encoder: type[HeatmapCodec], **kwargs: object) -> MPIIDataset:
    """An MPII training set with SPEC B augmentation, ``size`` x ``size`` crops, size/4 heatmaps."""
    codec = encoder((size, size), (size // 4, size // 4), 2.0)
    dataset = MPIIDataset(root, "train", train=True, codec=codec, **kwargs)
    return dataset


def main(argv: list[str] | None = None) -> None:
    """Run every measurement and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real MPII sample folder")
    parser.add_argument("--samples", type=int, default=200, help="samples per pipeline measurement")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows: list[tuple[str, str, str]] = []

    real = {"annotation_file": "annot/sample.json"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic = make_synthetic_mpii(
            Path(tmp) / "synthetic", num_train=1000, num_valid=0, seed=0, image_size=128
        )
        rows.append(("generate 1000 synthetic 128x128 images", f"{time.perf_counter() - start:.2f} s", "-"))
        for label, root, size, extra in (
            ("real MPII JPEGs (sample.json), 256x256 crop", args.data, 256, real),
            ("synthetic set, 128x128 crop", synthetic, 128, {}),
        ):
            fast = pipeline_rate(training_set(root, size, HeatmapCodec, **extra), args.samples)
            naive = pipeline_rate(training_set(root, size, NaiveEncoder, **extra), args.samples)
            rows.append((f"training sample: {label}", f"{fast:.0f} samples/s", f"{naive:.0f} samples/s"))
        images = [
            record.image
            for record in load_mpii_records(args.data, "valid", annotation_file="annot/sample.json")
        ]
        decode = rate(lambda: [read_image(image) for image in images], max(1, args.samples // len(images)))
        rows.append(
            ("real MPII JPEGs: decoding alone (read_image)", f"{decode * len(images):.0f} images/s", "-")
        )

    codec = HeatmapCodec((256, 256), (64, 64), 2.0)
    joints = np.random.default_rng(0).uniform(0, 255, size=(16, 2))
    visible = np.ones(16)
    ours, hrnet = codec.encode(joints, visible), hrnet_generate_target(codec, joints, visible)
    if not all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ours, hrnet)):
        raise AssertionError("the codec and HRNet's loop encode different targets")
    encode_rate = rate(lambda: codec.encode(joints, visible), 2000)
    naive_rate = rate(lambda: hrnet_generate_target(codec, joints, visible), 2000)
    rows.append(("encode 16 joints, 64x64 heatmaps", f"{encode_rate:.0f} /s", f"{naive_rate:.0f} /s"))

    gt_path = args.data / "annot" / "detections_our_format.mat"
    start = time.perf_counter()
    evaluate_prediction_file(gt_path, gt_path)
    vectorised = time.perf_counter() - start
    gt, preds = load_gt_mat(gt_path), load_pred_mat(gt_path)
    start = time.perf_counter()
    loop_pckh(preds.tolist(), gt.joints.tolist(), gt.annotated.tolist(), gt.head_sizes.tolist())
    looped = time.perf_counter() - start
    rows.append(
        (
            "PCKh, 2958 persons (incl. reading the .mat)",
            f"{1000 * vectorised:.1f} ms",
            f"{1000 * looped:.1f} ms",
        )
    )

    print("| measurement (1 process, 1 thread) | this code | naive reference |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
