"""Static int8 quantization of an exported network, calibrated on person crops of the project's pipeline.

``quantize_int8`` runs onnxruntime's ``quantize_static`` on an fp32 ONNX file: QDQ format, per-channel
symmetric int8 weights, asymmetric uint8 activations whose ranges come from calibration crops.
``calibration_crops`` makes those crops the way prediction does (``engine.inference.predictor``): from a folder
of images (each whole image one person box, as the demo without boxes) or from the training persons of an
experiment's dataset (their annotated boxes). ``int8_error`` measures what quantization costs: how far the
decoded keypoints move between the fp32 and the int8 graph, in heatmap pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from datasets.codec import HeatmapCodec
from datasets.registry import build_codec, build_dataset
from datasets.transforms import IMAGE_SUFFIXES, read_image
from engine.experiment.catalogue import resolve_config_path
from engine.experiment.config import load_config
from engine.inference.onnx_network import INPUT_NAME, OnnxRuntimeNetwork, require
from engine.inference.predictor import box_crop, person_crop, whole_image_box
from utils.errors import ConfigError, UserError

DEFAULT_CALIBRATION_COUNT = 64  # crops; onnxruntime's MinMax ranges settle within a few dozen
DEFAULT_MAX_DISPLACEMENT = 0.5  # heatmap pixels: the bound on the mean keypoint shift int8 may cause
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class CalibrationError(UserError):
    """The calibration source gives no crops: an empty folder, or neither a folder nor an experiment."""


@dataclass(frozen=True)
class Calibration:
    """Normalised person crops (N, 3, H, W) for calibration, and where they came from."""

    source: str  # what the user named: a folder, or an experiment name / yaml
    kind: str  # "images" (whole images) or "dataset" (annotated training persons)
    crops: Tensor
    available: int  # persons the source holds; ``len(crops)`` of them were taken, evenly spaced

    def describe(self) -> dict[str, Any]:
        """The ``calibration`` entry of the sidecar."""
        return {
            "source": self.source,
            "kind": self.kind,
            "count": len(self.crops),
            "available": self.available,
        }


def evenly_spaced(total: int, count: int) -> list[int]:
    """``min(count, total)`` indices spread over ``range(total)`` (first and last included)."""
    if total <= 0 or count <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, min(count, total))})


def calibration_crops(
    source: str | Path,
    codec: HeatmapCodec,
    color: str,
    *,
    count: int = DEFAULT_CALIBRATION_COUNT,
    data_root: str | Path | None = None,
) -> Calibration:
    """Up to ``count`` calibration crops of ``codec``'s input size and the network's ``color`` mode.

    ``source`` is a folder of images (every image is one person box: the whole image) or an experiment (a
    name such as ``mpii/demo`` or a yaml): the annotated persons of its training split, cropped from their
    boxes without augmentation; ``data_root`` replaces the experiment's ``data.root``.
    """
    if count <= 0:
        raise CalibrationError(f"--calibration-count {count}: int8 calibration needs at least one crop")
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise CalibrationError(
                f"--calibration {path}: the folder holds no images (files ending in {', '.join(IMAGE_SUFFIXES)}), "
                "so there is nothing to calibrate int8 ranges on; give a folder of photos of people like those "
                "the network will see, or an experiment whose training persons to crop (e.g. --calibration "
                "mpii/demo)"
            )
        crops = []
        for index in evenly_spaced(len(images), count):
            image = read_image(images[index])  # a DataError names an unreadable file
            center, scale = box_crop(whole_image_box(image), codec.input_size)
            crops.append(person_crop(image, center, scale, codec.input_size, color))
        return Calibration(str(source), "images", torch.stack(crops), len(images))
    if data_root is None and path.suffix in (".yaml", ".yml") and not path.exists():
        raise CalibrationError(f"--calibration {source}: no such file")
    try:
        config = load_config(
            resolve_config_path(str(source)), [f"data.root={data_root}"] if data_root else []
        )
    except ConfigError as error:
        raise CalibrationError(
            f"--calibration {source}: neither a folder of images nor an experiment ({error})"
        ) from None
    records = build_dataset(config.data, "train", train=False, codec=build_codec(config.data)).records
    if not records:
        raise CalibrationError(f"--calibration {source}: its training split holds no persons to crop")
    crops = []
    cached: tuple[Path, np.ndarray] | None = None
    for index in evenly_spaced(len(records), count):
        record = records[index]
        if cached is None or cached[0] != record.image:
            cached = (record.image, read_image(record.image))
        crops.append(person_crop(cached[1], record.center, record.scale, codec.input_size, color))
    return Calibration(str(source), "dataset", torch.stack(crops), len(records))


class CropReader:
    """onnxruntime's ``CalibrationDataReader`` protocol over crops, one crop per batch."""

    def __init__(self, crops: Tensor) -> None:
        self.crops = crops
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.crops):
            return None
        crop = self.crops[self.position : self.position + 1].numpy()
        self.position += 1
        return {INPUT_NAME: crop}

    def rewind(self) -> None:
        self.position = 0


