"""What int8 costs in accuracy: a checkpoint in PyTorch fp32, onnxruntime fp32 and onnxruntime int8, side by side.

    python benchmarks/int8_accuracy.py output/mpii_demo/deploy.pth --calibration mpii/demo \\
        --calibration-root data/demo_mpii [--data-root data/demo_mpii] [--no-flip]

The checkpoint is exported twice into a temporary folder by ``tools/export.py``'s code (fp32, then int8
calibrated as ``--calibration`` says), and all three run through the same ``Predictor`` (crop, flip test,
decode). It prints (1) the validation metric of the checkpoint's own experiment (PCKh Mean for MPII, AP for
COCO) for each, and (2) on the real sample images beside the repository (../shared/data, with their annotated
person boxes) the mean and largest displacement of the int8 keypoints from the fp32 ones, in image pixels
and in heatmap pixels. Nothing here is timed: the numbers are deterministic for given library versions.
With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.registry import build_dataset  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.convert.int8 import DEFAULT_CALIBRATION_COUNT, Int8Request  # noqa: E402
from engine.convert.onnx import export_onnx  # noqa: E402
from engine.experiment.config import ExperimentConfig  # noqa: E402
from engine.inference.loops import predict  # noqa: E402
from engine.inference.networks import deployable, load_network  # noqa: E402
from engine.inference.onnx_network import onnx_predictor  # noqa: E402
from engine.inference.predictor import Predictor  # noqa: E402
from engine.runtime.execution import make_runtime  # noqa: E402
from engine.runtime.loader import make_loader  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.paths import SHARED_DATA  # noqa: E402

SAMPLES = {  # the real annotated sample persons of each skeleton (../shared/data, MANIFEST.md)
    "mpii": {"name": "mpii", "root": str(SHARED_DATA / "mpii"), "annotation_file": "annot/sample.json"},
    "coco": {
        "name": "coco",
        "root": str(SHARED_DATA / "coco"),
        "ann_file": "annotations/person_keypoints_sample.json",
        "image_dir": "images/val2017",
        "use_gt_boxes": True,
    },
}
CASES = ("PyTorch fp32", "onnxruntime fp32", "onnxruntime int8")


def dataset_for(data: dict[str, Any], predictor: Predictor, split: str) -> Any:
    """The dataset of a data section, cropped at the predictor's input size in its colour mode."""
    codec = predictor.codec
    section = {
        **data,
        "input_size": list(codec.input_size),
        "heatmap_size": list(codec.heatmap_size),
        "sigma": codec.sigma,
        "color": predictor.pipeline.color,
    }
    return build_dataset(section, split, train=False, codec=codec)


def keypoints(predictor: Predictor, dataset: Any, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints in image pixels and scores of every person of ``dataset``, in order."""
    loader = make_loader(dataset, batch_size, 0, predictor.runtime)
    predictions = predict(predictor, loader, desc="predict")
    return predictions[next(iter(predictions))]


def measure(
    checkpoint: Path, request: Int8Request, data_root: str | None, flip: bool | None
) -> dict[str, Any]:
    """The metric on the validation set and the sample displacement of the three cases."""
    loaded = load_network(checkpoint, overrides=[f"data.root={data_root}"] if data_root else [])
    config: ExperimentConfig | None = loaded.config
    if config is None:
        raise UserError(f"{checkpoint} carries no experiment config: its validation set is unknown")
    network = deployable(loaded)
    runtime = make_runtime("cpu", warn_cpu=False)
    predictors = {"PyTorch fp32": Predictor(network.model, network.pipeline.with_flip(flip), runtime)}
    with tempfile.TemporaryDirectory() as folder:
        for name, int8 in (("onnxruntime fp32", None), ("onnxruntime int8", request)):
            path = Path(folder) / f"{name.split()[-1]}.onnx"
            export_onnx(checkpoint, path, int8=int8, log=lambda line: print(line, file=sys.stderr))
            predictors[name] = onnx_predictor(path, flip=flip)
        reference = predictors["PyTorch fp32"]
        valid = dataset_for(config.data, reference, "valid")
        metric_name = "Mean" if config.data["name"] == "mpii" else "AP"
        metrics = {}
        for name, predictor in predictors.items():
            preds, maxvals = keypoints(predictor, valid)
            metrics[name] = float(valid.evaluate(preds, maxvals).table[metric_name])
        sample = SAMPLES[reference.skeleton.name]
        persons = dataset_for(sample, reference, "valid")
        fp32_points, _ = keypoints(predictors["onnxruntime fp32"], persons)
        int8_points, _ = keypoints(predictors["onnxruntime int8"], persons)
    distance = np.linalg.norm(int8_points - fp32_points, axis=-1)
    # image pixels per heatmap pixel of each person: box width (scale * 200) / heatmap width
    per_heatmap_pixel = (
        np.array([r.scale[0] * 200.0 for r in persons.records]) / reference.codec.heatmap_size[0]
    )
    in_heatmap_pixels = distance / per_heatmap_pixel[:, None]
    return {
        "checkpoint": str(checkpoint),
        "validation": {
            "experiment": config.experiment,
            "root": str(config.data["root"]),
            "persons": len(valid),
        },
        "metric": metric_name,
        "scores": metrics,
        "sample": {
            "images": str(Path(sample["root"])),
            "persons": len(persons),
            "mean_displacement_image_px": float(distance.mean()),
            "max_displacement_image_px": float(distance.max()),
            "mean_displacement_heatmap_px": float(in_heatmap_pixels.mean()),
            "max_displacement_heatmap_px": float(in_heatmap_pixels.max()),
        },
        "flip_test": reference.pipeline.flip,
        "calibration": {"source": request.calibration, "count": request.count, "method": request.method},
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": _version("onnxruntime"),
            "opencv": _version("cv2"),
            "python": platform.python_version(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="deploy.pth (one network)")
    parser.add_argument("--calibration", required=True, help="image folder or experiment, as tools/export.py")
    parser.add_argument("--calibration-root", help="data.root of the calibration experiment")
    parser.add_argument("--calibration-count", type=int, default=DEFAULT_CALIBRATION_COUNT)
    parser.add_argument("--data-root", help="data.root of the checkpoint's validation set")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="flip test")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    request = Int8Request(
        args.calibration,
        count=args.calibration_count,
        data_root=args.calibration_root,
        accept_error=True,  # this script reports the error; the export's bound is not its question
    )
    result = measure(args.checkpoint, request, args.data_root, args.flip)
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    print(f"{args.checkpoint} ({'flip test' if result['flip_test'] else 'no flip'}; {versions})")
    print(
        f"| case | {result['metric']} on {result['validation']['experiment']} validation ({result['validation']['persons']} persons) |"
    )
    print("|---|---|")
    for name in CASES:
        print(f"| {name} | {result['scores'][name]:.3f} |")
    sample = result["sample"]
    print(
        f"int8 vs fp32 keypoints on {sample['persons']} real sample persons ({sample['images']}, annotated boxes): "
        f"mean displacement {sample['mean_displacement_image_px']:.2f} image px "
        f"({sample['mean_displacement_heatmap_px']:.3f} heatmap px), largest {sample['max_displacement_image_px']:.1f} "
        f"image px ({sample['max_displacement_heatmap_px']:.2f} heatmap px)"
    )
    if args.json:
        print(json.dumps(result))
    return 0


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(run_cli(main))
