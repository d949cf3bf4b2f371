"""Typed, validated experiment configs: one yaml per experiment, command-line overrides, nothing ignored.

A config has these sections. ``train``, ``test`` and ``runtime`` are dataclasses below; ``model``, ``data``
and ``loss`` are ``{name: ..., key: value}`` mappings whose keys are checked against the registered builder's
keyword arguments (see ``utils/registry.py``); ``teachers`` (optional) names the frozen teachers of a
distillation run (``TeacherConfig``). Every unknown or misspelt key is an error naming the closest valid key.
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
    val_every: int = 1  # validate every N epochs (and always after the last)
    iters_per_epoch: int | None = None  # cap on iterations per epoch, for quick runs
    drop_last: bool = False  # drop the last incomplete batch of an epoch (the released code trains on it)
    init_from: str | None = (
        None  # initial weights: a checkpoint of this project (e.g. tools/convert_checkpoint.py)
    )


@dataclass
class RuntimeConfig:
    """Where and how the computation runs; read only by utils/runtime.py (and the loaders' worker count)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = (
        "fp32"  # fp32 (the paper's) | bf16 | fp16 | auto (bf16 where the device runs it natively)
    )
    channels_last: bool = False  # NHWC memory format for convolutions
    compile: bool = False  # torch.compile the model (eager with a warning where no compiler works)
    deterministic: bool = False  # deterministic algorithms (bit-for-bit resume on CPU)
    workers: int = 4  # DataLoader worker processes (0: load in the main process)
    sync_batchnorm: bool = False  # SyncBatchNorm across processes (several GPUs)


@dataclass
class TeacherConfig:
    """A frozen teacher: its checkpoint, the model section if the file has none, the epochs it teaches."""

    checkpoint: str
    model: dict[str, Any] | None = None  # needed for a plain state_dict (e.g. a published HRNet file)
    start: float = 0.0  # first epoch it runs, as a fraction of train.epochs (ODKD's r for the senior teacher)
    end: float = 1.0  # it runs while epoch < end * train.epochs
    experiment: str | None = (
        None  # the experiment that trains it (start.sh runs it first if the file is missing)
    )


@dataclass
class TestConfig:
    """Validation and evaluation settings."""

    flip: bool = True  # flip test: average with the flipped input's heatmaps
    shift_heatmap: bool = True  # shift flipped heatmaps right by one pixel (HRNet / released code)
    batch_size: int = 32
    select: str = "best_branch"  # model selection: best_branch (released) | ensemble | branch0


SELECT_MODES = ("best_branch", "ensemble", "branch0")
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MOVED_KEYS = {"train.workers": "runtime.workers", "train.device": "runtime.device"}
MOVED_KEYS["train.deterministic"] = "runtime.deterministic"


@dataclass
class ExperimentConfig:
    """A whole experiment: what to build, what to train on and how."""

    experiment: str
    model: dict[str, Any]
    data: dict[str, Any]
    loss: dict[str, Any]
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    teachers: dict[str, TeacherConfig] = field(default_factory=dict)
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


def read_raw_config(path: str | Path) -> dict[str, Any]:
    """The yaml of an experiment with its ``base:`` files merged, unvalidated (no registry is imported)."""
    return _read_with_base(Path(path), seen=())


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
        runtime=_dataclass_from(RuntimeConfig, raw.get("runtime", {}), "runtime", source),
        teachers=_teachers_from(raw.get("teachers", {}), source),
        seed=_typed(raw.get("seed", 0), int, "seed", source),
        description=_typed(raw.get("description", ""), str, "description", source),
    )
    validate_sections(config, source)
    return config


def _teachers_from(values: Any, source: str) -> dict[str, TeacherConfig]:
    """The ``teachers:`` section: ``{name: {checkpoint, model?, start?, end?}}``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: 'teachers' must map teacher names to {{checkpoint: ...}} sections")
    teachers = {}
    for name, section in values.items():
        teacher = _dataclass_from(TeacherConfig, section, f"teachers.{name}", source)
        if not 0.0 <= teacher.start < teacher.end <= 1.0:
            raise ConfigError(
                f"{source}: teachers.{name}: need 0 <= start < end <= 1 (fractions of train.epochs), "
                f"got start={teacher.start}, end={teacher.end}"
            )
        if teacher.model is not None and not isinstance(teacher.model, Mapping):
            raise ConfigError(f"{source}: teachers.{name}.model must be a model section with a 'name'")
        teachers[str(name)] = teacher
    return teachers


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
    if config.runtime.workers < 0:
        raise ConfigError(f"{source}: runtime.workers must be >= 0 (0 loads data in the main process)")
    if config.runtime.precision not in PRECISIONS:
        raise ConfigError(
            f"{source}: runtime.precision must be one of {PRECISIONS}, got '{config.runtime.precision}'"
        )
    for name, teacher in config.teachers.items():
        if teacher.model is not None:
            try:
                MODELS.check(teacher.model, f"teachers.{name}.model")
            except ConfigError as error:
                raise ConfigError(f"{source}: {error}") from None


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
        moved = MOVED_KEYS.get(f"{section}.{key}")
        if moved is not None:
            raise ConfigError(f"{source}: '{section}.{key}' has moved to '{moved}' (the runtime: section)")
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
    if typing.get_origin(hint) is dict or hint is dict:
        if isinstance(value, Mapping):
            return dict(value)
    raise ConfigError(f"{source}: {where} must be {getattr(hint, '__name__', hint)}, got {value!r}")
