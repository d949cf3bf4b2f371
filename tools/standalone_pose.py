"""Pose from an exported ONNX file and its sidecar JSON alone: no import from this repository.

    python tools/standalone_pose.py pose.onnx photo.jpg [--box X Y W H] [--no-flip]

Prints one JSON line: the keypoints [[x, y, score], ...] in image pixels of the person in the box (default:
the whole image). Needs only numpy, OpenCV and onnxruntime, and follows the rules written in the sidecar
(crop, colour, flip test, decode), so it is the reference for using an exported network from another program;
the tests check that it gives the keypoints ``demo.py --onnx`` gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime


def crop_box(box: list[float], sidecar: dict) -> tuple[np.ndarray, float]:
    """Centre and crop width (scale_x * 200) of a person box, by the sidecar's box_to_crop rule."""
    x, y, w, h = box
    center = np.array([x + w * 0.5, y + h * 0.5])
    aspect = sidecar["input_size"]["width"] / sidecar["input_size"]["height"]
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    return center, w * sidecar["crop"]["box_padding"]


def network_input(image: np.ndarray, center: np.ndarray, crop_width: float, sidecar: dict) -> np.ndarray:
    """The normalised (1, 3, H, W) input of one person, by the sidecar's warp and colour rules."""
    width, height = sidecar["input_size"]["width"], sidecar["input_size"]["height"]
    zoom = width / crop_width
    matrix = np.array([[zoom, 0.0, width / 2 - zoom * center[0]], [0.0, zoom, height / 2 - zoom * center[1]]])
    crop = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR)
    color = sidecar["color"]
    if color["channel_order"] == "RGB":
        crop = crop[:, :, ::-1]
    array = (crop.astype(np.float32) / 255.0 - np.array(color["mean"], np.float32)) / np.array(
        color["std"], np.float32
    )
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])


def heatmaps(
    session: onnxruntime.InferenceSession, inputs: np.ndarray, sidecar: dict, flip: bool
) -> np.ndarray:
    """The (J, h, w) heatmaps of one input, averaged with the mirrored input's as the sidecar's flip_test says."""
    name = sidecar["input"]["name"]
    plain = session.run(None, {name: inputs})[0][0]
    if not flip:
        return plain
    mirrored = session.run(None, {name: np.ascontiguousarray(inputs[..., ::-1])})[0][0][..., ::-1]
    order = np.arange(len(mirrored))
    for a, b in sidecar["flip_pairs"]:
        order[a], order[b] = b, a
    mirrored = mirrored[order]
    if sidecar["flip_test"]["shift_heatmap"]:
        mirrored = np.concatenate([mirrored[..., :1], mirrored[..., :-1]], axis=-1)
    return 0.5 * (plain + mirrored)


def decode(maps: np.ndarray, center: np.ndarray, crop_width: float) -> list[list[float]]:
    """Keypoints [x, y, score] in image pixels by the sidecar's decode rule (argmax + quarter pixel)."""
    joints, height, width = maps.shape
    keypoints = []
    for j in range(joints):
        index = int(np.argmax(maps[j]))
        score = float(maps[j].flat[index])
        y, x = divmod(index, width) if score > 0 else (0, 0)
        fx, fy = float(x), float(y)
        if 1 < x < width - 1 and 1 < y < height - 1:
            fx += 0.25 * np.sign(maps[j, y, x + 1] - maps[j, y, x - 1])
            fy += 0.25 * np.sign(maps[j, y + 1, x] - maps[j, y - 1, x])
        step = crop_width / width
        keypoints.append([center[0] + (fx - width / 2) * step, center[1] + (fy - height / 2) * step, score])
    return keypoints


def load(onnx: Path) -> tuple[dict, onnxruntime.InferenceSession]:
    """The sidecar JSON and the onnxruntime session of an exported file; ValueError in one line if unusable."""
    sidecar_path = onnx.with_suffix(".json")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot read the sidecar JSON {sidecar_path} that tools/export.py writes beside {onnx}: {error}"
        ) from None
    try:
        session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, NoSuchFile, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"onnxruntime cannot load {onnx} ({first}); the file is cut off or is not an ONNX model: "
            "export it again with tools/export.py"
        ) from None
    return sidecar, session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--box", nargs=4, type=float, metavar=("X", "Y", "W", "H"))
    parser.add_argument(
        "--no-flip", action="store_true", help="skip the flip test even if the sidecar enables it"
    )
    args = parser.parse_args(argv)

    try:
        sidecar, session = load(args.onnx)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    image = cv2.imread(str(args.image), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)  # BGR, stored frame
    if image is None:
        print(f"error: cannot read image {args.image}", file=sys.stderr)
        return 2
    box = args.box or [0.0, 0.0, float(image.shape[1]), float(image.shape[0])]
    center, crop_width = crop_box(box, sidecar)
    maps = heatmaps(session, network_input(image, center, crop_width, sidecar), sidecar,
                    sidecar["flip_test"]["enabled"] and not args.no_flip)  # fmt: skip
    print(json.dumps({"keypoints": decode(maps, center, crop_width)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
