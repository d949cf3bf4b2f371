"""Training and inference throughput of an experiment's model under each speed switch of the runtime.

    python benchmarks/train_speed.py --config mpii/hg4_okdhp [--device cpu|cuda|auto] [--batch-size N]
        [--peak-tflops X [--peak-tflops-half Y]] [--threads N] [--warmup 2] [--iters 5]
        [--compile-timeout 900 | --no-compile]

One run measures every configuration side by side: fp32 eager (the released setup), channels_last, bf16
autocast, fp16 autocast + GradScaler (CUDA only), channels_last + bf16, torch.compile and everything
together. Each configuration gets its runtime from ``engine.runtime.execution.make_runtime`` (the seam the engine
uses) and runs the engine's step: forward under ``runtime.autocast()``, the loss in fp32 on
``output.float()``, ``runtime.backward_step``. Inputs and targets are random tensors (no data loading).
Steps are timed round-robin, one step of every configuration per round, after the warm-up steps, so that
a change of load on a shared machine hits all configurations alike; the table gives the median step.

Training counts the whole model (every branch, the FAU); inference is the deployable branch
(``model.deploy``) at the same batch size, under ``torch.no_grad()`` and the configuration's autocast. The
model FLOPs utilisation is FLOPs per image x images/s / peak, with FLOPs per image = 2 x MACs for
inference and 3 x 2 x MACs for training (the backward pass costs about twice the forward), MACs from
``tools/model_summary.summarize``; it needs ``--peak-tflops`` (the device's dense fp32 peak; the bf16/fp16
rows use ``--peak-tflops-half`` when given), "n/a" without it.

torch.compile runs in a child process (with fp32 eager again, as its own baseline) under
``--compile-timeout`` seconds: a platform where compiling fails or takes longer prints the reason instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.experiment.catalogue import resolve_config_path  # noqa: E402
from engine.experiment.config import ExperimentConfig, load_config  # noqa: E402
from engine.runtime.execution import Runtime, choose_device, make_runtime, native_bf16  # noqa: E402
from losses.registry import build_loss  # noqa: E402
from models.registry import build_model  # noqa: E402
from tools.model_summary import summarize  # noqa: E402
from utils.errors import ConfigError  # noqa: E402


@dataclass(frozen=True)
class Setup:
    """One row of the table: the runtime switches it turns on."""

    name: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False


BASELINE = Setup("fp32 eager (released setup)")
EAGER_SETUPS = (
    BASELINE,
    Setup("channels_last", channels_last=True),
    Setup("bf16 autocast", precision="bf16"),
    Setup("fp16 autocast + GradScaler", precision="fp16"),
    Setup("channels_last + bf16", precision="bf16", channels_last=True),
)
COMPILE_SETUPS = (
    Setup("torch.compile", compile=True),
    Setup("channels_last + bf16 + torch.compile", precision="bf16", channels_last=True, compile=True),
)
ALL_SETUPS = EAGER_SETUPS + COMPILE_SETUPS


@dataclass
class Result:
    """Median seconds of one training step and one inference step, or why the setup was not measured."""

    train_seconds: float | None = None
    infer_seconds: float | None = None
    skipped: str | None = None
    note: str = ""


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """The model, optimizer, inputs and step functions of one setup."""

    def __init__(self, setup: Setup, config: ExperimentConfig, device: str, batch_size: int) -> None:
        self.setup = setup
        self.runtime: Runtime = make_runtime(
            device, precision=setup.precision, channels_last=setup.channels_last, compile=setup.compile
        )
        width, height = config.data["input_size"]
        heatmap_w, heatmap_h = config.data["heatmap_size"]
        joints = int(config.model.get("num_joints", 16))
        torch.manual_seed(0)
        bare = build_model(config.model)
        deploy, _ = bare.deploy(bare.deployable_heads()[0])
        self.model = self.runtime.prepare(bare)
        self.deploy = self.runtime.prepare(deploy.eval())
        self.loss_fn = build_loss(config.loss).to(self.runtime.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr)
        on = self.runtime.device
        self.batch = {
            "image": self.runtime.images(torch.randn(batch_size, 3, height, width, device=on)),
            "target": torch.rand(batch_size, joints, heatmap_h, heatmap_w, device=on),
            "target_weight": torch.ones(batch_size, joints, 1, device=on),
        }

    def train_step(self) -> None:
        """The engine's training step (engine.training.loop.train_one_epoch) without the logging."""
        self.model.train()
        with self.runtime.autocast():
            output = self.model(self.batch["image"])
        terms = self.loss_fn(output.float(), self.batch, 0)
        self.runtime.backward_step(terms["total"], self.optimizer)

    @torch.no_grad()
    def infer_step(self) -> None:
        """One forward pass of the deployable branch on the batch."""
        with self.runtime.autocast():
            self.deploy(self.batch["image"])


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Wall-clock seconds of one call of ``step`` (GPU work included)."""
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def measure(
    setups: list[Setup], config: ExperimentConfig, device: str, batch_size: int, warmup: int, iters: int
) -> dict[str, Result]:
    """Median training and inference step of every setup, timed round-robin after the warm-up."""
    results: dict[str, Result] = {}
    benches: list[Bench] = []
    for setup in setups:
        try:
            bench = Bench(setup, config, device, batch_size)
            start = time.perf_counter()
            for _ in range(max(1, warmup)):
                bench.train_step()
                bench.infer_step()
            synchronize(bench.runtime.device)
            note = f"warm-up {time.perf_counter() - start:.0f} s (compiling)" if setup.compile else ""
        except ConfigError as error:
            results[setup.name] = Result(skipped="skipped: " + str(error).split(";")[0])
            continue
        except Exception as error:  # a backend that cannot run this setup on this platform
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            results[setup.name] = Result(skipped=f"fails here: {type(error).__name__}: {first[:160]}")
            continue
        benches.append(bench)
        results[setup.name] = Result(note=note)
    train_times: dict[str, list[float]] = {b.setup.name: [] for b in benches}
    infer_times: dict[str, list[float]] = {b.setup.name: [] for b in benches}
    for _ in range(iters):
        for bench in benches:
            train_times[bench.setup.name].append(timed(bench.train_step, bench.runtime.device))
        for bench in benches:
            infer_times[bench.setup.name].append(timed(bench.infer_step, bench.runtime.device))
    for bench in benches:
        name = bench.setup.name
        results[name].train_seconds = statistics.median(train_times[name])
        results[name].infer_seconds = statistics.median(infer_times[name])
    return results


def measure_compiled(args: argparse.Namespace) -> tuple[dict[str, Result], Result | None]:
    """The compile setups, with fp32 eager as their own baseline, in a child process under the timeout."""
    if args.no_compile:
        return {s.name: Result(skipped="not run (--no-compile)") for s in COMPILE_SETUPS}, None
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--config",
        args.config,
        "--device",
        args.device,
        "--batch-size",
        str(args.batch_size),
        "--warmup",
        str(args.warmup),
        "--iters",
        str(args.iters),
        "--child-compile",
        *([] if args.threads is None else ["--threads", str(args.threads)]),
    ]
    # Its own session, so that a timeout also ends the compiler's worker processes (the whole group).
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = child.communicate(timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        reason = (
            f"skipped: compiling and timing took longer than --compile-timeout {args.compile_timeout:g} s"
        )
        return {s.name: Result(skipped=reason) for s in COMPILE_SETUPS}, None
    lines = stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        reason = f"skipped: torch.compile fails here ({last[:160]})"
        return {s.name: Result(skipped=reason) for s in COMPILE_SETUPS}, None
    values = {name: Result(**fields) for name, fields in json.loads(lines[-1]).items()}
    baseline = values.pop(BASELINE.name)
    return values, baseline


def flops_per_image(config: ExperimentConfig) -> tuple[float, float]:
    """(training, inference) FLOPs per image: 3 x 2 x MACs of the whole model, 2 x MACs of the deployable branch."""
    width, height = config.data["input_size"]
    summary = summarize(config.model, int(height), int(width))
    return 6.0 * summary["macs"], 2.0 * summary["deploy_macs"]


def device_line(device: torch.device) -> str:
    """The device, threads and library versions, for the table's caption."""
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        bf16 = "native bf16" if native_bf16(device) else "no native bf16"
        name = (
            f"{platform.processor() or platform.machine()} ({bf16}), {torch.get_num_threads()} torch threads"
        )
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{name}; torch {torch.__version__}; Python {platform.python_version()}; load average {load}"


