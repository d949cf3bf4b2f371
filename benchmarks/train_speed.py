"""Training throughput of an experiment's model and inference latency of its deployable branch.

    python benchmarks/train_speed.py [--config mpii/hg4_okdhp] [--batch-size 16] [--device auto]

Synthetic input tensors (no data loading): this measures the network + loss + optimizer step alone, fp32,
the baseline that mixed precision, channels_last and torch.compile will be compared against. Prints a
markdown table with the device and library versions.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from losses.registry import build_loss  # noqa: E402
from models.registry import build_model  # noqa: E402
from utils.cli import resolve_config_path  # noqa: E402
from utils.config import load_config  # noqa: E402
from utils.runtime import make_runtime  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(step, device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds of one call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mpii/hg4_okdhp")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args(argv)

    config = load_config(resolve_config_path(args.config))
    runtime = make_runtime(args.device)
    device = runtime.device
    width, height = config.data["input_size"]
    heatmap_w, heatmap_h = config.data["heatmap_size"]
    joints = config.model.get("num_joints", 16)

    model = build_model(config.model).to(device)
    loss_fn = build_loss(config.loss).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    images = torch.randn(args.batch_size, 3, height, width, device=device)
    target = torch.rand(args.batch_size, joints, heatmap_h, heatmap_w, device=device)
    weight = torch.ones(args.batch_size, joints, 1, device=device)

    def train_step() -> None:
        terms = loss_fn(model(images), {"target": target, "target_weight": weight}, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()

    model.train()
    train_seconds = time_it(train_step, device, args.warmup, args.iters)

    deploy, _ = model.deploy("branch0")
    deploy.eval()
    single = images[:1]

    @torch.no_grad()
    def infer() -> None:
        deploy(single)

    latency = time_it(infer, device, args.warmup, args.iters)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    threads = torch.get_num_threads()
    print(
        f"device: {name} ({device}, {threads} CPU threads); torch {torch.__version__}; python {platform.python_version()}"
    )
    print()
    print("| experiment | measure | value |")
    print("|---|---|---|")
    print(
        f"| {config.experiment} | training, fp32, batch {args.batch_size} | {args.batch_size / train_seconds:.2f} images/s |"
    )
    print(f"| {config.experiment} | deployable branch, fp32, batch 1 | {latency * 1000:.1f} ms/image |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
