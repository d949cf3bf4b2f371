"""ONNX export of one deployable pose network, with a sidecar JSON that says how to feed it and read it.

The exported graph takes normalised crops ``images`` (N, 3, H, W) and returns one tensor, ``heatmaps``
(N, J, h, w): the last stack's heatmaps (``PoseOutput.final``). The sidecar ``OUT.json`` beside ``OUT.onnx``
holds everything a program without this repository needs: the crop rule, colour order and normalisation,
joint names, flip pairs, limbs, heatmap size, stride, flip test and decode rule. ``OnnxRuntimeNetwork``
runs the file behind the ``PoseModel`` interface, so the demo predicts through the same ``Predictor`` (crop,
flip test, decode) as PyTorch does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datasets.coco import BOX_PADDING
from datasets.codec import HeatmapCodec
from datasets.transforms import COLOR_NORMALIZATION, IMAGE_SUFFIXES, PIXEL_STD, read_image
from engine.convert.int8 import Calibration, Int8Request, calibration_crops, int8_error, quantize_int8
from engine.inference.networks import DeployedNetwork, deployable, load_network
from engine.inference.onnx_network import INPUT_NAME, OUTPUT_NAME, SIDECAR_FORMAT, require
from engine.inference.predictor import box_crop, person_crop, whole_image_box
from utils.errors import UserError
from utils.output_paths import prepare_outputs
from utils.paths import SHARED_DATA
from utils.run_folder import note_follow_up

TOLERANCE = 1e-4  # the largest heatmap difference onnxruntime may have from PyTorch on the check crop
DEFAULT_OPSET = 17
SAMPLE_IMAGE_DIRS = (SHARED_DATA / "mpii" / "images", SHARED_DATA / "coco" / "images" / "val2017")


class HeatmapNetwork(nn.Module):
    """A pose network whose forward returns only the final heatmaps: the one output an exported graph has."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).final


