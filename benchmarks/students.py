"""The students' table: CPU inference cost of every deployable network the experiments define.

    python benchmarks/deploy_speed.py --students [NAME ...] [--rounds 5] [--input-scale 1] [--json PATH]

Every student is the network a trained run deploys (``deploy_section`` of its experiment's model: the
hourglass branch of the 2/4/8-stack OKDHP rows, ODKD's 4-stack hourglass with 128 features, HRNet-W16, the
MobilePose-style MobileNetV2 / ShuffleNetV2 / ResNet-18 of the MPII table and the deconv-head MobileNetV2 /
ShuffleNetV2 of ODKD's), built with random weights (PyTorch's default initialisation, seed 0) at its
experiment's input size. For each: parameters (``utils.flops.count_params``), GMACs (``utils.flops.layer_macs``
on a real batch-1 forward), the ONNX file sizes (fp32 and int8, written by the project's exporter
``engine.convert.onnx.torch_export`` and quantizer ``engine.convert.int8.quantize_int8``), and four setups:
PyTorch fp32 eager, PyTorch channels_last + bf16 autocast, onnxruntime fp32 and onnxruntime int8 (QDQ,
per-channel). The int8 graph is calibrated on synthetic crops (normal noise, like the timed inputs): this
measures speed, not accuracy; int8 accuracy on real crops is ``benchmarks/int8_accuracy.py``'s job.

Timing: batch-1 latency and batch-8 throughput, the median of ``--rounds`` rounds; each round times every
setup of every student once, in turn (round-robin), so that a drift in the machine's load falls on all of
them alike. Each setup's max |heatmap difference| from fp32 eager (on the batch-8 input) is reported beside
the largest |heatmap| of fp32 eager. The header gives the CPU, the load average before and after, and the
library versions; the table is markdown on stdout, and ``--json PATH`` writes everything measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.inference_setups import (
    Forward,
    build_copy,
    load_text,
    machine_header,
    onnx_mode,
    torch_mode,
)
from engine.convert.int8 import quantize_int8
from engine.convert.onnx import DEFAULT_OPSET, HeatmapNetwork, torch_export
from engine.experiment.catalogue import resolve_config_path
from engine.experiment.config import load_config
from models.registry import build_model
from utils.errors import UserError, closest
from utils.flops import count_params, layer_macs
from utils.output_paths import prepare_outputs

SETUPS = (
    "PyTorch fp32 eager",
    "PyTorch channels_last + bf16 autocast",
    "onnxruntime fp32",
    "onnxruntime int8",
)
REFERENCE = SETUPS[0]
THROUGHPUT_BATCH = 8
DEFAULT_ROUNDS = 5
DEFAULT_CALIBRATION = 16  # synthetic crops: enough for stable MinMax ranges of noise inputs


@dataclass(frozen=True)
class Student:
    """A deployable network: the ``head`` of the distillation experiment ``experiment``'s model."""

    name: str
    label: str
    experiment: str  # mpii/*_okdhp or odkd/*_odkd; its no-KD twin is the same name ending in _baseline
    head: str = "branch0"

    @property
    def accuracy_experiments(self) -> tuple[str, str]:
        """The experiments whose paper rows give this network's accuracy: without and with distillation."""
        family, name = self.experiment.split("/")
        return f"{family}/{name.rsplit('_', 1)[0]}_baseline", self.experiment


STUDENTS = (
    Student("hg2", "2-stack hourglass", "mpii/hg2_okdhp"),
    Student("hg4", "4-stack hourglass", "mpii/hg4_okdhp"),
    Student("hg8", "8-stack hourglass", "mpii/hg8_okdhp"),
    Student("hg4_f128", "4-stack hourglass, 128 features", "odkd/hg4_f128_odkd"),
    Student("hrnet_w16", "HRNet-W16", "odkd/hrnet_w16_odkd"),
    Student("mobilenet_v2", "MobileNetV2 (MobilePose, MPII)", "mpii/mobilenet_v2_okdhp"),
    Student("shufflenet_v2", "ShuffleNetV2 1.0x (MobilePose, MPII)", "mpii/shufflenet_v2_okdhp"),
    Student("resnet18", "ResNet-18 (MobilePose, MPII)", "mpii/resnet18_okdhp"),
    Student("mobilenet_v2_coco", "MobileNetV2 + deconv head (COCO)", "odkd/mobilenet_v2_odkd"),
    Student("shufflenet_v2_coco", "ShuffleNetV2 1.0x + deconv head (COCO)", "odkd/shufflenet_v2_odkd"),
)
STUDENT_NAMES = tuple(student.name for student in STUDENTS)


