"""The input pipeline a network was trained with, as one object: what a checkpoint, a predictor and an ONNX
sidecar must agree on.

Five facts turn an image into a network input and its heatmaps back into keypoints: the heatmap codec (input
size, heatmap size, sigma), the skeleton (joints and flip pairs), the colour normalisation, whether to run the
flip test, and whether to shift the flipped heatmaps. ``Pipeline`` holds them; training writes it into every
checkpoint, ``Predictor`` runs it, the ONNX export writes it into the sidecar and the ONNX predictor reads it
back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from datasets.codec import HeatmapCodec
from datasets.keypoints import SKELETONS, Skeleton
from datasets.registry import DATASETS, build_codec, skeleton_of
from datasets.transforms import COLOR_NORMALIZATION
from engine.experiment.config import ExperimentConfig
from utils.errors import CheckpointError, UserError


@dataclass(frozen=True)
class Pipeline:
    """Codec, skeleton, colour mode, flip test and heatmap shift of one trained network."""

    codec: HeatmapCodec
    skeleton: Skeleton
    color: str
    flip: bool = True
    shift_heatmap: bool = True

    def with_flip(self, flip: bool | None) -> Pipeline:
        """The same pipeline with the flip test switched as asked (None keeps it)."""
        return self if flip is None else dataclasses.replace(self, flip=bool(flip))

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint (the skeleton by name: its joints are the dataset's)."""
        return {
            "codec": self.codec.to_dict(),
            "skeleton": self.skeleton.name,
            "color": self.color,
            "flip": self.flip,
            "shift_heatmap": self.shift_heatmap,
        }

    @classmethod
    def from_config(cls, config: ExperimentConfig, codec: HeatmapCodec | None = None) -> Pipeline:
        """The pipeline an experiment config describes (``codec``: the run's, when already built)."""
        return cls(
            codec=codec or build_codec(config.data),
            skeleton=skeleton_of(config.data),
            color=DATASETS.resolved(config.data)["color"],
            flip=config.test.flip,
            shift_heatmap=config.test.shift_heatmap,
        )

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], config: ExperimentConfig, source: str) -> Pipeline:
        """The pipeline a checkpoint's network was trained with.

        Its ``pipeline`` entry (every checkpoint training writes), else (older files, converted files) its
        config's pipeline with its ``codec`` entry; the flip test and heatmap shift always follow ``config``
        (the checkpoint's own config with the user's overrides). A malformed entry is a CheckpointError.
        """
        saved = state.get("pipeline", state.get("codec"))
        try:
            if "pipeline" in state:
                codec = HeatmapCodec.from_dict(saved["codec"])
                skeleton, color = SKELETONS[saved["skeleton"]], str(saved["color"])
            else:
                codec = build_codec(config.data) if "codec" not in state else HeatmapCodec.from_dict(saved)
                skeleton, color = skeleton_of(config.data), DATASETS.resolved(config.data)["color"]
        except (TypeError, KeyError, ValueError):
            entry = "pipeline" if "pipeline" in state else "codec"
            raise CheckpointError(
                f"{source}: its '{entry}' entry ({saved!r:.80}) is not what this project writes (input_size, "
                "heatmap_size, sigma, skeleton, colour); the file was edited or damaged: use another checkpoint "
                "of the run, or convert the original weights again with tools/convert_checkpoint.py"
            ) from None
        return cls(codec, skeleton, color, config.test.flip, config.test.shift_heatmap)

    @classmethod
    def from_sidecar(cls, document: dict[str, Any], source: str) -> Pipeline:
        """The pipeline an ONNX sidecar JSON describes (``tools/export.py`` writes it)."""
        try:
            size, heatmap = document["input_size"], document["heatmap_size"]
            codec = HeatmapCodec(
                (size["width"], size["height"]), (heatmap["width"], heatmap["height"]), document["sigma"]
            )
            known = SKELETONS.get(document["skeleton"])
            skeleton = Skeleton(
                name=document["skeleton"],
                joint_names=tuple(document["joint_names"]),
                flip_pairs=tuple(tuple(pair) for pair in document["flip_pairs"]),
                limbs=tuple(tuple(limb) for limb in document.get("limbs", known.limbs if known else ())),
            )
            color = document["color"]["mode"]
            test = document["flip_test"]
            flip, shift = bool(test["enabled"]), bool(test["shift_heatmap"])
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(
                f"{source}: the sidecar JSON lacks or garbles {error} (export again with tools/export.py)"
            ) from None
        if color not in COLOR_NORMALIZATION:
            raise UserError(
                f"{source}: unknown colour mode {color!r} (known: {', '.join(COLOR_NORMALIZATION)})"
            )
        return cls(codec=codec, skeleton=skeleton, color=color, flip=flip, shift_heatmap=shift)

    def data_values(self) -> dict[str, Any]:
        """The pipeline's facts as the ``data:`` keys that set them (input and heatmap size, sigma, colour):
        what a teacher and its student must share, named as a user would change them."""
        return {
            "input_size": list(self.codec.input_size),
            "heatmap_size": list(self.codec.heatmap_size),
            "sigma": self.codec.sigma,
            "color": self.color,
        }
