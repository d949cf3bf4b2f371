"""Input-pipeline speed: training samples/second of one loader worker, released-style pipeline against this one.

Usage (from the repository root)::

    python benchmarks/input_pipeline.py [--data ../shared/data/mpii] [--samples 150] [--repeats 5]

One process with one thread for OpenCV and PyTorch (what one DataLoader worker does). Every pipeline makes
the same training samples (same persons, same scale/rotation/flip draws) and the pipelines are timed in
turn within each repeat, so that a change of load on a shared machine hits them alike; each keeps its best
repeat. Tables printed:

1. samples/s and ratio to the released-style pipeline, on the real MPII JPEGs of ``annot/sample.json``
   (1280x720 and 854x480 progressive JPEGs, 256x256 crops) and on the synthetic set (128x128 images and
   crops), with the share of a sample's time spent decoding the image:

   - released-style: the official OKDHP/HRNet sample, re-implemented here as the reference: full
     ``cv2.imread``, a flipped view ``img[:, ::-1]`` of the whole image when flipped (OpenCV copies it
     into a contiguous image before warping), HRNet's three-point affine, one ``warpAffine``, a Python loop
     over joints for the affine and for the Gaussians (HRNet's generate_target), torchvision's ToTensor +
     Normalize;
   - this project, default: the dataset as configured by default (bit-identical samples to before);
   - this project with ``data.reduced_decode: true`` (changes pixels: see docs/data.md);

2. what reduced decoding changes on these samples: how often it engages, with which factor, and the mean
   and max absolute difference of the crops against the full decode, in grey levels;
3. the heatmap encoder alone, PCKh on 2958 persons, synthetic-set generation.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torchvision import transforms as tv_transforms  # noqa: E402

from datasets.base import TopDownDataset  # noqa: E402
from datasets.codec import HeatmapCodec  # noqa: E402
from datasets.mpii import MPIIDataset  # noqa: E402
from datasets.pckh import evaluate_prediction_file, load_gt_mat, load_pred_mat  # noqa: E402
from datasets.synthetic import make_synthetic_mpii  # noqa: E402
from datasets.transforms import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    IMREAD_FLAGS,
    PIXEL_STD,
    crop_downsampling,
    read_image,
    read_image_reduced,
)
from utils.paths import SHARED_DATA  # noqa: E402

DEFAULT_DATA = SHARED_DATA / "mpii"


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


def three_point_affine(
    center: np.ndarray, scale: np.ndarray, rotation: float, output_size: tuple[int, int]
) -> np.ndarray:
    """HRNet's way to the crop matrix: three corresponding points (centre, a rotated "up", its normal) to OpenCV."""
    box_width = float(scale[0]) * PIXEL_STD
    out_w, out_h = output_size
    theta = math.radians(rotation)
    up = np.array([0.5 * box_width * math.sin(theta), -0.5 * box_width * math.cos(theta)])
    source = np.zeros((3, 2), np.float32)
    target = np.zeros((3, 2), np.float32)
    source[0] = center
    source[1] = center + up
    target[0] = (0.5 * out_w, 0.5 * out_h)
    target[1] = (0.5 * out_w, 0.5 * out_h - 0.5 * out_w)
    for points in (source, target):
        offset = points[0] - points[1]
        points[2] = points[1] + np.array([-offset[1], offset[0]])
    return cv2.getAffineTransform(source, target)


class ReleasedPipeline:
    """The released OKDHP/HRNet training sample, same draws as ``dataset``: the speed reference."""

    def __init__(self, dataset: TopDownDataset) -> None:
        self.dataset = dataset
        self.to_tensor = tv_transforms.Compose(
            [
                tv_transforms.ToTensor(),
                tv_transforms.Normalize(mean=IMAGENET_MEAN.tolist(), std=IMAGENET_STD.tolist()),
            ]
        )

    def __call__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = key
        dataset = self.dataset
        record = dataset.records[index]
        draw = dataset.draw_augmentation(index, epoch)
        image = cv2.imread(str(record.image), IMREAD_FLAGS)  # HRNet: IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION
        if dataset.color == "rgb_imagenet":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        joints = record.joints.copy()
        visible = record.joints_vis.copy()
        center = draw.center.copy()
        if draw.flipped:
            image = image[:, ::-1, :]
            width = image.shape[1]
            joints[:, 0] = width - 1 - joints[:, 0]
            for left, right in dataset.skeleton.flip_pairs:
                joints[[left, right]] = joints[[right, left]]
                visible[[left, right]] = visible[[right, left]]
            center[0] = width - 1 - center[0]
        matrix = three_point_affine(center, draw.scale, draw.rotation, dataset.input_size)
        crop = cv2.warpAffine(image, matrix, dataset.input_size, flags=cv2.INTER_LINEAR)
        for joint in range(len(joints)):
            if visible[joint] > 0:
                joints[joint] = matrix @ np.array([joints[joint][0], joints[joint][1], 1.0])
        target, weight = hrnet_generate_target(dataset.codec, joints, visible)
        return {
            "image": self.to_tensor(crop),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
        }