def select_students(names: list[str]) -> list[Student]:
    """The students named (all of them for an empty list), in the catalogue's order; an unknown name is refused."""
    unknown = [name for name in names if name not in STUDENT_NAMES]
    if unknown:
        hint = closest(unknown[0], STUDENT_NAMES)
        raise UserError(
            f"--students {unknown[0]}: no such student{f' (did you mean {hint}?)' if hint else ''}; the "
            f"students are {', '.join(STUDENT_NAMES)} (none: all of them)"
        )
    return [student for student in STUDENTS if not names or student.name in names]


SIZE_STEP = 64  # every paper input side is a multiple; a 4-level hourglass at stride 4 needs one


def scaled_size(size: int, scale: float) -> int:
    """``size * scale`` rounded to the nearest multiple of ``SIZE_STEP`` (at least one): the size unchanged at
    scale 1, and one every student's network can run at any scale."""
    return max(SIZE_STEP, int(round(size * scale / SIZE_STEP)) * SIZE_STEP)


@dataclass
class Measured:
    """One student ready to time: its facts and one forward per setup."""

    student: Student
    facts: dict[str, Any]
    forwards: dict[str, Forward]
    images: torch.Tensor  # batch of THROUGHPUT_BATCH inputs; the first is the batch-1 input
    latency: dict[str, list[float]] = field(default_factory=dict)
    batch_seconds: dict[str, list[float]] = field(default_factory=dict)


def prepare_student(
    student: Student, input_scale: float, threads: int, folder: Path, calibration_count: int
) -> Measured:
    """Build, count, export and quantize one student; its forwards and the heatmap differences from eager."""
    config = load_config(resolve_config_path(student.experiment))
    with torch.device("meta"):
        section = build_model(config.model).deploy_section(student.head)
    torch.manual_seed(0)
    model = build_model(section).eval()
    width, height = (scaled_size(size, input_scale) for size in config.data["input_size"])
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(THROUGHPUT_BATCH, 3, height, width, generator=generator)
    calibration = torch.randn(calibration_count, 3, height, width, generator=generator)
    macs = sum(layer_macs(model, images[:1]).values())  # a real batch-1 forward: quick, unlike meta BatchNorm

    network = HeatmapNetwork(model).eval()
    fp32_path = folder / f"{student.name}.onnx"
    int8_path = folder / f"{student.name}_int8.onnx"
    torch_export(network, images[:1], fp32_path, DEFAULT_OPSET, dynamic_batch=True)
    quantize_int8(fp32_path, int8_path, calibration)
    forwards = {
        SETUPS[0]: torch_mode(network),
        SETUPS[1]: torch_mode(HeatmapNetwork(build_copy(model)).eval(), channels_last=True, bf16=True),
        SETUPS[2]: onnx_mode(fp32_path, threads),
        SETUPS[3]: onnx_mode(int8_path, threads),
    }
    reference = forwards[REFERENCE](images)
    differences = {
        name: float((forward(images) - reference).abs().max()) for name, forward in forwards.items()
    }
    facts = {
        "name": student.name,
        "label": student.label,
        "experiment": student.experiment,
        "head": student.head,
        "section": section,
        "input_size": [width, height],
        "params": count_params(model),
        "macs": int(macs),
        "onnx_bytes": {"fp32": fp32_path.stat().st_size, "int8": int8_path.stat().st_size},
        "onnx_files": {"fp32": str(fp32_path), "int8": str(int8_path)},
        "int8_calibration": f"{calibration_count} synthetic crops (normal noise), MinMax: for speed, not accuracy",
        "max_abs_heatmap": float(reference.abs().max()),
        "max_abs_difference": differences,
        "accuracy_experiments": list(student.accuracy_experiments),
    }
    return Measured(student, facts, forwards, images)


def timed(forward: Forward, images: torch.Tensor) -> float:
    start = time.perf_counter()
    forward(images)
    return time.perf_counter() - start


def time_round_robin(measured: list[Measured], rounds: int, warmup: int) -> None:
    """Every round times each setup of each student once at batch 1 and once at batch 8, in turn."""
    for _ in range(warmup):
        for item in measured:
            for forward in item.forwards.values():
                forward(item.images[:1])
                forward(item.images)
    for item in measured:
        item.latency = {name: [] for name in item.forwards}
        item.batch_seconds = {name: [] for name in item.forwards}
    for _ in range(rounds):
        for item in measured:
            for name, forward in item.forwards.items():
                item.latency[name].append(timed(forward, item.images[:1]))
                item.batch_seconds[name].append(timed(forward, item.images))


