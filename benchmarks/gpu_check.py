"""The first thing to run on a machine with a GPU: one report of what this project does there, in minutes.

    bash benchmarks/gpu_check.sh [--device auto|cuda|cpu] [--budget 480] [--out output/gpu_check]
    python benchmarks/gpu_check.py ...      (the same)

The report (printed, and written to ``--out`` as ``report.md`` and ``report.json``) has five sections:

1. **machine**: the device, the NVIDIA driver, torch / CUDA / cuDNN versions, memory, compute capability;
2. **train step**: the paper's 4-stack OKDHP (``mpii/hg4_okdhp``, three branches and the FAU, 256x256) at
   its batch size 16 under fp32 eager, channels_last, bf16 autocast, channels_last + bf16, fp16 autocast +
   GradScaler and torch.compile: images/s, peak memory and the model FLOPs utilisation against the device's
   dense peak for that precision (``PEAKS``, by device name; "unknown" for a device not in it). The engine's
   own step runs on random tensors (``benchmarks/train_speed.py``'s ``Bench``); torch.compile runs in a child
   process under a time limit;
3. **torchrun**: one process launched by ``torchrun`` joins a process group (NCCL on a GPU) and runs a few
   iterations of the engine's DistributedDataParallel training on the demo recipe, then its validation;
4. **demo recipe**: the CPU demo's recipe (``mpii/demo`` on the synthetic set, 10 epochs) trained on the
   device to its PCKh, to compare with the CPU's 96.107 (README);
5. **table estimates**: the wall time of each paper table (``tables/*.yaml``, teachers included), from the
   measured speed and each row's epochs, data set sizes and training FLOPs.

With ``--device cpu`` everything is small (a 32-feature 4-stack OKDHP at 64x64, batch 2, one thread; two
short demo epochs on 160 synthetic images) and what needs CUDA is skipped with the reason (fp16 autocast; NCCL, for which the torchrun section
runs gloo instead); torch.compile is skipped on the CPU unless ``--compile-timeout`` is given (compiling the
demo model took over 300 s on the 2-core development machine, docs/benchmarks.md). This is how CI runs it.

The whole check keeps within ``--budget`` seconds (480 by default): each section after the first is skipped,
saying so, when the time left is too short for it, and a section that fails is reported as failed while
the others still run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.train_speed import ALL_SETUPS, BASELINE, Bench, Setup, flops_per_image, synchronize, timed  # noqa: E402
from engine.experiment.catalogue import resolve_config_path  # noqa: E402
from engine.experiment.config import ExperimentConfig, load_config  # noqa: E402
from engine.runtime.execution import choose_device, native_bf16  # noqa: E402
from models.registry import build_model  # noqa: E402
from tools.model_summary import read_teachers  # noqa: E402
from utils.flops import layer_macs  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CONFIG = "mpii/hg4_okdhp"  # the paper's 4-stack OKDHP
DEMO_CONFIG = "mpii/demo"
CPU_SIZE = ["data.input_size=[64,64]", "data.heatmap_size=[16,16]", "model.num_features=32"]

# Dense (no sparsity) peak TFLOPS from NVIDIA's data sheets, by a pattern of torch.cuda.get_device_name().
# First match wins. "tf32" is what fp32 convolutions run at when cuDNN's TF32 is on (PyTorch's default).
PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    (r"H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    (r"H100(?!.*NVL)", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),  # SXM5
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0, "fp16": 362.0}),
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"V100-SXM2", {"fp32": 15.7, "fp16": 125.0}),
    (r"V100-PCIE", {"fp32": 14.0, "fp16": 112.0}),
)
# Persons per epoch (training) and per validation, by dataset: MPII from SPEC B (HRNet's annotation
# files); COCO train2017 / val2017 persons with ground-truth boxes as HRNet's loader counts them.
DATASET_SIZES = {"mpii": (22_246, 2_958), "coco": (149_813, 6_352)}
ESTIMATE_RESERVE_S = 60  # kept for the estimates when the compile rows take what is left


def guarded(report: Report, what: str, action: Callable[[], None]) -> None:
    """Run one section; a failure is written into the report (traceback on stderr) and the check goes on."""
    try:
        action()
    except Exception as error:  # the first run on a new machine must still print the rest of its report
        traceback.print_exc(file=sys.stderr)
        first = (str(error).splitlines() or [""])[0]
        report.add("", f"{what} failed: {type(error).__name__}: {first[:300]}")
        report.data.setdefault("failures", []).append(f"{what}: {type(error).__name__}: {first[:300]}")


@dataclass
class StepResult:
    """One train-step setup: images/s, peak memory, or why it was not measured."""

    name: str
    precision: str
    images_per_s: float | None = None
    memory_gib: float | None = None
    skipped: str | None = None
    note: str = ""


class Report:
    """The report's sections as markdown lines, and the same facts as data."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.data: dict[str, Any] = {}

    def section(self, title: str) -> None:
        self.lines += ["", f"### {title}", ""]

    def add(self, *lines: str) -> None:
        self.lines += list(lines)

    def text(self) -> str:
        return "\n".join(self.lines).strip() + "\n"


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak of a device for a precision ('fp32', 'tf32', 'bf16', 'fp16'), or None when unknown."""
    for pattern, peaks in PEAKS:
        if re.search(pattern, device_name):
            return peaks.get(precision)
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def driver_version() -> str:
    """The NVIDIA driver as nvidia-smi reports it, or why it is not known."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown (nvidia-smi: {type(error).__name__})"
    return (
        result.stdout.strip().splitlines()[0]
        if result.returncode == 0 and result.stdout.strip()
        else "unknown"
    )


