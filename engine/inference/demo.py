"""Top-down pose on any image or video: person boxes -> crops -> keypoints in image pixels, drawn and written as JSON.

Persons come from a boxes file, a COCO detections file, or (neither given) the whole image as one person.
The network is a checkpoint run by PyTorch or an exported ONNX file run by onnxruntime; both predict through
``Predictor`` (the same crop, flip test and decode as validation), so they agree to numerical noise.

A video (``engine.inference.video``) is read frame by frame, its persons from detections whose image_id is
the frame index, or the whole frame. Boxes file (``--boxes``): a JSON object from image file name (no folder) to a list of boxes [x, y, w, h] in
pixels, e.g. ``{"000000000785.jpg": [[280.8, 44.7, 218.7, 346.7]]}``. COCO detections (``--detections``): a
COCO results list ``[{image_id, category_id, bbox [x, y, w, h], score}, ...]``; an image matches the
detections whose image_id is its file name stem read as an integer (``000000000785.jpg`` -> 785), person
boxes below ``score_threshold`` are dropped. Every box becomes a crop by the project's COCO rule (centre,
input aspect ratio, 1.25 padding).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datasets.coco_eval import KEYPOINT_SCORE_THRESHOLD, PERSON_CATEGORY_ID, coco_results, rescore
from datasets.transforms import IMAGE_SUFFIXES, read_image
from engine.inference.networks import deployable, load_network
from engine.inference.onnx_network import onnx_predictor
from engine.inference.predictor import Predictor, box_crop, whole_image_box
from engine.inference.video import is_video, run_video, video_outputs
from engine.runtime.execution import make_runtime
from utils.errors import DataError, UserError
from utils.output_paths import prepare_outputs
from utils.run_folder import note_follow_up

EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a viewer turns the stored pixels
COCO_RESULTS_FILE = "coco_results.json"
MAX_BOX_FACTOR = 100  # a box more than this many times the image's larger side is refused (wrong units?)


@dataclass
class Person:
    """One person to predict: its box [x, y, w, h] in image pixels and the box's score."""

    box: np.ndarray
    score: float = 1.0


def list_images(path: str | Path) -> list[Path]:
    """One image file, or the image files of a folder (by suffix, sorted); a DataError when there are none."""
    path = Path(path)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{path} holds no images (files ending in {', '.join(IMAGE_SUFFIXES)})")
        return images
    if not path.exists():
        raise DataError(f"image or folder not found: {path}")
    return [path]


def _box(value: Any, where: str) -> np.ndarray:
    """A box [x, y, w, h] of 4 finite numbers, or a DataError naming where it was read."""
    try:
        box = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise DataError(f"{where}: a box must be 4 finite numbers [x, y, w, h] in pixels, got {value!r:.80}")
    return box


