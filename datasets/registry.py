"""The dataset registry: ``build_dataset(config.data, split, train)`` is how every entry point makes a dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets.base import TopDownDataset
from datasets.codec import HeatmapCodec
from datasets.keypoints import Skeleton
from utils.errors import ConfigError
from utils.registry import Registry

DATASETS = Registry("dataset", modules=("datasets.mpii", "datasets.coco"))
ENTRY_POINT_ARGS = (
    "split",
    "train",
    "seed",
    "codec",
)  # builder arguments build_dataset supplies: not data keys


def build_dataset(
    section: Mapping[str, Any], split: str, train: bool, seed: int = 0, codec: HeatmapCodec | None = None
) -> TopDownDataset:
    """Build the dataset of a config's ``data`` section for one split, with training augmentation or not.

    ``split``, ``train``, ``seed`` and the run's ``codec`` (``build_codec``) come from the entry point; they
    are not keys of the ``data`` section.
    """
    return DATASETS.build(section, where="data", split=split, train=train, seed=seed, codec=codec)


def scoring_section(section: Mapping[str, Any]) -> dict[str, Any]:
    """The data section of a split that is only predicted and scored: without the loss's extra targets.

    Validation and evaluation never compute a loss, so a person mask (``with_mask``, which the senior
    teacher's training reads) is not built there; detector boxes, which have no mask, can then score it.
    """
    if DATASETS.resolved(section).get("with_mask"):
        return {**section, "with_mask": False}
    return dict(section)


def build_codec(section: Mapping[str, Any]) -> HeatmapCodec:
    """The one heatmap codec of a run, from the data section's input_size, heatmap_size and sigma."""
    DATASETS.check(section, "data", reserved=ENTRY_POINT_ARGS)
    values = DATASETS.resolved(section)
    return HeatmapCodec(
        size_pair(values["input_size"], "input_size"),
        size_pair(values["heatmap_size"], "heatmap_size"),
        float(values["sigma"]),
    )


def skeleton_of(section: Mapping[str, Any]) -> Skeleton:
    """The skeleton (joints, flip pairs) of a data section's dataset: the one source of the joint count."""
    return DATASETS.meta(section["name"])["skeleton"]


def size_pair(value: Sequence[int] | int, key: str) -> tuple[int, int]:
    """A ``[width, height]`` config value (or one int for a square) as a tuple of two positive ints."""
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise ConfigError(f"data.{key}: expected [width, height], two positive integers; got {value!r}")
    return values[0], values[1]


def check_subset(subset: int | None, unit: str) -> None:
    """Raise ConfigError unless ``data.subset`` is None or a positive number (of persons, of images)."""
    if subset is not None and (not isinstance(subset, int) or isinstance(subset, bool) or subset <= 0):
        raise ConfigError(f"data.subset: expected a positive number of {unit}, got {subset!r}")


def check_flag(value: Any, key: str) -> bool:
    """A boolean config value (``data.<key>``); ConfigError for anything else (a string "false" is truthy)."""
    if not isinstance(value, bool):
        raise ConfigError(f"data.{key}: expected true or false, got {value!r}")
    return value


def resolve_path(root: Path, path: str | Path) -> Path:
    """A config path: absolute as given, relative to the dataset root otherwise."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path