def default_check_image() -> Path:
    """The first real sample image beside the repository (../shared/data), for the export check."""
    for folder in SAMPLE_IMAGE_DIRS:
        images = sorted(p for p in folder.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images[0]
    raise UserError(
        "the export check runs the network on a real image crop, and no sample image was found in "
        f"{SHARED_DATA}: pass one with --image PHOTO.jpg"
    )


def check_crops(image_path: Path, codec: HeatmapCodec, color: str, batch: int) -> Tensor:
    """``batch`` normalised crops of a real image (the whole image, then its mirror image), for the check."""
    image = read_image(image_path)
    center, scale = box_crop(whole_image_box(image), codec.input_size)
    crop = person_crop(image, center, scale, codec.input_size, color)
    crops = [crop, crop.flip(2)]
    return torch.stack([crops[i % 2] for i in range(batch)])


def resized_codec(network: DeployedNetwork, input_hw: tuple[int, int] | None) -> HeatmapCodec:
    """The codec of the exported input size: the trained one, or one whose heatmap size the network gives."""
    codec = network.pipeline.codec
    if input_hw is None or tuple(input_hw) == (codec.input_size[1], codec.input_size[0]):
        return codec
    height, width = (int(v) for v in input_hw)
    multiple = network.model.input_multiple()
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise UserError(
            f"--input-size {height} {width}: model '{network.section['name']}' needs a positive height and "
            f"width that are multiples of {multiple}"
        )
    with torch.no_grad():
        out_h, out_w = network.model(torch.zeros(1, 3, height, width)).final.shape[-2:]
    return HeatmapCodec((width, height), (int(out_w), int(out_h)), codec.sigma)


def color_description(color: str) -> dict[str, Any]:
    """What the network expects of its input pixels, exactly (the ``color`` sidecar field)."""
    mode = COLOR_NORMALIZATION[color]
    order = mode.channel_order
    mean, std = [round(float(v), 6) for v in mode.mean], [round(float(v), 6) for v in mode.std]
    return {
        "mode": color,
        "channel_order": order,
        "pixel_scale": "pixel / 255",
        "mean": mean,
        "std": std,
        "formula": f"input[c] = (pixel[c] / 255 - mean[c]) / std[c], c indexing the {order} channels",
        "rule": mode.rule,
    }


def sidecar(
    network: DeployedNetwork,
    codec: HeatmapCodec,
    *,
    onnx_file: str,
    dynamic_batch: bool,
    opset: int,
    check: dict[str, Any],
    quantization: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The sidecar JSON of an exported network: everything needed to feed it and to read its heatmaps.

    ``precision`` is ``fp32`` or ``int8``; ``quantization`` (null for fp32) says how the int8 graph was made
    and calibrated and what it costs against the fp32 graph."""
    width, height = codec.input_size
    heat_w, heat_h = codec.heatmap_size
    batch: int | str = "batch" if dynamic_batch else 1
    skeleton = network.pipeline.skeleton
    return {
        "format": SIDECAR_FORMAT,
        "onnx_file": onnx_file,
        "opset": opset,
        "precision": "fp32" if quantization is None else "int8",
        "quantization": quantization,
        "input": {
            "name": INPUT_NAME,
            "shape": [batch, 3, height, width],
            "dtype": "float32",
            "layout": "NCHW",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": [batch, skeleton.num_joints, heat_h, heat_w],
            "dtype": "float32",
        },
        "input_size": {"width": width, "height": height},
        "heatmap_size": {"width": heat_w, "height": heat_h},
        "stride": [float(s) for s in codec.stride],
        "sigma": codec.sigma,
        "color": color_description(network.pipeline.color),
        "skeleton": skeleton.name,
        "joint_names": list(skeleton.joint_names),
        "flip_pairs": [list(pair) for pair in skeleton.flip_pairs],
        "limbs": [list(limb) for limb in skeleton.limbs],
        "crop": {
            "pixel_std": PIXEL_STD,
            "box_padding": BOX_PADDING,
            "box_to_crop": (
                "a person box [x, y, w, h] in image pixels -> centre (x + w/2, y + h/2); grow its shorter side "
                f"until w/h = input width/height ({width}/{height}); multiply by {BOX_PADDING}; scale = size / "
                f"{PIXEL_STD:g}"
            ),
            "warp": (
                "affine, bilinear, zero border: zoom = input_width / (scale_x * 200); "
                "u = zoom * (x - centre_x) + input_width / 2, v = zoom * (y - centre_y) + input_height / 2"
            ),
        },
        "flip_test": {
            "enabled": network.pipeline.flip,
            "shift_heatmap": network.pipeline.shift_heatmap,
            "rule": (
                "also run the horizontally mirrored crop; mirror its heatmaps back along x, swap the flip_pairs "
                "channels, and with shift_heatmap move them one column right (column k takes column k-1, "
                "column 0 kept); average with the plain heatmaps"
            ),
        },
        "decode": {
            "rule": (
                "per joint: (x, y) = argmax of its heatmap, score = the peak value; if 1 < x < w-1 and "
                "1 < y < h-1, move x by 0.25 * sign(H[y, x+1] - H[y, x-1]) and y by 0.25 * sign(H[y+1, x] - "
                "H[y-1, x]); a peak <= 0 decodes to (0, 0)"
            ),
            "quarter_offset": 0.25,
            "to_image": (
                "x_image = centre_x + (x - heatmap_width / 2) * scale_x * 200 / heatmap_width; "
                "y_image = centre_y + (y - heatmap_height / 2) * scale_x * 200 / heatmap_width"
            ),
        },
        "model": network.section,
        "source": {"checkpoint": str(network.source), "head": network.head},
        "check": check,
    }


def export_onnx(
    checkpoint: str | Path,
    onnx_path: str | Path,
    *,
    input_hw: tuple[int, int] | None = None,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    head: str | None = None,
    image: str | Path | None = None,
    overwrite: bool = False,
    int8: Int8Request | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Export the checkpoint's network to ONNX, check it with onnx and onnxruntime, write the sidecar JSON.

    Raises a UserError (the files kept for inspection, no sidecar written) when onnxruntime's heatmaps on a
    real image crop differ from PyTorch's by more than ``TOLERANCE``. An existing ONNX file or sidecar is
    replaced only with ``overwrite``; the checkpoint and the check image never are.

    With ``int8`` the checked fp32 graph is quantized (``engine.convert.int8``) and only the int8 file is
    written; when its mean keypoint displacement from the fp32 graph exceeds the request's bound nothing is
    written (a UserError), unless the request accepts the error, which is then said and recorded.
    """
    onnx, ort = require("onnx", "onnxruntime")
    onnx_path = Path(onnx_path)
    if onnx_path.suffix != ".onnx":
        raise UserError(f"--onnx {onnx_path}: the output file name must end in .onnx")
    if int8 is not None:
        int8.check()
    read = [Path(checkpoint), *([Path(image)] if image is not None else [])]
    if int8 is not None and Path(int8.calibration).exists():
        read.append(Path(int8.calibration))
    prepare_outputs([onnx_path, onnx_path.with_suffix(".json")], "--onnx", inputs=read, overwrite=overwrite)
    loaded = load_network(checkpoint)
    network = deployable(loaded, head)
    # a deploy.pth holds one network: its label is the head of the trained network it was extracted from
    network = dataclasses.replace(network, head=str(loaded.state.get("source_head", network.head)))
    codec = resized_codec(network, input_hw)
    image_path = Path(image) if image is not None else default_check_image()
    batch = 2 if dynamic_batch else 1
    crops = check_crops(image_path, codec, network.pipeline.color, batch)
    calibration = None
    if int8 is not None:  # before anything is written: an empty folder is said at once
        calibration = calibration_crops(
            int8.calibration, codec, network.pipeline.color, count=int8.count, data_root=int8.data_root
        )
    wrapper = HeatmapNetwork(network.model).eval()

    note_follow_up(onnx_path)
    note_follow_up(onnx_path.with_suffix(".json"))
    with tempfile.TemporaryDirectory(prefix=".export-", dir=onnx_path.parent) as folder:
        fp32_path = onnx_path if int8 is None else Path(folder) / "fp32.onnx"
        check = check_fp32_graph(onnx, ort, wrapper, crops, fp32_path, opset, dynamic_batch, image_path, log)
        quantization = None
        if int8 is not None and calibration is not None:
            int8_file = Path(folder) / "int8.onnx"
            quantization = quantize_and_check(fp32_path, int8_file, calibration, codec, int8, onnx_path, log)
            os.replace(int8_file, onnx_path)
    document = sidecar(
        network,
        codec,
        onnx_file=onnx_path.name,
        dynamic_batch=dynamic_batch,
        opset=opset,
        check=check,
        quantization=quantization,
    )
    sidecar_path = onnx_path.with_suffix(".json")
    sidecar_path.write_text(json.dumps(document, indent=2) + "\n")
    width, height = codec.input_size
    log(
        f"wrote {onnx_path} ({network.section['name']}, head {network.head}, input "
        f"{'N' if dynamic_batch else 1}x3x{height}x{width}, opset {opset}, {document['precision']}) and {sidecar_path}"
    )
    return document


def check_fp32_graph(
    onnx: ModuleType,
    ort: ModuleType,
    wrapper: nn.Module,
    crops: Tensor,
    path: Path,
    opset: int,
    dynamic_batch: bool,
    image_path: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Export the fp32 graph to ``path``, run onnx.checker and compare onnxruntime with PyTorch on ``crops``."""
    torch_export(wrapper, crops[:1], path, opset, dynamic_batch)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        raise UserError(f"onnx.checker refuses {path}: {' '.join(str(error).split())[:300]}") from None

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {INPUT_NAME: crops.numpy()})[0]
    with torch.no_grad():
        reference = wrapper(crops).numpy()
    difference = float(np.abs(exported - reference).max()) if exported.shape == reference.shape else np.inf
    peak = float(np.abs(reference).max())
    log(
        f"onnxruntime {ort.__version__} vs PyTorch {torch.__version__} on {len(crops)} crop(s) of {image_path}: "
        f"max |heatmap difference| {difference:.3g} (heatmap values up to {peak:.3g}; tolerance {TOLERANCE:g})"
    )
    if not difference <= TOLERANCE:
        raise UserError(
            f"onnxruntime's heatmaps differ from PyTorch's by {difference:.3g} (> {TOLERANCE:g}) on a crop of "
            f"{image_path}: the export is not faithful (try another --opset); {path} is kept for "
            "inspection and no sidecar JSON was written"
        )
    return {
        "image": str(image_path),
        "batch": len(crops),
        "max_abs_difference": difference,
        "max_abs_heatmap": peak,
        "tolerance": TOLERANCE,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }


def quantize_and_check(
    fp32_path: Path,
    int8_path: Path,
    calibration: Calibration,
    codec: HeatmapCodec,
    request: Int8Request,
    onnx_path: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Quantize, measure the keypoint displacement from fp32 and hold it to the request's bound."""
    settings = quantize_int8(
        fp32_path, int8_path, calibration.crops, method=request.method, reduce_range=request.reduce_range
    )
    error = int8_error(fp32_path, int8_path, calibration.crops, codec)
    within = error["mean_displacement"] <= request.max_displacement
    log(
        f"int8 ({settings['format']}, per-channel, {request.method}) calibrated on {len(calibration.crops)} "
        f"crop(s) of {calibration.source}: mean keypoint displacement from fp32 "
        f"{error['mean_displacement']:.3f} heatmap px (bound {request.max_displacement:g}), max "
        f"{error['max_displacement']:.2f}, max |heatmap difference| {error['max_abs_heatmap_difference']:.3g}, "
        f"over {error['crops']} crops (the calibration crops and their mirror images)"
    )
    if not within:
        message = (
            f"the int8 graph moves the keypoints by {error['mean_displacement']:.3f} heatmap pixels on average "
            f"from the fp32 graph's (bound {request.max_displacement:g}, --int8-max-displacement) on "
            f"{error['crops']} crops of {calibration.source}"
        )
        if not request.accept_error:
            raise UserError(
                f"{message}: {onnx_path} was not written. Calibrate on more or other person crops "
                "(--calibration, --calibration-count), try --calibration-method entropy or percentile, or "
                "keep the fp32 export; --accept-int8-error writes the file anyway"
            )
        log(f"warning: {message}; written anyway (--accept-int8-error), the sidecar records it")
    return {
        **settings,
        "calibration": {**calibration.describe(), "crop": "as prediction crops (no augmentation)"},
        "check": {
            **error,
            "bound": {"mean_displacement": request.max_displacement, "unit": "heatmap pixels"},
            "within_bound": within,
            "on": "the calibration crops and their mirror images, int8 vs the fp32 graph",
        },
    }


def torch_export(wrapper: nn.Module, example: Tensor, path: Path, opset: int, dynamic_batch: bool) -> None:
    """``torch.onnx.export`` with the TorchScript exporter (the dynamo one needs onnxscript), warnings muted."""
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except Exception as error:  # the exporter raises many types (unsupported opset, operator)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"torch.onnx.export failed at opset {opset}: {first}") from None