def machine_section(report: Report, device: torch.device) -> None:
    """Device, driver, library versions."""
    report.section("Machine")
    facts: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            {
                "driver": driver_version(),
                "CUDA (torch build)": torch.version.cuda,
                "cuDNN": torch.backends.cudnn.version(),
                "GPU memory GiB": round(props.total_memory / 2**30, 1),
                "compute capability": f"{props.major}.{props.minor}",
                "multiprocessors": props.multi_processor_count,
                "GPUs visible": torch.cuda.device_count(),
                "bf16 supported": torch.cuda.is_bf16_supported(),
                "cuDNN TF32 (fp32 convolutions)": torch.backends.cudnn.allow_tf32,
            }
        )
    else:
        facts.update(
            {
                "driver": "n/a (CPU)",
                "CUDA (torch build)": torch.version.cuda or "none",
                "native bf16": native_bf16(device),
            }
        )
    report.add("| what | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items()))
    report.data["machine"] = facts


# ---------------------------------------------------------------------------------------------- train step
def bench_config(device: torch.device) -> ExperimentConfig:
    """The 4-stack OKDHP as configured (GPU), or narrowed to 32 features at 64x64 (CPU)."""
    return load_config(resolve_config_path(BENCH_CONFIG), [] if device.type == "cuda" else CPU_SIZE)


def measure_setup(
    setup: Setup, config: ExperimentConfig, device: str, batch: int, warmup: int, iters: int
) -> StepResult:
    """Median images/s of the engine's training step under one setup, and the peak memory it needed."""
    precision = setup.precision
    result = StepResult(setup.name, precision)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        bench = Bench(setup, config, device, batch)
        started = time.perf_counter()
        for _ in range(max(1, warmup)):
            bench.train_step()
        synchronize(bench.runtime.device)
        if setup.compile:
            result.note = f"warm-up {time.perf_counter() - started:.0f} s (compiling)"
        seconds = sorted(timed(bench.train_step, bench.runtime.device) for _ in range(iters))
    except Exception as error:  # a setup this platform cannot run (fp16 on a CPU, a compiler failure)
        first = (str(error).splitlines() or [type(error).__name__])[0]
        result.skipped = f"skipped: {first[:200]}"
        return result
    result.images_per_s = batch / seconds[len(seconds) // 2]
    if cuda:
        result.memory_gib = torch.cuda.max_memory_allocated() / 2**30
    del bench
    return result


def measure_compiled(setup: Setup, args: argparse.Namespace, timeout: float) -> StepResult:
    """A torch.compile setup in a child process (its own session), ended when it runs past ``timeout``."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child-setup", setup.name, "--device", args.device,
        "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--iters", str(args.iters),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return StepResult(
            setup.name, setup.precision, skipped=f"skipped: compiling and timing took over {timeout:.0f} s"
        )
    lines = stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return StepResult(
            setup.name, setup.precision, skipped=f"skipped: torch.compile fails here ({last[:200]})"
        )
    return StepResult(**json.loads(lines[-1]))


def mfu(result: StepResult, flops: float, name: str, device: torch.device) -> tuple[str, float | None]:
    """The MFU cell and the peak it was taken against ("unknown" without a known peak)."""
    if result.images_per_s is None:
        return "-", None
    precision = result.precision
    if device.type == "cuda" and precision == "fp32" and torch.backends.cudnn.allow_tf32:
        precision = "tf32"
    peak = peak_tflops(name, precision) if device.type == "cuda" else None
    if peak is None:
        return "unknown (no known peak for this device)", None
    return f"{100 * flops * result.images_per_s / (peak * 1e12):.1f}% of {peak:g} ({precision})", peak


def train_step_section(report: Report, args: argparse.Namespace, device: torch.device) -> list[StepResult]:
    """The train-step table of the 4-stack OKDHP under each setup."""
    config = bench_config(device)
    width, height = config.data["input_size"]
    train_flops, _ = flops_per_image(config)
    report.section(f"Train step: {BENCH_CONFIG}, batch {args.batch_size}, {width}x{height}")
    if device.type != "cuda":
        report.add(
            f"On the CPU the model is narrowed ({', '.join(CPU_SIZE)}): a check that the section works, "
            "not the paper's network.",
            "",
        )
    results = []
    for setup in ALL_SETUPS:
        if setup.precision == "fp16" and device.type != "cuda":
            results.append(
                StepResult(
                    setup.name, setup.precision, skipped="skipped: fp16 autocast + GradScaler needs CUDA"
                )
            )
        elif setup.compile:
            continue  # measured last, with the time that is left
        else:
            results.append(
                measure_setup(setup, config, args.device, args.batch_size, args.warmup, args.iters)
            )
    report.data["train_flops_per_image"] = train_flops
    return results


def compile_rows(
    results: list[StepResult], args: argparse.Namespace, device: torch.device, deadline: float
) -> None:
    """The torch.compile rows, measured last within the time that is left."""
    timeout = (
        args.compile_timeout
        if args.compile_timeout is not None
        else (240.0 if device.type == "cuda" else 0.0)
    )
    for setup in (s for s in ALL_SETUPS if s.compile):
        left = deadline - time.monotonic() - ESTIMATE_RESERVE_S
        if timeout <= 0:
            reason = "skipped on the CPU (compiling took over 300 s on a 2-core machine; give --compile-timeout to try)"
            results.append(StepResult(setup.name, setup.precision, skipped=reason))
        elif left < 30:
            results.append(
                StepResult(setup.name, setup.precision, skipped="skipped: the time budget was spent")
            )
        else:
            results.append(measure_compiled(setup, args, min(timeout, left)))


def write_train_table(report: Report, results: list[StepResult], device: torch.device) -> None:
    train_flops = report.data["train_flops_per_image"]
    name = device_name(device)
    base = next((r for r in results if r.name == BASELINE.name and r.images_per_s), None)
    report.add(
        f"Training FLOPs per image: {train_flops / 1e9:.1f} G (3 x 2 x conv/linear MACs of the whole model). "
        "Median of the timed steps after the warm-up; random tensors, no data loading.",
        "",
        "| setup | images/s | vs fp32 eager | peak memory GiB | MFU | note |",
        "|---|---:|---:|---:|---|---|",
    )
    rows = []
    for result in results:
        if result.images_per_s is None:
            report.add(f"| {result.name} | - | - | - | - | {result.skipped} |")
            rows.append(asdict(result))
            continue
        ratio = f"{result.images_per_s / base.images_per_s:.2f}x" if base else "-"
        memory = "n/a (CPU)" if result.memory_gib is None else f"{result.memory_gib:.2f}"
        cell, peak = mfu(result, train_flops, name, device)
        report.add(
            f"| {result.name} | {result.images_per_s:.2f} | {ratio} | {memory} | {cell} | {result.note} |"
        )
        rows.append({**asdict(result), "peak_tflops": peak})
    report.data["train_step"] = rows


# ---------------------------------------------------------------------------------------------- torchrun
def torchrun_section(
    report: Report, args: argparse.Namespace, device: torch.device, data: Path, out: Path, deadline: float
) -> None:
    """One process under torchrun: a process group (NCCL on a GPU, gloo on a CPU) and the engine's DDP training."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    report.section(f"torchrun, one process, {backend}")
    if device.type != "cuda":
        report.add("NCCL needs CUDA: on the CPU the same one-process torchrun runs with gloo.", "")
    left = deadline - time.monotonic()
    if left < 60:
        report.add("skipped: the time budget was spent")
        report.data["torchrun"] = {"skipped": "budget"}
        return
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        str(Path(__file__).resolve()), "--child-torchrun", "--device", str(device), "--data", str(data),
        "--out", str(out / "torchrun"), "--iters", str(args.torchrun_iters),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    started = time.perf_counter()
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=min(300, left - 30), cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired:
        report.add(f"failed: torchrun did not finish within {min(300, left - 30):.0f} s")
        report.data["torchrun"] = {"error": "timeout"}
        return
    seconds = time.perf_counter() - started
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = " ".join((result.stderr.strip().splitlines() or ["no output"])[-3:])
        report.add(f"failed (exit {result.returncode}): {tail[:600]}")
        report.data["torchrun"] = {"error": tail[:600], "returncode": result.returncode}
        return
    found = json.loads(lines[-1])
    found["wall_s"] = round(seconds, 1)
    report.add(
        "| backend | world size | model wrapper | iterations | training s | validation PCKh | wall s (launch included) |",
        "|---|---:|---|---:|---:|---:|---:|",
        f"| {found['backend']} | {found['world_size']} | {found['wrapper']} | {found['iterations']} | "
        f"{found['train_s']:.1f} | {found['metric']:.2f} | {seconds:.0f} |",
    )
    report.data["torchrun"] = found


def child_torchrun(args: argparse.Namespace) -> int:
    """Inside torchrun: join the process group, train a few iterations of the demo recipe with DDP, print JSON."""
    import torch.distributed as dist

    from engine.training.run import TrainingRun

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL binds the process to its GPU before joining
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    overrides = [
        f"data.root={args.data}", f"runtime.device={args.device}", "train.epochs=1", "train.lr_steps=[]",
        f"train.iters_per_epoch={args.iters}", "runtime.workers=0",
    ]  # fmt: skip
    config = load_config(resolve_config_path(DEMO_CONFIG), overrides)
    run = TrainingRun(config, Path(args.out))
    started = time.perf_counter()
    summary = run.fit(overwrite=True, log=lambda _line: None)
    synchronize(device)
    found = {
        "backend": dist.get_backend(),
        "world_size": dist.get_world_size(),
        "wrapper": type(run.model).__name__,
        "iterations": args.iters,
        "train_s": time.perf_counter() - started,
        "metric": float(summary["metric"]),
    }
    run.runtime.close()
    if dist.is_initialized():
        dist.destroy_process_group()
    print(json.dumps(found))
    return 0


# ---------------------------------------------------------------------------------------------- demo recipe
def demo_section(report: Report, device: torch.device, data: Path, out: Path, deadline: float) -> None:
    """The CPU demo's recipe on the device, to its PCKh (on a CPU: two short epochs)."""
    from engine.training.run import TrainingRun

    small = (
        []
        if device.type == "cuda"
        else ["train.epochs=2", "train.lr_steps=[]", "train.iters_per_epoch=10", "train.val_every=2"]
    )
    report.section(
        f"Demo recipe on the device: {DEMO_CONFIG}" + ("" if not small else ", shortened on the CPU")
    )
    if deadline - time.monotonic() < 90:
        report.add("skipped: the time budget was spent")
        report.data["demo"] = {"skipped": "budget"}
        return
    overrides = [f"data.root={data}", f"runtime.device={device}", *small]
    config = load_config(resolve_config_path(DEMO_CONFIG), overrides)
    started = time.perf_counter()
    run = TrainingRun(config, out / "demo")
    try:
        summary = run.fit(overwrite=True, log=lambda _line: None)
    finally:
        run.runtime.close()
    seconds = time.perf_counter() - started
    found = {
        "epochs": config.train.epochs,
        "precision": run.runtime.precision,
        "head": summary["head"],
        "pckh": float(summary["metric"]),
        "seconds": round(seconds, 1),
    }
    report.add(
        f"{' '.join(small) or 'the recipe as configured'}; on the 2-core CPU machine the full recipe reached "
        "PCKh 96.107 for branch1 in about 90 s (README).",
        "",
        "| epochs | precision | selected head | PCKh Mean (synthetic validation) | wall s |",
        "|---:|---|---|---:|---:|",
        f"| {found['epochs']} | {found['precision']} | {found['head']} | {found['pckh']:.3f} | {seconds:.0f} |",
    )
    report.data["demo"] = found


# ---------------------------------------------------------------------------------------------- estimates
@functools.cache
def forward_macs(section: str, height: int, width: int) -> int:
    """Conv/linear MACs of one forward pass of a model section (JSON), counted on the meta device."""
    with torch.device("meta"):
        model = build_model(json.loads(section))
    return sum(layer_macs(model, torch.zeros(1, 3, height, width, device="meta")).values())


def experiment_cost(experiment: str) -> dict[str, Any]:
    """Epochs, validations, persons and training / validation FLOPs per person of one experiment."""
    path = resolve_config_path(experiment)
    config = load_config(path)
    width, height = (int(v) for v in config.data["input_size"])
    macs = forward_macs(json.dumps(config.model, sort_keys=True), height, width)
    teacher_macs = sum(
        forward_macs(json.dumps(t["model"], sort_keys=True), height, width) * t["fraction"]
        for t in read_teachers(path).values()
    )
    epochs, every = config.train.epochs, config.train.val_every
    validations = sum(1 for e in range(epochs) if (e + 1) % every == 0 or e == epochs - 1)
    train_persons, val_persons = DATASET_SIZES.get(config.data["name"], (0, 0))
    return {
        "epochs": epochs,
        "validations": validations,
        "train_persons": train_persons,
        "val_persons": val_persons,
        "train_flops": 6.0 * macs + 2.0 * teacher_macs,  # backward ~ 2 x forward; teachers run forward only
        "val_flops": 2.0 * 2.0 * macs,  # flip test: two forwards of every head
    }


def estimates_section(
    report: Report, results: list[StepResult], deadline: float, names: list[str] | None, device: torch.device
) -> None:
    """Each table's wall time if every network trained at the FLOP rate measured for the 4-stack OKDHP."""
    from engine.tables.spec import load_table, table_names, training_order

    report.section("Estimated wall time of each table (from the measured speed)")
    train_flops = report.data.get("train_flops_per_image")
    measured = [r for r in results if r.images_per_s]
    base = next((r for r in measured if r.name == BASELINE.name), None)
    fastest = max(measured, key=lambda r: r.images_per_s, default=None)
    if base is None or fastest is None or train_flops is None:
        report.add("not measured: no train-step setup ran")
        return
    rates = {
        "fp32 eager": base.images_per_s * train_flops,
        f"fastest ({fastest.name})": fastest.images_per_s * train_flops,
    }
    costs: dict[str, dict[str, Any]] = {}
    rows, everything = [], set()
    for name in names or table_names():
        if time.monotonic() > deadline:
            report.add(f"(stopped at table {name}: the time budget was spent)")
            break
        order = training_order(load_table(name).experiments)
        for experiment in order:
            if experiment not in costs:
                costs[experiment] = experiment_cost(experiment)
        everything.update(order)
        rows.append((name, order))

    def hours(experiments: list[str] | set[str], rate: float) -> float:
        total = 0.0
        for e in experiments:
            c = costs[e]
            total += (
                c["epochs"] * c["train_persons"] * c["train_flops"]
                + c["validations"] * c["val_persons"] * c["val_flops"]
            )
        return total / rate / 3600

    labels = list(rates)
    report.add(
        "Every run of a table (teachers included) at the FLOP rate the 4-stack OKDHP reached above: training "
        "epochs x persons (MPII 22,246; COCO 149,813) x training FLOPs, plus every validation (flip test). "
        "Rough: smaller networks reach a lower rate, data loading is not counted (docs/benchmarks.md gives "
        "164 real MPII samples/s per loader worker on the CPU), the final evaluations are left out."
        + (
            ""
            if device.type == "cuda"
            else " On the CPU the rate is the narrowed model's on one thread: the hours only show the arithmetic."
        ),
        "",
        f"| table | runs | hours at {labels[0]} | hours at {labels[1]} |",
        "|---|---:|---:|---:|",
    )
    data = {}
    for name, order in rows:
        values = [hours(order, rates[label]) for label in labels]
        report.add(f"| {name} | {len(order)} | {values[0]:,.1f} | {values[1]:,.1f} |")
        data[name] = {"runs": order, "hours": dict(zip(labels, values))}
    totals = [hours(everything, rates[label]) for label in labels]
    label = "every table" if names is None else "these tables"
    report.add(f"| {label} (each run once) | {len(everything)} | {totals[0]:,.1f} | {totals[1]:,.1f} |")
    report.data["estimates"] = {"tables": data, "all": dict(zip(labels, totals)), "flops_per_s": rates}


# ---------------------------------------------------------------------------------------------- main
def child_setup(args: argparse.Namespace) -> int:
    """``--child-setup NAME``: measure one setup (a torch.compile one) and print it as JSON."""
    device = choose_device(args.device, warn_cpu=False)
    setup = next(s for s in ALL_SETUPS if s.name == args.child_setup)
    result = measure_setup(setup, bench_config(device), args.device, args.batch_size, args.warmup, args.iters)
    print(json.dumps(asdict(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N or cpu")
    parser.add_argument(
        "--budget", type=float, default=480.0, help="seconds for the whole check (default 8 min)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("output/gpu_check"), help="report.md, report.json, runs"
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="train-step batch (16 on a GPU, 2 on a CPU)"
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per setup (3 GPU, 1 CPU)")
    parser.add_argument("--iters", type=int, default=None, help="timed steps per setup (10 GPU, 2 CPU)")
    parser.add_argument(
        "--compile-timeout",
        type=float,
        default=None,
        help="seconds per compile setup (GPU 240, CPU 0: skipped)",
    )
    parser.add_argument(
        "--torchrun-iters", type=int, default=None, help="training iterations under torchrun (20 GPU, 5 CPU)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's on a GPU, 1 on a CPU)"
    )
    parser.add_argument("--tables", nargs="+", default=None, help="estimate only these tables (default: all)")
    parser.add_argument("--child-setup", help=argparse.SUPPRESS)
    parser.add_argument("--child-torchrun", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = choose_device(args.device, warn_cpu=False)
    args.device = str(device)
    gpu = device.type == "cuda"
    args.batch_size = args.batch_size or (16 if gpu else 2)
    args.warmup = args.warmup or (3 if gpu else 1)
    args.iters = args.iters or (10 if gpu else 2)
    args.torchrun_iters = args.torchrun_iters or (20 if gpu else 5)
    args.threads = args.threads or (None if gpu else 1)  # a check of the sections, not a CPU speed record
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_setup:
        return child_setup(args)
    if args.child_torchrun:
        return child_torchrun(args)

    started = time.monotonic()
    deadline = started + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    report = Report()
    report.add(
        f"## GPU check: {device_name(device)}",
        "",
        f"`bash benchmarks/gpu_check.sh --device {device.type}`; budget {args.budget:.0f} s.",
    )
    machine_section(report, device)
    results = train_step_section(report, args, device)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        from datasets.synthetic import make_synthetic_mpii

        images = (800, 200) if gpu else (160, 48)  # the demo's set; smaller for the CPU's short run
        data = make_synthetic_mpii(Path(scratch) / "demo_mpii", *images, seed=0)
        sections = Report()  # torchrun and demo run now, are printed after the train-step table
        guarded(
            sections, "torchrun", lambda: torchrun_section(sections, args, device, data, args.out, deadline)
        )
        guarded(sections, "demo recipe", lambda: demo_section(sections, device, data, args.out, deadline))
    guarded(report, "torch.compile rows", lambda: compile_rows(results, args, device, deadline))
    write_train_table(report, results, device)
    report.lines += sections.lines
    report.data.update(sections.data)
    guarded(report, "estimates", lambda: estimates_section(report, results, deadline, args.tables, device))
    report.add("", f"Total wall time {time.monotonic() - started:.0f} s.")
    text = report.text()
    (args.out / "report.md").write_text(text)
    (args.out / "report.json").write_text(json.dumps(report.data, indent=2, default=str))
    print(text, end="")
    print(f"(written to {args.out / 'report.md'} and report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