def quantize_int8(
    fp32_path: Path,
    int8_path: Path,
    crops: Tensor,
    *,
    method: str = "minmax",
    reduce_range: bool = False,
) -> dict[str, Any]:
    """Write the statically quantized (QDQ, per-channel) int8 graph of ``fp32_path``; returns its settings.

    The graph is first prepared with onnxruntime's ``quant_pre_process`` (shape inference and the basic graph
    optimisations) as its documentation advises. ``reduce_range`` (7-bit weights) is for x86 CPUs without VNNI.
    """
    (quantization,) = require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_name(f"{int8_path.stem}.prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    methods = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "entropy": quantization.CalibrationMethod.Entropy,
        "percentile": quantization.CalibrationMethod.Percentile,
    }
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # its per-tensor fallback notices for BatchNorm scales, one per layer
    try:
        quantization.quantize_static(
            str(prepared),
            str(int8_path),
            CropReader(crops),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=methods[method],
        )
    finally:
        root_logger.setLevel(level)
        prepared.unlink(missing_ok=True)
    return {
        "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {_ort_version()})",
        "format": "QDQ",
        "weights": "int8, symmetric, per output channel" + (" (7-bit range)" if reduce_range else ""),
        "activations": "uint8, asymmetric, per tensor",
        "method": method,
        "reduce_range": reduce_range,
    }


def int8_error(fp32_path: Path, int8_path: Path, crops: Tensor, codec: HeatmapCodec) -> dict[str, float]:
    """How far int8 moves the decoded keypoints from fp32's, on ``crops`` and their mirror images.

    Keypoints are decoded as prediction decodes them (argmax, quarter-pixel step; ``HeatmapCodec.decode``)
    and compared in heatmap pixels over every joint of every crop; also the largest heatmap difference.
    """
    inputs = torch.cat([crops, crops.flip(3)])  # the flip test feeds the network the mirrored crop too
    fp32 = OnnxRuntimeNetwork(fp32_path)(inputs).final
    int8 = OnnxRuntimeNetwork(int8_path)(inputs).final
    points32, _ = codec.decode(fp32)
    points8, _ = codec.decode(int8)
    distance = (points8 - points32).norm(dim=2).flatten().numpy().astype(np.float64)
    return {
        "crops": len(inputs),
        "joints": int(distance.size),
        "mean_displacement": float(distance.mean()),
        "p95_displacement": float(np.percentile(distance, 95)),
        "max_displacement": float(distance.max()),
        "moved_over_1px": float((distance > 1.0).mean()),
        "max_abs_heatmap_difference": float((int8 - fp32).abs().max()),
        "max_abs_heatmap": float(fp32.abs().max()),
    }


def _ort_version() -> str:
    (ort,) = require("onnxruntime")
    return str(ort.__version__)


@dataclass(frozen=True)
class Int8Request:
    """What ``tools/export.py --int8`` asks: the calibration source and size, the method and the accuracy bound."""

    calibration: str
    count: int = DEFAULT_CALIBRATION_COUNT
    data_root: str | None = None
    method: str = "minmax"
    reduce_range: bool = False
    max_displacement: float = DEFAULT_MAX_DISPLACEMENT
    accept_error: bool = False  # write the file even when the bound is exceeded (with a warning)

    def check(self) -> None:
        """Refuse a bound that is not a positive finite number, or an unknown method, before any work."""
        if not (np.isfinite(self.max_displacement) and self.max_displacement > 0):
            raise UserError(
                f"--int8-max-displacement {self.max_displacement:g}: must be a positive number of heatmap pixels "
                f"(default {DEFAULT_MAX_DISPLACEMENT})"
            )
        if self.method not in CALIBRATION_METHODS:
            raise UserError(
                f"--calibration-method {self.method}: choose one of {', '.join(CALIBRATION_METHODS)}"
            )
