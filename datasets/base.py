"""The top-down sample pipeline shared by every dataset: person box -> augmented crop -> heatmap targets."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.codec import HeatmapCodec
from datasets.keypoints import Skeleton
from datasets.transforms import (
    affine_points,
    check_color,
    compose,
    crop_downsampling,
    crop_matrix,
    normalize_image,
    read_image,
    read_image_reduced,
    reduced_to_raw_matrix,
    sample_augmentation,
    warp_image,
)


@dataclass
class PersonRecord:
    """One annotated person, in 0-based image pixels, with its (already adjusted) box."""

    image: Path
    center: np.ndarray  # (2,) box centre
    scale: np.ndarray  # (2,) box width / 200, height / 200 (MPII: [s, s])
    joints: np.ndarray  # (J, 2)
    joints_vis: np.ndarray  # (J,) 0 or 1
    extra: dict[str, Any] = field(default_factory=dict)  # dataset meta: numbers and arrays only


@dataclass(frozen=True)
class Augmentation:
    """One sample's crop: box centre (raw image frame) and scale after half-body and scale draws, rotation, flip."""

    center: np.ndarray  # (2,) in the unflipped image; a flip mirrors it as HRNet does (x -> width - 1 - x)
    scale: np.ndarray  # (2,) box size / 200, the scale multiplier applied
    rotation: float  # degrees
    flipped: bool


@dataclass
class EvalResult:
    """What a dataset's evaluation returns: the table, its headline number (higher is better) and its text."""

    table: dict[str, float]
    metric: float
    text: str


