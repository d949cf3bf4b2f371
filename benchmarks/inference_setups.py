"""The CPU inference setups the deploy benchmarks time, and what their headers say about the machine.

``torch_mode`` is a PyTorch forward (eager, channels_last, bf16 autocast), ``onnx_mode`` an onnxruntime
session's; ``machine_header`` names the CPU, the core count, the load average (as ``uptime`` shows it) and the
library versions, so that every printed table says where and with what it was measured.
"""

from __future__ import annotations

import copy
import os
import platform
from collections.abc import Callable
from contextlib import nullcontext
from importlib import metadata
from pathlib import Path

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]


def torch_mode(model: torch.nn.Module, *, channels_last: bool = False, bf16: bool = False) -> Forward:
    """A forward in inference mode with the given memory format and autocast (fp32 output)."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def forward(images: torch.Tensor) -> torch.Tensor:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            return model(images).float()

    return forward


def onnx_mode(path: Path, threads: int) -> Forward:
    """An ONNX file run by onnxruntime's CPU provider with ``threads`` intra-op threads, all optimisations on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: images.numpy()})[0])

    return forward


def build_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy of the model (a mode that changes memory format must not change the others)."""
    return copy.deepcopy(model)


def package_version(name: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def onnx_version() -> str:
    return package_version("onnxruntime")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_text() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def machine_header(threads: int) -> dict[str, str]:
    """Where and with what a benchmark runs: CPU, cores, threads, OS and the library versions."""
    return {
        "cpu": cpu_name(),
        "cores": str(os.cpu_count()),
        "threads": str(threads),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnx_version(),
        "onnx": package_version("onnx"),
        "numpy": package_version("numpy"),
    }