def read_boxes_file(path: str | Path) -> dict[str, list[Person]]:
    """A boxes file ``{image file name: [[x, y, w, h], ...]}`` as persons per file name."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"boxes file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"cannot read the boxes file {path}: {error}") from None
    if not isinstance(document, dict):
        raise DataError(
            f"{path}: a boxes file is a JSON object from image file name to a list of boxes [x, y, w, h], "
            f'e.g. {{"photo.jpg": [[10, 20, 100, 250]]}}; got a JSON {type(document).__name__}'
        )
    boxes = {}
    for name, entries in document.items():
        if not isinstance(entries, list):
            raise DataError(f"{path}: '{name}' must map to a list of boxes [x, y, w, h], got {entries!r:.80}")
        boxes[str(name)] = [Person(_box(e, f"{path}: '{name}' box {i}")) for i, e in enumerate(entries)]
    return boxes


def read_detections_file(path: str | Path, score_threshold: float) -> dict[int, list[Person]]:
    """The person detections of a COCO results file with score >= ``score_threshold``, per image_id."""
    from datasets.coco import load_detections

    by_image: dict[int, list[Person]] = {}
    for index, entry in enumerate(load_detections(Path(path))):
        where = f"{path}: entry {index} (image_id {entry.get('image_id')!r})"
        box = _box(entry["bbox"], where)
        score = entry["score"]
        if not isinstance(score, int | float) or not math.isfinite(score):
            raise DataError(f"{where}: the score must be a finite number, got {score!r}")
        if entry.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID or score < score_threshold:
            continue
        by_image.setdefault(int(entry["image_id"]), []).append(Person(box, float(score)))
    return by_image


def image_id_of(path: Path) -> int | str:
    """The COCO image_id of a file: its stem as an integer (``000000000785.jpg`` -> 785), else the stem."""
    return int(path.stem) if path.stem.isdigit() else path.stem


def check_box(box: np.ndarray, image: np.ndarray, where: str) -> None:
    """Refuse a box without area or one that does not overlap the image (it would crop nothing but border)."""
    height, width = image.shape[:2]
    x, y, w, h = box
    if w <= 0 or h <= 0 or x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise DataError(
            f"{where}: the box [x, y, w, h] = [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} "
            "image (a box needs a positive width and height and must overlap the image)"
        )
    if max(w, h) > MAX_BOX_FACTOR * max(width, height):
        raise DataError(
            f"{where}: the box [x, y, w, h] = [{x:g}, {y:g}, {w:g}, {h:g}] is more than {MAX_BOX_FACTOR} times "
            f"the {width}x{height} image; boxes are in pixels of the image: check the boxes' units"
        )


def check_score_threshold(value: float) -> None:
    """Refuse a detection score threshold that is not a finite number in [0, 1] (NaN would drop every box)."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UserError(
            f"--score-threshold {value}: must be a finite number from 0 to 1 (detection scores are "
            "probabilities; e.g. 0.5, or 0 to keep every detection)"
        )


def output_files(image: Path, out_dir: Path) -> tuple[Path, Path]:
    """The picture and keypoints of an image: its whole file name + .png / .json, so p.jpg and p.png never collide."""
    return out_dir / f"{image.name}.png", out_dir / f"{image.name}.json"


def make_predictor(
    checkpoint: str | Path | None,
    onnx: str | Path | None,
    *,
    head: str | None = None,
    flip: bool | None = None,
    device: str | None = None,
) -> tuple[Predictor, str | None]:
    """The predictor of the demo and the head to ask it for.

    With ``onnx`` the network runs in onnxruntime and its pipeline comes from the sidecar JSON (a checkpoint,
    if also given, must agree with it); otherwise the checkpoint's single network, its branch ``head``, or
    with ``head='ensemble'`` the whole multi-branch model and its FAU ensemble, run in PyTorch.
    """
    if onnx is not None:
        if head is not None:
            raise UserError(f"--head {head}: an ONNX file holds one network; --head chooses one at export")
        predictor = onnx_predictor(onnx, flip=flip)
        if checkpoint is not None:
            _check_same_pipeline(predictor, Path(checkpoint), Path(onnx))
        return predictor, None
    if checkpoint is None:
        raise UserError("give --checkpoint (PyTorch) or --onnx (onnxruntime)")
    runtime = make_runtime(device or "auto", warn_cpu=False)
    loaded = load_network(checkpoint)
    if head == "ensemble":
        if len(loaded.model.deployable_heads()) < 2:
            raise UserError(f"--head ensemble: {checkpoint} holds a single network, which has no ensemble")
        return Predictor(
            runtime.prepare(loaded.model), loaded.require_pipeline().with_flip(flip), runtime
        ), head
    network = deployable(loaded, head, hint="or 'ensemble' for the FAU mix of the branches")
    return Predictor(runtime.prepare(network.model), network.pipeline.with_flip(flip), runtime), None


def _check_same_pipeline(predictor: Predictor, checkpoint: Path, onnx: Path) -> None:
    """Refuse a checkpoint and an ONNX file made for another skeleton or colour mode (the input size may differ:
    a file can be exported at another size)."""
    pipeline = load_network(checkpoint).require_pipeline()
    if (predictor.pipeline.color, predictor.skeleton.joint_names) != (
        pipeline.color,
        pipeline.skeleton.joint_names,
    ):
        raise UserError(
            f"{onnx} and {checkpoint} do not belong together (their colour modes or joints differ); give only "
            "--onnx: its sidecar JSON holds the whole pipeline"
        )