def results(item: Measured) -> dict[str, Any]:
    """The student's facts with each setup's median latency (ms), throughput (images/s) and difference."""
    setups = {}
    for name in item.forwards:
        latency = statistics.median(item.latency[name])
        batch = statistics.median(item.batch_seconds[name])
        setups[name] = {
            "latency_ms": 1000 * latency,
            "throughput": THROUGHPUT_BATCH / batch,
            "max_abs_difference": item.facts["max_abs_difference"][name],
            "latency_rounds_ms": [1000 * t for t in item.latency[name]],
            "batch_rounds_s": list(item.batch_seconds[name]),
        }
    facts = {k: v for k, v in item.facts.items() if k not in ("max_abs_difference", "onnx_files")}
    return {**facts, "setups": setups}


TABLE_HEAD = (
    "| student (experiment, head) | input WxH | params | GMACs | ONNX fp32 / int8, MB | setup | "
    "batch 1 latency, ms | batch 8 throughput, images/s | max diff vs fp32 eager (max heatmap) |"
)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per student and setup; the student's facts on its first line, the other lines leave them empty."""
    lines = [TABLE_HEAD, "|" + "---|" * 9]
    for row in rows:
        width, height = row["input_size"]
        facts = [
            f"{row['label']} ({row['experiment']}, {row['head']})",
            f"{width}x{height}",
            f"{row['params']:,}",
            f"{row['macs'] / 1e9:.2f}",
            f"{row['onnx_bytes']['fp32'] / 1e6:.1f} / {row['onnx_bytes']['int8'] / 1e6:.1f}",
        ]
        for index, (name, setup) in enumerate(row["setups"].items()):
            cells = (facts if index == 0 else [""] * len(facts)) + [
                name,
                f"{setup['latency_ms']:.1f}",
                f"{setup['throughput']:.2f}",
                f"{setup['max_abs_difference']:.1e} ({row['max_abs_heatmap']:.2g})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The students' table options of ``benchmarks/deploy_speed.py``."""
    parser.add_argument(
        "--students", nargs="*", metavar="NAME", default=None,
        help=f"measure the students' table (every deployable network) or only those named: {', '.join(STUDENT_NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="timed rounds (median), students' table"
    )
    parser.add_argument(
        "--input-scale", type=float, default=1.0,
        help="students' table: inputs at this fraction of each experiment's size (quick checks; 1 = the papers')",
    )  # fmt: skip
    parser.add_argument(
        "--calibration-count", type=int, default=DEFAULT_CALIBRATION,
        help="students' table: synthetic crops that calibrate the int8 graphs",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="students' table: also write everything measured here")
    parser.add_argument(
        "--keep-onnx", type=Path, metavar="DIR", help="students' table: keep the ONNX files in DIR"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --json file or kept ONNX files"
    )


def run_students(args: argparse.Namespace, argv: list[str]) -> int:
    """Measure the chosen students and print (and write) their table."""
    students = select_students(args.students)
    if args.rounds < 1 or args.calibration_count < 1 or not 0 < args.input_scale <= 4:
        raise UserError(
            f"--rounds {args.rounds}, --calibration-count {args.calibration_count}, --input-scale "
            f"{args.input_scale:g}: rounds and calibration crops must be at least 1, the input scale in (0, 4]"
        )
    outputs = [args.json] if args.json else []
    if args.keep_onnx:
        outputs += [args.keep_onnx / f"{s.name}{suffix}.onnx" for s in students for suffix in ("", "_int8")]
    prepare_outputs(outputs, "--json / --keep-onnx", overwrite=args.overwrite)
    torch.set_num_threads(args.threads)
    load_before, started = load_text(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="students-") as temporary:
        folder = args.keep_onnx or Path(temporary)
        measured = [
            prepare_student(s, args.input_scale, args.threads, folder, args.calibration_count)
            for s in students
        ]
        time_round_robin(measured, args.rounds, args.warmup)
    rows = [results(item) for item in measured]
    header = {
        **machine_header(args.threads),
        "load_before": load_before,
        "load_after": load_text(),
        "seconds": f"{time.perf_counter() - started:.0f}",
        "rounds": str(args.rounds),
        "warmup": str(args.warmup),
        "input_scale": f"{args.input_scale:g}",
        "command": "python benchmarks/deploy_speed.py " + " ".join(argv),
    }
    print(
        f"students' table: `{header['command']}`; {header['cpu']}, {header['cores']} cores, "
        f"{args.threads} threads; torch {header['torch']}, onnxruntime {header['onnxruntime']}, onnx "
        f"{header['onnx']}, numpy {header['numpy']}, Python {header['python']}; {header['load_before']} before, "
        f"{header['load_after']} after ({header['seconds']} s); random weights and inputs, median of "
        f"{args.rounds} round-robin rounds; int8 calibrated on {args.calibration_count} synthetic crops (speed, "
        "not accuracy)\n"
    )
    print(markdown_table(rows))
    if args.json:
        document = {"header": header, "setups": list(SETUPS), "students": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0