class TopDownDataset(Dataset, abc.ABC):
    """Crops each person with the affine transform, augments it (training) and encodes heatmap targets.

    Randomness is drawn per sample from ``(seed, epoch, index)`` only. The training sampler hands the epoch
    to ``__getitem__`` with the index (a ``(index, epoch)`` key), because a DataLoader worker holds its own
    copy of the dataset: with persistent workers a ``set_epoch`` call in the main process never reaches it.
    So the augmentation of a sample is the same whatever the number of workers, their persistence or the
    number of processes, and after a resume. A plain integer index uses the epoch of ``set_epoch``.

    The sample geometry is HRNet's: the image is flipped first (centre and joints mirrored with it), then the
    box is cropped with scale and rotation; here both happen in one warp of the raw image (``crop_matrix``).
    ``force_flip`` (True or False; None draws as usual) pins the training flip, e.g. for tests, without
    changing the other draws.

    ``reduced_decode`` (off by default; it changes pixels) decodes a JPEG at 1/2, 1/4 or 1/8 of its size when
    the crop shrinks the box by at least that factor, and warps from the reduced image with the matrix
    composed accordingly. Joints, targets and weights are computed in the full image's frame as before, so
    they do not change; the crop's pixels become block averages instead of bilinear point samples.
    """

    has_ground_truth = True  # False: a split to predict, not to score (COCO test-dev: an image-info file)

    def __init__(
        self,
        records: list[PersonRecord],
        skeleton: Skeleton,
        *,
        train: bool,
        codec: HeatmapCodec,
        scale_factor: float = 0.25,
        rotation_factor: float = 30.0,
        rotation_prob: float = 0.6,
        flip: bool = True,
        color: str = "bgr_imagenet",
        seed: int = 0,
        reduced_decode: bool = False,
    ) -> None:
        self.records = records
        self.skeleton = skeleton
        self.train = train
        self.codec = codec
        self.input_size = codec.input_size
        self.scale_factor = scale_factor
        self.rotation_factor = rotation_factor
        self.rotation_prob = rotation_prob
        self.flip_prob = 0.5 if flip else 0.0
        self.color = color
        self.seed = seed
        self.reduced_decode = bool(reduced_decode)
        self.epoch = 0
        self.force_flip: bool | None = None
        self._flip_permutation = skeleton.flip_permutation()
        check_color(color)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The entries of a collated batch of this dataset (what a loss may read)."""
        return ("image", "target", "target_weight", "meta")

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of this epoch."""
        self.epoch = int(epoch)

    def adjust_box(self, record: PersonRecord, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The (center, scale) to crop before scale/rotation augmentation; COCO's half-body overrides it."""
        return record.center.astype(np.float64), record.scale.astype(np.float64)

    def extra_targets(self, record: PersonRecord, matrix: np.ndarray, flipped: bool) -> dict[str, Any]:
        """Additional per-sample targets (e.g. a person mask) warped with the sample's raw-image->crop matrix.

        ``matrix`` already holds the flip (HRNet's flip-then-crop composed into one map), so anything in the
        raw image frame warped with it lines up with the crop; ``flipped`` says whether left/right swapped.
        """
        return {}

    @abc.abstractmethod
    def evaluate(self, preds: np.ndarray, maxvals: np.ndarray, output_dir: Path | None = None) -> EvalResult:
        """Score predictions (N, J, 2) in image pixels, in record order, with the dataset's protocol."""

    def check_scoring(self) -> None:
        """Raise the DataError ``evaluate`` would raise for lack of its ground truth, before any training (a
        dataset that reads everything it scores with when it is built has nothing left to check)."""

    def draw_augmentation(self, index: int, epoch: int) -> Augmentation:
        """The crop of sample ``index`` in ``epoch``: drawn from ``(seed, epoch, index)`` when training, else the box."""
        record = self.records[index]
        if not self.train:
            return Augmentation(record.center.astype(np.float64), record.scale.astype(np.float64), 0.0, False)
        rng = np.random.default_rng([self.seed, epoch, index])
        center, scale = self.adjust_box(record, rng)
        scale_multiplier, rotation, flipped = sample_augmentation(
            rng,
            scale_factor=self.scale_factor,
            rotation_factor=self.rotation_factor,
            rotation_prob=self.rotation_prob,
            flip_prob=self.flip_prob,
        )
        if self.force_flip is not None:
            flipped = bool(self.force_flip)
        return Augmentation(np.asarray(center, np.float64), scale * scale_multiplier, rotation, flipped)

    def load_crop(self, record: PersonRecord, draw: Augmentation) -> tuple[np.ndarray, np.ndarray]:
        """The warped crop of one draw and its raw-image->crop matrix (flip included), for the joints."""
        if self.reduced_decode:
            image, factor, (width, _) = read_image_reduced(
                record.image, crop_downsampling(draw.scale, self.input_size)
            )
        else:
            image, factor = read_image(record.image), 1
            width = image.shape[1]
        matrix = crop_matrix(
            draw.center,
            draw.scale,
            draw.rotation,
            self.input_size,
            flip_image_width=width if draw.flipped else None,
        )
        pixel_matrix = matrix if factor == 1 else compose(matrix, reduced_to_raw_matrix(factor))
        return warp_image(image, pixel_matrix, self.input_size), matrix

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), self.epoch)
        record = self.records[index]
        draw = self.draw_augmentation(index, epoch)
        crop, matrix = self.load_crop(record, draw)
        joints = affine_points(record.joints, matrix)
        visibility = np.asarray(record.joints_vis, dtype=np.float32).copy()
        if draw.flipped:
            joints = joints[self._flip_permutation]
            visibility = visibility[self._flip_permutation]
        target, target_weight = self.codec.encode(joints, visibility)

        # The box centre stays the unflipped one (HRNet's training meta holds the mirrored one); validation
        # never flips, and decoding maps back through this centre and scale, kept in float64 so that a
        # prediction from the loader equals one made from the record itself (engine.inference.predictor).
        meta = {
            "index": index,
            "center": draw.center.astype(np.float64),
            "scale": draw.scale.astype(np.float64),
            "rotation": np.float32(draw.rotation),
            "flipped": draw.flipped,
            "joints": np.asarray(record.joints, dtype=np.float32),
            "joints_vis": np.asarray(record.joints_vis, dtype=np.float32),
            **record.extra,
        }
        sample = {
            "image": normalize_image(crop, self.color),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(target_weight),
            "meta": meta,
        }
        sample.update(self.extra_targets(record, matrix, draw.flipped))
        return sample
