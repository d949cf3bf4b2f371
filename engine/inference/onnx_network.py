"""Run an exported ONNX pose network with onnxruntime behind the ``PoseModel`` interface.

``tools/export.py`` writes ``OUT.onnx`` (normalised crops ``images`` in, the final ``heatmaps`` out) and the
sidecar ``OUT.json`` (the pipeline: crop rule, colour, joints, flip pairs, decode rule). ``onnx_predictor``
reads both, so the demo predicts through the same ``Predictor`` (crop, flip test, decode) as PyTorch does.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engine.inference.pipeline import Pipeline
from engine.inference.predictor import Predictor
from engine.runtime.execution import make_runtime
from models.output import PoseOutput
from utils.errors import UserError

SIDECAR_FORMAT = "okdhp-pose-onnx/1"
INPUT_NAME, OUTPUT_NAME = "images", "heatmaps"


def require(*names: str) -> list[ModuleType]:
    """Import optional packages (onnx, onnxruntime); a missing one is a UserError saying what to install."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            raise UserError(
                f"this needs the Python package '{name}', which is not installed for {sys.executable}; "
                f"install the export requirements with: {sys.executable} -m pip install -r "
                "requirements-export.txt (onnx and onnxruntime)"
            ) from None
    return modules


class OnnxRuntimeNetwork(nn.Module):
    """An exported heatmap network run by onnxruntime behind the ``PoseModel`` output, for ``Predictor``."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        (ort,) = require("onnxruntime")
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for a missing or foreign file
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"onnxruntime cannot load {self.path}: {first}") from None
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        batch = inputs[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        self.input_hw = tuple(inputs[0].shape[2:4])

    def forward(self, images: Tensor) -> PoseOutput:
        array = images.detach().float().cpu().contiguous().numpy()
        step = self.fixed_batch or len(array)
        chunks = [
            self.session.run(None, {self.input_name: array[i : i + step]})[0]
            for i in range(0, len(array), step)
        ]
        heatmaps = torch.from_numpy(np.concatenate(chunks)).to(images.device)
        return PoseOutput(stacks=[heatmaps], branches=[heatmaps])


def read_sidecar(onnx_path: str | Path) -> dict[str, Any]:
    """The sidecar JSON written beside an exported ONNX file (``OUT.json`` for ``OUT.onnx``)."""
    path = Path(onnx_path).with_suffix(".json")
    if not Path(onnx_path).is_file():
        raise UserError(f"ONNX file not found: {onnx_path}")
    if not path.is_file():
        raise UserError(
            f"{onnx_path} has no sidecar JSON beside it ({path}): export with tools/export.py, which writes it"
        )
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the sidecar JSON {path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
        raise UserError(f"{path} is not a sidecar of tools/export.py (no 'format': '{SIDECAR_FORMAT}')")
    return document


def onnx_predictor(onnx_path: str | Path, *, flip: bool | None = None) -> Predictor:
    """A ``Predictor`` running an exported file with onnxruntime, its pipeline read from the sidecar JSON."""
    document = read_sidecar(onnx_path)
    network = OnnxRuntimeNetwork(onnx_path)  # first: a missing onnxruntime is the first thing to say
    pipeline = Pipeline.from_sidecar(document, str(Path(onnx_path).with_suffix(".json")))
    width, height = pipeline.codec.input_size
    if network.input_hw != (height, width):
        raise UserError(
            f"{onnx_path} takes {network.input_hw[0]}x{network.input_hw[1]} inputs but its sidecar says "
            f"{height}x{width}: the two files do not belong together"
        )
    return Predictor(network, pipeline.with_flip(flip), make_runtime("cpu"))
