"""Typed, validated experiment configs: one yaml per experiment, command-line overrides, nothing ignored.

A config has five sections. ``train`` and ``test`` are dataclasses below; ``model``, ``data`` and ``loss``
are ``{name: ..., key: value}`` mappings whose keys are checked against the registered builder's keyword
arguments (see ``utils/registry.py``). Every unknown or misspelt key is an error naming the closest valid key.
A yaml may start from another one with ``base: other.yaml`` (path relative to the yaml); its sections are
merged key by key, the child winning.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utils.errors import ConfigError, closest


@dataclass
class TrainConfig:
    """Optimisation and run settings (SPEC B's released recipe by default)."""

    epochs: int = 150
    batch_size: int = 16
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 2.5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    lr_steps: list[int] = field(default_factory=lambda: [90, 120])
    lr_factor: float = 0.1
    workers: int = 4
    val_every: int = 1  # validate every N epochs (and always after the last)
    iters_per_epoch: int | None = None  # cap on iterations per epoch, for quick runs
    deterministic: bool = False  # deterministic algorithms (bit-for-bit resume on CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass
class TestConfig:
    """Validation and evaluation settings."""

    flip: bool = True  # flip test: average with the flipped input's heatmaps
    shift_heatmap: bool = True  # shift flipped heatmaps right by one pixel (HRNet / released code)
    batch_size: int = 32
    select: str = "best_branch"  # model selection: best_branch (released) | ensemble | branch0


SELECT_MODES = ("best_branch", "ensemble", "branch0")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class ExperimentConfig:
    """A whole experiment: what to build, what to train on and how."""

    experiment: str
    model: dict[str, Any]
    data: dict[str, Any]
    loss: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    seed: int = 0
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as written to the run's ``config.yaml``."""
        return dataclasses.asdict(self)


TOP_LEVEL_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig)) + ("base",)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a yaml experiment, apply ``section.key=value`` overrides and validate everything."""
    raw = _read_with_base(Path(path), seen=())
    raw.setdefault("experiment", default_experiment_name(Path(path)))
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw, source=str(path))


def default_experiment_name(path: Path) -> str:
    """'mpii_hg4_okdhp' for experiments/mpii/hg4_okdhp.yaml; the file's stem elsewhere."""
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    try:
        relative = path.resolve().relative_to(experiments)
    except ValueError:
        return path.stem
    return "_".join(relative.with_suffix("").parts)


def config_from_dict(raw: Mapping[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Validate a plain mapping (e.g. a checkpoint's saved config) into an ExperimentConfig."""
    raw = copy.deepcopy(dict(raw))
    raw.pop("base", None)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{source}: unknown top-level key '{key}'{closest(key, TOP_LEVEL_KEYS)}; "
                f"valid keys: {', '.join(TOP_LEVEL_KEYS)}"
            )
    for section in ("model", "data", "loss"):
        if section not in raw:
            raise ConfigError(f"{source}: the '{section}' section is missing")
        if not isinstance(raw[section], Mapping):
            raise ConfigError(f"{source}: '{section}' must be a mapping with a 'name' key")
    config = ExperimentConfig(
        experiment=_typed(raw.get("experiment", "experiment"), str, "experiment", source),
        model=dict(raw["model"]),
        data=dict(raw["data"]),
        loss=dict(raw["loss"]),
        train=_dataclass_from(TrainConfig, raw.get("train", {}), "train", source),
        test=_dataclass_from(TestConfig, raw.get("test", {}), "test", source),
        seed=_typed(raw.get("seed", 0), int, "seed", source),
        description=_typed(raw.get("description", ""), str, "description", source),
    )
    validate_sections(config, source)
    return config


def validate_sections(config: ExperimentConfig, source: str) -> None:
    """Check the registry-backed sections and the enumerated values."""
    from datasets.registry import DATASETS, ENTRY_POINT_ARGS
    from losses.registry import LOSSES
    from models.registry import MODELS

    try:
        MODELS.check(config.model, "model")
        DATASETS.check(config.data, "data", reserved=ENTRY_POINT_ARGS)
        LOSSES.check(config.loss, "loss")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    if config.train.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"{source}: train.optimizer must be one of {OPTIMIZERS}, got '{config.train.optimizer}'"
        )
    if config.test.select not in SELECT_MODES:
        raise ConfigError(f"{source}: test.select must be one of {SELECT_MODES}, got '{config.test.select}'")
    if min(config.train.epochs, config.train.batch_size, config.train.val_every, config.test.batch_size) < 1:
        raise ConfigError(
            f"{source}: train.epochs, train.batch_size, train.val_every and test.batch_size must be >= 1"
        )
    if config.train.workers < 0:
        raise ConfigError(f"{source}: train.workers must be >= 0 (0 loads data in the main process)")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as yaml) to a raw config mapping, in place."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like section.key=value (e.g. train.lr=1e-4)")
    dotted, value_text = item.split("=", 1)
    keys = dotted.strip().split(".")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as error:
        raise ConfigError(f"override '{item}': cannot parse the value: {error}") from None
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{item}': '{'.'.join(keys[: depth + 1])}' is not a section")
        node = child
    node[keys[-1]] = value


def save_config(config: ExperimentConfig, path: Path) -> None:
    """Write the resolved config (after base merging and overrides) as yaml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: 'base' files include each other in a loop")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid yaml: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = raw.pop("base", None)
    if base is None:
        return raw
    parent = _read_with_base(path.parent / base, seen + (resolved,))
    parent.pop("experiment", None)
    parent.pop("description", None)
    return _merge(parent, raw)


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Merge child into parent section by section; a model/data/loss with another ``name`` replaces it."""
    merged = copy.deepcopy(parent)
    for key, value in child.items():
        old = merged.get(key)
        if (
            isinstance(value, dict)
            and isinstance(old, dict)
            and value.get("name", old.get("name")) == old.get("name")
        ):
            merged[key] = _merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _dataclass_from(cls: type, values: Any, section: str, source: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: '{section}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key '{section}.{key}'{closest(key, fields)}; "
                f"valid keys: {', '.join(fields)}"
            )
    return cls(**{k: _typed(v, hints[k], f"{section}.{k}", source) for k, v in values.items()})


def _typed(value: Any, hint: Any, where: str, source: str) -> Any:
    """Check (and gently coerce int -> float) a yaml value against a type hint."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(value, inner[0], where, source)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        (item_hint,) = typing.get_args(hint)
        return [_typed(v, item_hint, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # yaml reads 2.5e-4 (no dot) as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{source}: {where} must be {getattr(hint, '__name__', hint)}, got {value!r}")