def print_table(
    config: ExperimentConfig,
    args: argparse.Namespace,
    results: dict[str, Result],
    compile_baseline: Result | None,
    flops: tuple[float, float],
) -> None:
    """One markdown row per setup: images/s, ratio to fp32 eager and MFU for training and inference."""
    base = results[BASELINE.name]
    batch = args.batch_size
    print(
        f"| {config.experiment}, batch {batch} | train images/s | ratio | MFU | infer images/s | ratio | MFU | note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for setup in ALL_SETUPS:
        result = results[setup.name]
        if result.skipped is not None or result.train_seconds is None or result.infer_seconds is None:
            print(f"| {setup.name} | - | - | - | - | - | - | {result.skipped} |")
            continue
        reference = compile_baseline if setup.compile and compile_baseline is not None else base
        note = result.note
        if setup.compile:
            note = (note + "; " if note else "") + "ratio to fp32 eager timed in the same child process"
        peak = args.peak_tflops
        if setup.precision != "fp32" and args.peak_tflops_half is not None:
            peak = args.peak_tflops_half
        cells = []
        for seconds, ref_seconds, per_image in (
            (result.train_seconds, reference.train_seconds, flops[0]),
            (result.infer_seconds, reference.infer_seconds, flops[1]),
        ):
            images = batch / seconds
            ratio = f"{ref_seconds / seconds:.2f}x" if ref_seconds else "-"
            mfu = "n/a" if peak is None else f"{100 * per_image * images / (peak * 1e12):.1f}%"
            cells += [f"{images:.2f}", ratio, mfu]
        print(f"| {setup.name} | " + " | ".join(cells) + f" | {note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mpii/hg4_okdhp", help="an experiment (mpii/NAME) or a yaml path")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per setup (compiling happens here)"
    )
    parser.add_argument("--iters", type=int, default=5, help="timed rounds; the table gives the median")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="device dense fp32 peak (TFLOPS) for the MFU column"
    )
    parser.add_argument(
        "--peak-tflops-half",
        type=float,
        default=None,
        help="dense bf16/fp16 peak for the autocast rows (default: --peak-tflops)",
    )
    parser.add_argument("--compile-timeout", type=float, default=900.0, help="seconds for the compile rows")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice); 1 resists load",
    )
    parser.add_argument("--child-compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = load_config(resolve_config_path(args.config))
    if args.child_compile:
        values = measure(
            [BASELINE, *COMPILE_SETUPS], config, args.device, args.batch_size, args.warmup, args.iters
        )
        print(json.dumps({name: vars(result) for name, result in values.items()}))
        return 0

    device = choose_device(args.device)
    print(f"before: {device_line(device)}")
    results = measure(list(EAGER_SETUPS), config, args.device, args.batch_size, args.warmup, args.iters)
    compiled, compile_baseline = measure_compiled(args)
    results.update(compiled)
    flops = flops_per_image(config)
    print(f"after: {device_line(device)}")
    print(
        f"FLOPs per image: training {flops[0] / 1e9:.1f} G (3 x 2 x MACs), inference {flops[1] / 1e9:.1f} G "
        f"(2 x MACs of the deployable branch); peak {args.peak_tflops or 'not given'} TFLOPS fp32, "
        f"{args.peak_tflops_half or args.peak_tflops or 'not given'} TFLOPS bf16/fp16; "
        f"median of {args.iters} rounds after {args.warmup} warm-up steps"
    )
    print()
    print_table(config, args, results, compile_baseline, flops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