def persons_of(
    path: Path,
    image: np.ndarray,
    boxes: dict[str, list[Person]] | None,
    detections: dict[int, list[Person]] | None,
) -> list[Person] | None:
    """The persons of one image: its boxes, its detections, or the whole image; None when the file lists none."""
    if boxes is None and detections is None:
        return [Person(np.array(whole_image_box(image)))]
    found = listed_persons(path, boxes, detections)
    if found is None:
        return None
    for index, person in enumerate(found):
        check_box(person.box, image, f"{path.name} box {index}")
    return found


def listed_persons(
    path: Path, boxes: dict[str, list[Person]] | None, detections: dict[int, list[Person]] | None
) -> list[Person] | None:
    """The persons a boxes or detections file lists for an image (None: it lists none; read neither: [])."""
    if boxes is not None:
        return boxes.get(path.name)
    if detections is not None:
        image_id = image_id_of(path)
        return detections.get(image_id) if isinstance(image_id, int) else None
    return []


def run_demo(
    inputs: str | Path,
    *,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    boxes_file: str | Path | None = None,
    detections_file: str | Path | None = None,
    score_threshold: float = 0.5,
    out_dir: str | Path = "output/demo",
    head: str | None = None,
    flip: bool | None = None,
    device: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Predict, draw and write ``<name>.png`` and ``<name>.json`` for every image; returns what was written.

    ``<name>`` is the image's file name with its extension (``output_files``). Every output is checked before
    any prediction: none replaces an input, and an earlier result is replaced only with ``overwrite``.

    The JSON is a list of COCO results entries (image_id, category_id 1, keypoints [x, y, score] x 17, score)
    for the COCO skeleton, else ``{image, skeleton, joint_names, persons: [{box, score, keypoints}]}``.
    """
    from engine.inference.vis import draw_pose

    if boxes_file is not None and detections_file is not None:
        raise UserError("--boxes and --detections exclude each other: give one source of person boxes")
    check_score_threshold(score_threshold)
    if is_video(inputs):
        return [
            _video_demo(
                Path(inputs), checkpoint, onnx, boxes_file, detections_file, score_threshold, Path(out_dir),
                head, flip, device, overwrite, log,
            )
        ]  # fmt: skip
    images = list_images(inputs)
    boxes = read_boxes_file(boxes_file) if boxes_file is not None else None
    detections = read_detections_file(detections_file, score_threshold) if detections_file else None
    predictor, use_head = make_predictor(checkpoint, onnx, head=head, flip=flip, device=device)
    skeleton = predictor.skeleton
    out_dir = Path(out_dir)
    outputs = [
        file
        for path in images
        if listed_persons(path, boxes, detections) is not None
        for file in output_files(path, out_dir)
    ]
    if skeleton.name == "coco":
        outputs.append(out_dir / COCO_RESULTS_FILE)
    read = [*images, *(p for p in (boxes_file, detections_file, checkpoint, onnx) if p is not None)]
    if onnx is not None:
        read.append(Path(onnx).with_suffix(".json"))
    prepare_outputs(outputs, "--out", inputs=read, overwrite=overwrite)
    note_follow_up(out_dir)

    written, all_results, unreadable = [], [], []
    for path in images:
        try:
            image = read_image(path)
        except DataError as error:  # one bad file does not stop a folder: said now, and again at the end
            log(f"{path.name}: {error}; skipped")
            unreadable.append(str(error))
            continue
        orientation = exif_orientation(path)
        if orientation != 1:
            log(
                f"{path.name}: its EXIF orientation tag ({orientation}) is ignored: the image is used as "
                "stored, as the datasets' annotations are (viewers show it turned); turn its pixels first if the "
                "person lies sideways"
            )
        persons = persons_of(path, image, boxes, detections)
        if persons is None:
            log(f"{path.name}: no {'boxes' if boxes is not None else 'detections'} for it, skipped")
            continue
        crops = [box_crop(person.box, predictor.codec.input_size) for person in persons]
        centers = np.array([c for c, _ in crops]).reshape(-1, 2)
        scales = np.array([s for _, s in crops]).reshape(-1, 2)
        keypoints, scores = predictor.predict(image, centers, scales, head=use_head)
        box_array = np.array([p.box for p in persons]).reshape(-1, 4)
        canvas = draw_pose(image, keypoints, scores, skeleton.joint_names, skeleton.limbs, box_array)
        png, js = output_files(path, out_dir)
        if not cv2.imwrite(str(png), canvas):
            raise UserError(f"--out: OpenCV could not write {png} (is the disk full?); pass another --out")
        if skeleton.name == "coco":
            document: Any = _coco_entries(path, keypoints, scores, persons)
            all_results += document
        else:
            document = _plain_document(
                path, image, keypoints, scores, persons, skeleton.joint_names, skeleton.name
            )
        js.write_text(json.dumps(document, indent=1) + "\n")
        log(f"{path.name}: {len(persons)} person(s) -> {png}, {js}")
        written.append({"image": path, "png": png, "json": js, "keypoints": keypoints, "scores": scores})
    if not written and not unreadable:
        raise DataError(
            f"none of the {len(images)} image(s) has a person box in "
            f"{boxes_file if boxes is not None else detections_file}: "
            + (
                "boxes are keyed by image file name (no folder)"
                if boxes is not None
                else "detections match the image whose file name stem is their image_id (000000000785.jpg -> 785)"
            )
        )
    if skeleton.name == "coco" and written:
        (out_dir / COCO_RESULTS_FILE).write_text(json.dumps(all_results) + "\n")
    if unreadable:
        raise DataError(
            f"{len(unreadable)} of the {len(images)} image(s) could not be read (each is named above; the "
            f"first: {unreadable[0]}); the other {len(written)} were written to {out_dir}"
        )
    return written


def _video_demo(
    video: Path,
    checkpoint: str | Path | None,
    onnx: str | Path | None,
    boxes_file: str | Path | None,
    detections_file: str | Path | None,
    score_threshold: float,
    out_dir: Path,
    head: str | None,
    flip: bool | None,
    device: str | None,
    overwrite: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``run_demo`` on a video: persons from detections keyed by frame index, or the whole frame."""
    if boxes_file is not None:
        raise UserError(
            f"--boxes {boxes_file}: a boxes file names images; for the video {video} give --detections, a COCO "
            "detections list whose image_id is the 0-based frame index, or no box option (the whole frame)"
        )
    detections = read_detections_file(detections_file, score_threshold) if detections_file else None
    predictor, use_head = make_predictor(checkpoint, onnx, head=head, flip=flip, device=device)
    read = [video, *(Path(p) for p in (detections_file, checkpoint, onnx) if p is not None)]
    if onnx is not None:
        read.append(Path(onnx).with_suffix(".json"))
    prepare_outputs(video_outputs(video, out_dir), "--out", inputs=read, overwrite=overwrite)
    note_follow_up(out_dir)
    return run_video(
        video, predictor, detections=detections, check_box=check_box, out_dir=out_dir, head=use_head, log=log
    )


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of an image file (1: shown as stored; also when there is none or no Pillow)."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # Pillow missing, or a file it cannot parse: OpenCV's reading decides
        return 1


def _coco_entries(
    path: Path, keypoints: np.ndarray, scores: np.ndarray, persons: Sequence[Person]
) -> list[dict[str, Any]]:
    """COCO results entries of one image; the person score is HRNet's (box score x mean confident joint)."""
    triples = np.concatenate([keypoints, scores[..., None]], axis=2)
    person_scores = rescore(triples, np.array([p.score for p in persons]), KEYPOINT_SCORE_THRESHOLD)
    image_id = image_id_of(path)
    entries = coco_results(np.zeros(len(persons), dtype=np.int64), triples, person_scores)
    for entry in entries:
        entry["image_id"] = image_id
    return entries


def _plain_document(
    path: Path,
    image: np.ndarray,
    keypoints: np.ndarray,
    scores: np.ndarray,
    persons: Sequence[Person],
    joint_names: Sequence[str],
    skeleton: str,
) -> dict[str, Any]:
    """The keypoints of one image for a skeleton other than COCO's."""
    height, width = image.shape[:2]
    return {
        "image": path.name,
        "width": width,
        "height": height,
        "skeleton": skeleton,
        "joint_names": list(joint_names),
        "persons": [
            {
                "box": [float(v) for v in person.box],
                "score": person.score,
                "keypoints": [[float(x), float(y), float(s)] for (x, y), s in zip(points, joint_scores)],
            }
            for person, points, joint_scores in zip(persons, keypoints, scores)
        ],
    }
