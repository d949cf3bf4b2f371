"""The one prediction path: images -> heatmaps (flip test) -> keypoints in image pixels.

Validation, ``evaluate.py``, a demo on one image and the export checks all predict through ``Predictor``,
so the flip test and the decoding exist once. It needs no dataset: a network, the ``Pipeline`` it was trained
with (codec, skeleton, colour, flip test, heatmap shift) and the runtime that runs it;
``Predictor.from_checkpoint`` reads the first two from a checkpoint of this project.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from datasets.coco import box_to_center_scale
from datasets.codec import HeatmapCodec
from datasets.keypoints import Skeleton
from datasets.transforms import get_affine_transform, normalize_image, warp_image
from engine.inference.networks import load_network
from engine.inference.pipeline import Pipeline
from engine.runtime.execution import Runtime, make_runtime

HeadPredictions = dict[str, tuple[np.ndarray, np.ndarray]]  # head -> (keypoints (N, J, 2), maxvals (N, J, 1))


def whole_image_box(image: np.ndarray) -> list[float]:
    """The person box [x, y, w, h] of a whole image (what the demo uses when no box is given)."""
    height, width = image.shape[:2]
    return [0.0, 0.0, float(width), float(height)]


def box_crop(box: Sequence[float], input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A box [x, y, w, h] -> (centre, scale) of its crop: the project's COCO rule (aspect ratio, box padding)."""
    return box_to_center_scale(box, input_size[0] / input_size[1])


def person_crop(
    image: np.ndarray, center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int], color: str
) -> Tensor:
    """The normalised network input (3, H, W) of one person box of a BGR image, without augmentation."""
    matrix = get_affine_transform(center, scale, 0.0, input_size)
    return normalize_image(warp_image(image, matrix, input_size), color)


class Predictor:
    """Predict keypoints with a pose model: for batches of crops (validation) or person boxes in an image."""

    def __init__(self, model: nn.Module, pipeline: Pipeline, runtime: Runtime) -> None:
        self.model = model
        self.pipeline = pipeline
        self.runtime = runtime
        self.flip_permutation = pipeline.skeleton.flip_permutation()

    @property
    def codec(self) -> HeatmapCodec:
        return self.pipeline.codec

    @property
    def skeleton(self) -> Skeleton:
        return self.pipeline.skeleton

    @torch.no_grad()
    def heatmaps(self, images: Tensor) -> dict[str, Tensor]:
        """Every evaluated head's heatmaps (fp32) for a batch of normalised crops, averaged with the flipped input."""
        self.model.eval()
        images = self.runtime.images(images)
        with self.runtime.autocast():
            heads = self.model(images).heads()
            flipped = self.model(images.flip(3)).heads() if self.pipeline.flip else None
        heads = {name: h.float() for name, h in heads.items()}
        if flipped is not None:
            heads = {
                name: 0.5
                * (
                    h
                    + self.codec.flip_back(
                        flipped[name].float(), self.flip_permutation, self.pipeline.shift_heatmap
                    )
                )
                for name, h in heads.items()
            }
        return heads

    def predict_crops(
        self, images: Tensor, centers: np.ndarray | Tensor, scales: np.ndarray | Tensor
    ) -> HeadPredictions:
        """Keypoints in image pixels of every head for crops made from (centre, scale) boxes."""
        return {
            name: self.codec.decode_to_image(heatmaps, centers, scales)
            for name, heatmaps in self.heatmaps(images).items()
        }

    def crop(self, image: np.ndarray, center: np.ndarray, scale: np.ndarray) -> Tensor:
        """The normalised network input for one person box of a BGR image (no augmentation)."""
        return person_crop(image, center, scale, self.codec.input_size, self.pipeline.color)

    def predict(
        self,
        image: np.ndarray,
        centers: Sequence[Sequence[float]] | np.ndarray,
        scales: Sequence[Sequence[float]] | np.ndarray,
        head: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (N, J, 2) in image pixels and scores (N, J) for N person boxes of one BGR image.

        ``head`` picks one head of a multi-branch model (default: the ensemble if there is one, else the
        first head).
        """
        centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
        if len(centers) == 0:
            joints = self.skeleton.num_joints
            return np.zeros((0, joints, 2)), np.zeros((0, joints))
        scales = np.asarray(scales, dtype=np.float64).reshape(len(centers), -1)
        crops = torch.stack([self.crop(image, c, s) for c, s in zip(centers, scales)])
        predictions = self.predict_crops(crops, centers, scales)
        if head is None:
            head = "ensemble" if "ensemble" in predictions else next(iter(predictions))
        if head not in predictions:
            raise ValueError(f"head '{head}' is not an output of this model; heads: {', '.join(predictions)}")
        keypoints, maxvals = predictions[head]
        return keypoints, maxvals[..., 0]

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, runtime: Runtime | None = None, *, flip: bool | None = None
    ) -> Predictor:
        """A predictor for a checkpoint of this project (deploy.pth, best.pth, a converted file): every head."""
        loaded = load_network(path)
        runtime = runtime or make_runtime("auto")
        return cls(runtime.prepare(loaded.model), loaded.require_pipeline().with_flip(flip), runtime)