@dataclass
class Cost:
    """Per-sample cost of a pipeline: CPU milliseconds of this process and wall-clock milliseconds."""

    cpu_ms: float
    wall_ms: float


def interleaved_costs(
    functions: dict[str, Callable[[tuple[int, int]], object]], keys: list[tuple[int, int]], repeats: int
) -> dict[str, Cost]:
    """Per-call CPU and wall time of each function over ``keys``, best of ``repeats``, the functions taking turns.

    CPU time (``time.process_time``) leaves out the time another process held the core, so it is the
    steadier measure on a shared machine; the wall-clock rate is what a worker delivers.
    """
    cpu = dict.fromkeys(functions, math.inf)
    wall = dict.fromkeys(functions, math.inf)
    for _ in range(repeats):
        for name, function in functions.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for key in keys:
                function(key)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
            wall[name] = min(wall[name], time.perf_counter() - start_wall)
    return {name: Cost(1000 * cpu[name] / len(keys), 1000 * wall[name] / len(keys)) for name in functions}


def rate(function: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` calls per second of ``function`` run ``count`` times."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            function()
        best = min(best, time.perf_counter() - start)
    return count / best


def training_set(root: Path, size: int, **kwargs: object) -> MPIIDataset:
    """An MPII training set with SPEC B augmentation, ``size`` x ``size`` crops, size/4 heatmaps."""
    codec = HeatmapCodec((size, size), (size // 4, size // 4), 2.0)
    return MPIIDataset(root, "train", train=True, codec=codec, **kwargs)


def sample_keys(dataset: TopDownDataset, count: int) -> list[tuple[int, int]]:
    """``count`` (index, epoch) keys cycling through the persons, a new augmentation draw each pass."""
    return [(step % len(dataset), step // len(dataset)) for step in range(count)]


def grey_levels(image: torch.Tensor) -> np.ndarray:
    """A normalised (3, h, w) tensor back to grey levels."""
    return image.numpy().transpose(1, 2, 0) * IMAGENET_STD * 255.0 + IMAGENET_MEAN * 255.0


def check_same_samples(
    released: ReleasedPipeline, dataset: TopDownDataset, keys: list[tuple[int, int]]
) -> None:
    """The reference and the project make the same samples (crops within 1 grey level, equal targets)."""
    for key in keys:
        ours, theirs = dataset[key], released(key)
        if np.abs(grey_levels(ours["image"]) - grey_levels(theirs["image"])).max() > 1.0 + 1e-3:
            raise AssertionError(f"sample {key}: the released-style crop differs from the project's")
        if not torch.allclose(ours["target"], theirs["target"], rtol=0, atol=1e-6):
            raise AssertionError(f"sample {key}: the released-style targets differ from the project's")


def decode_functions(dataset: TopDownDataset) -> dict[str, Callable[[tuple[int, int]], object]]:
    """Decoding alone, as each pipeline decodes (released: cv2.imread; reduced: at the draw's factor)."""

    def reduced(key: tuple[int, int]) -> object:
        draw = dataset.draw_augmentation(*key)
        return read_image_reduced(
            dataset.records[key[0]].image, crop_downsampling(draw.scale, dataset.input_size)
        )

    return {
        "released": lambda key: cv2.imread(str(dataset.records[key[0]].image), IMREAD_FLAGS),
        "default": lambda key: read_image(dataset.records[key[0]].image),
        "reduced": reduced,
    }


def reduced_decode_effect(root: Path, size: int, keys: list[tuple[int, int]], **kwargs: object) -> str:
    """How often reduced decoding engages on these samples, its factors, and how much it changes the crops."""
    full = training_set(root, size, **kwargs)
    reduced = training_set(root, size, reduced_decode=True, **kwargs)
    factors: dict[int, int] = {}
    differences, engaged = [], []
    for key in keys:
        draw = full.draw_augmentation(*key)
        _, factor, _ = read_image_reduced(
            full.records[key[0]].image, crop_downsampling(draw.scale, full.input_size)
        )
        factors[factor] = factors.get(factor, 0) + 1
        a, b = full[key], reduced[key]
        if not (
            torch.equal(a["target"], b["target"]) and torch.equal(a["target_weight"], b["target_weight"])
        ):
            raise AssertionError(f"sample {key}: reduced decoding changed the targets")
        difference = np.abs(grey_levels(a["image"]) - grey_levels(b["image"]))
        differences.append(difference)
        if factor > 1:
            engaged.append(difference)
    every = np.stack(differences)
    shares = ", ".join(f"x{f}: {100 * n / len(keys):.0f}%" for f, n in sorted(factors.items()))
    text = f"decode factor {shares}; crop |diff| over all samples: mean {every.mean():.2f}, max {every.max():.0f}"
    if engaged:
        text += f"; over the reduced ones: mean {np.stack(engaged).mean():.2f}"
    return text + " grey levels; targets and weights identical"


def machine_line() -> str:
    """CPU, thread counts, load and library versions, for the table's caption."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load}; "
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, NumPy {np.__version__}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> None:
    """Run every measurement and print the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the real MPII sample folder")
    parser.add_argument("--samples", type=int, default=150, help="samples per pipeline and repeat")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; each pipeline keeps its best")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    print(f"before: {machine_line()}")

    real = {"annotation_file": "annot/sample.json"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic = make_synthetic_mpii(
            Path(tmp) / "synthetic", num_train=1000, num_valid=0, seed=0, image_size=128
        )
        generation = time.perf_counter() - start
        tables = []
        effects = []
        for label, root, size, extra in (
            ("real MPII JPEGs, 256x256 crop", args.data, 256, real),
            ("synthetic set, 128x128 crop", synthetic, 128, {}),
        ):
            default = training_set(root, size, **extra)
            reduced = training_set(root, size, reduced_decode=True, **extra)
            released = ReleasedPipeline(default)
            keys = sample_keys(default, args.samples)
            check_same_samples(released, default, keys[:20])
            costs = interleaved_costs(
                {"released": released, "default": default.__getitem__, "reduced": reduced.__getitem__},
                keys,
                args.repeats,
            )
            decodes = interleaved_costs(decode_functions(default), keys, args.repeats)
            tables.append((label, costs, decodes))
            effects.append((label, reduced_decode_effect(root, size, keys, **extra)))

    names = {
        "released": "released-style (OKDHP/HRNet reference)",
        "default": "this project, default (samples unchanged)",
        "reduced": "this project, `data.reduced_decode: true`",
    }
    for label, costs, decodes in tables:
        released_cost = costs["released"]
        print()
        print(
            f"| {label} (1 process, 1 thread) | CPU ms/sample | CPU cost: released / this | samples/s (wall) "
            "| speed-up (wall) | decode share (CPU) |"
        )
        print("|---|---|---|---|---|---|")
        for key, name in names.items():
            cost = costs[key]
            print(
                f"| {name} | {cost.cpu_ms:.2f} | {released_cost.cpu_ms / cost.cpu_ms:.2f}x | "
                f"{1000 / cost.wall_ms:.0f} | {released_cost.wall_ms / cost.wall_ms:.2f}x | "
                f"{100 * decodes[key].cpu_ms / cost.cpu_ms:.0f}% |"
            )
    print()
    print("| reduced decoding on these samples | effect |")
    print("|---|---|")
    for label, text in effects:
        print(f"| {label} | {text} |")

    rows: list[tuple[str, str, str]] = [
        ("generate 1000 synthetic 128x128 images", f"{generation:.2f} s", "-")
    ]
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
    print()
    print("| measurement (1 process, 1 thread) | this code | naive reference |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(f"after: {machine_line()}")


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


if __name__ == "__main__":
    main()
