"""CPU inference speed of the extracted 4-stack OKDHP branch: PyTorch eager, its speed switches, onnxruntime.

    python benchmarks/deploy_speed.py [--config mpii/hg4_okdhp] [--threads 2] [--compile-timeout 600]
    python benchmarks/deploy_speed.py --students [NAME ...] [--json PATH]     # the students' table

With ``--students`` it measures every deployable network the experiments define instead
(``benchmarks/students.py``: parameters, GMACs, ONNX sizes, PyTorch and onnxruntime fp32 / int8).

The branch is ``deploy('branch0')`` of the config's multi-branch model (for mpii/hg4_okdhp: a 4-stack
hourglass, 256 features, 13,018,816 parameters) with random weights, on random 256x256 inputs. One run
measures every mode: batch 1 latency and batch 8 throughput, each the median of rounds that time every mode
once in turn (so a burst of other load is shared), and prints a markdown table with speed-ups over PyTorch
eager fp32 and the load average before and after. The bf16 rows differ from fp32 in their outputs (the max
|difference| of the heatmaps is in the note); every other row computes the fp32 result.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.inference_setups import Forward, build_copy, onnx_mode, onnx_version, torch_mode  # noqa: E402
from benchmarks.students import add_arguments, run_students  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.convert.onnx import HeatmapNetwork, torch_export  # noqa: E402
from engine.experiment.catalogue import resolve_config_path  # noqa: E402
from engine.experiment.config import load_config  # noqa: E402
from models.registry import build_model  # noqa: E402


class CompileTimeout(Exception):
    """torch.compile took longer than --compile-timeout."""


def interleaved_medians(
    forwards: dict[str, Forward], images: torch.Tensor, warmup: int, rounds: int
) -> dict[str, float]:
    """Median seconds of each forward over ``rounds`` rounds that call every forward once, in turn."""
    for forward in forwards.values():
        for _ in range(warmup):
            forward(images)
    times: dict[str, list[float]] = {name: [] for name in forwards}
    for _ in range(rounds):
        for name, forward in forwards.items():
            start = time.perf_counter()
            forward(images)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def compiled_mode(model: torch.nn.Module, images: torch.Tensor, timeout: int) -> tuple[Forward, float]:
    """``torch.compile`` (inductor) of the fp32 model and the seconds its first two calls took."""
    compiled = torch.compile(model)

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(batch)

    expired = []

    def give_up(*_: object) -> None:
        expired.append(True)
        raise CompileTimeout

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(timeout)
    start = time.perf_counter()
    try:
        forward(images[:1])
        forward(images)  # batch 8 compiles again unless the first graph is dynamic
    except Exception:
        if expired:  # dynamo wraps the exception raised inside the compiler into its own
            raise CompileTimeout from None
        raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return forward, time.perf_counter() - start


def onnx_branch(model: torch.nn.Module, example: torch.Tensor, threads: int, folder: Path) -> Forward:
    """The model exported with a free batch dimension, run by onnxruntime's CPU provider."""
    path = folder / "branch.onnx"
    torch_export(HeatmapNetwork(model).eval(), example, path, 17, dynamic_batch=True)
    return onnx_mode(path, threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="mpii/hg4_okdhp", help="multi-branch experiment (default mpii/hg4_okdhp)"
    )
    parser.add_argument("--head", default="branch0")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch and onnxruntime threads"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed rounds first (default 2; 1 for --students)"
    )
    parser.add_argument(
        "--iters", type=int, default=5, help="timed rounds at batch 1 (median; half at batch 8)"
    )
    parser.add_argument(
        "--compile-timeout", type=int, default=600, help="seconds torch.compile may take (0: skip)"
    )
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.students is not None:
        args.warmup = 1 if args.warmup is None else args.warmup
        return run_students(args, argv)
    args.warmup = 2 if args.warmup is None else args.warmup

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = load_config(resolve_config_path(args.config))
    width, height = config.data["input_size"]
    with torch.device("meta"):
        section = build_model(config.model).deploy_section(args.head)
    model = build_model(section).eval()
    params = sum(p.numel() for p in model.parameters())
    network = HeatmapNetwork(model).eval()
    images = torch.randn(8, 3, height, width)
    with torch.inference_mode():
        reference = network(images[:1])

    modes: dict[str, Callable[[], Forward]] = {
        "PyTorch eager fp32": lambda: torch_mode(network),
        "PyTorch channels_last fp32": lambda: torch_mode(
            HeatmapNetwork(build_copy(model)).eval(), channels_last=True
        ),
        "PyTorch bf16 autocast": lambda: torch_mode(network, bf16=True),
        "PyTorch channels_last + bf16 autocast": lambda: torch_mode(
            HeatmapNetwork(build_copy(model)).eval(), channels_last=True, bf16=True
        ),
    }
    notes: dict[str, str] = {}
    ready: dict[str, Forward] = {}
    failed: dict[str, str] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        modes["onnxruntime fp32 (CPU provider)"] = lambda: onnx_branch(
            model, images[:1], args.threads, Path(folder)
        )
        if args.compile_timeout > 0:

            def compile_row() -> Forward:
                forward, seconds = compiled_mode(
                    HeatmapNetwork(build_copy(model)).eval(), images, args.compile_timeout
                )
                notes["torch.compile fp32 (inductor)"] = f"compiled in {seconds:.0f} s"
                return forward

            modes["torch.compile fp32 (inductor)"] = compile_row
        for name, make in modes.items():
            try:
                ready[name] = make()
            except CompileTimeout:
                failed[name] = f"skipped: compiling took over {args.compile_timeout} s"
            except Exception as error:  # a mode this machine cannot run is reported, not fatal
                failed[name] = f"failed: {str(error).splitlines()[0][:80]}"
        for name, forward in ready.items():
            difference = float((forward(images[:1]).float() - reference).abs().max())
            notes[name] = "; ".join(filter(None, [notes.get(name), f"max diff vs eager {difference:.1e}"]))
        # Interleaved rounds: every round times each mode once, so a burst of load on the machine is shared by
        # all modes instead of falling on one of them.
        latency = interleaved_medians(ready, images[:1], args.warmup, args.iters)
        batch8 = interleaved_medians(ready, images, max(1, args.warmup // 2), max(3, args.iters // 2))
    load_after = os.getloadavg()
    rows = []
    for name in modes:
        if name in failed:
            rows.append((name, None, None, failed[name]))
        else:
            rows.append((name, latency[name], 8 / batch8[name], notes[name]))

    print(
        f"extracted {args.head} of {args.config} ({section['name']}, {section.get('num_stacks')} stacks, "
        f"{params:,} params), input {height}x{width}, random weights and inputs; {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}, onnxruntime {onnx_version()}, Python {platform.python_version()}; "
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after\n"
    )
    print("| mode | batch 1 latency, ms | speed-up | batch 8 throughput, images/s | speed-up | note |")
    print("|---|---|---|---|---|---|")
    base = rows[0]
    for name, latency, throughput, note in rows:
        if latency is None:
            print(f"| {name} | - | - | - | - | {note} |")
            continue
        print(
            f"| {name} | {1000 * latency:.1f} | {base[1] / latency:.2f}x | {throughput:.2f} | "
            f"{throughput / base[2]:.2f}x | {note} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
