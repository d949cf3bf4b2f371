"""The one prediction path: images -> heatmaps (flip test) -> keypoints in image pixels.

Validation, ``evaluate.py``, a demo on one image and the export checks all predict through ``Predictor``,
so the flip test and the decoding exist once. It needs no dataset: a model, the run's heatmap codec, the
skeleton's flip permutation and the colour mode; ``Predictor.from_checkpoint`` reads all of them from a
checkpoint of this project.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datasets.codec import HeatmapCodec
from datasets.keypoints import Skeleton
from datasets.transforms import get_affine_transform, normalize_image, warp_image
from utils.runtime import Runtime, make_runtime

HeadPredictions = dict[str, tuple[np.ndarray, np.ndarray]]  # head -> (keypoints (N, J, 2), maxvals (N, J, 1))


class Predictor:
    """Predict keypoints with a pose model: for batches of crops (validation) or person boxes in an image."""

    def __init__(
        self,
        model: nn.Module,
        codec: HeatmapCodec,
        skeleton: Skeleton,
        runtime: Runtime,
        *,
        flip: bool = True,
        shift_heatmap: bool = True,
        color: str = "bgr_imagenet",
    ) -> None:
        self.model = model
        self.codec = codec
        self.skeleton = skeleton
        self.runtime = runtime
        self.flip = flip
        self.shift_heatmap = shift_heatmap
        self.color = color
        self.flip_permutation = skeleton.flip_permutation()

    @torch.no_grad()
    def heatmaps(self, images: Tensor) -> dict[str, Tensor]:
        """Every evaluated head's heatmaps (fp32) for a batch of normalised crops, averaged with the flipped input."""
        self.model.eval()
        images = self.runtime.images(images)
        with self.runtime.autocast():
            heads = self.model(images).heads()
            flipped = self.model(images.flip(3)).heads() if self.flip else None
        heads = {name: h.float() for name, h in heads.items()}
        if flipped is not None:
            heads = {
                name: 0.5
                * (h + self.codec.flip_back(flipped[name].float(), self.flip_permutation, self.shift_heatmap))
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
        matrix = get_affine_transform(center, scale, 0.0, self.codec.input_size)
        return normalize_image(warp_image(image, matrix, self.codec.input_size), self.color)

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
        """A predictor for a checkpoint of this project (deploy.pth, best.pth, a converted file)."""
        from utils.checkpoint import load_checkpoint, load_model_weights

        state = load_checkpoint(path)
        model, pipeline = model_and_pipeline(state, str(path))
        runtime = runtime or make_runtime("auto")
        load_model_weights(model, state["model"], str(path))
        return cls(
            runtime.prepare(model),
            pipeline["codec"],
            pipeline["skeleton"],
            runtime,
            flip=pipeline["flip"] if flip is None else flip,
            shift_heatmap=pipeline["shift_heatmap"],
            color=pipeline["color"],
        )


def model_and_pipeline(state: dict[str, Any], source: str) -> tuple[nn.Module, dict[str, Any]]:
    """The (empty) network a checkpoint holds and the input pipeline it was trained with."""
    from datasets.registry import DATASETS, build_codec, skeleton_of
    from models.registry import build_model
    from utils.config import config_from_dict

    config = config_from_dict(state["config"], source=f"config saved in {source}", schedule=False)
    model = build_model(state.get("model_config") or config.model)
    codec = HeatmapCodec.from_dict(state["codec"]) if "codec" in state else build_codec(config.data)
    pipeline = {
        "codec": codec,
        "skeleton": skeleton_of(config.data),
        "color": DATASETS.resolved(config.data)["color"],
        "flip": config.test.flip,
        "shift_heatmap": config.test.shift_heatmap,
    }
    return model, pipeline
