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
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utils.errors import ConfigError, closest
from utils.paths import EXPERIMENTS_DIR


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
    """Where and how the computation runs; read only by engine/runtime/execution.py (and the loaders' worker count)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # fp32 (the paper's) | bf16 | fp16 | auto (bf16 where the device runs it natively) | fp64 (a verification mode)
    precision: str = "fp32"
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
    # The epochs it teaches, as fractions of train.epochs: it runs while start * E <= epoch < end * E. With both
    # left out the loss chooses (ODKD: its orderly schedule; others: the whole run); one left out is 0 or 1.
    start: float | None = None
    end: float | None = None
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
PRECISIONS = ("fp32", "bf16", "fp16", "auto", "fp64")
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
    # Not a config key: where the values came from, so that a later error (e.g. a model builder's) can name
    # the --set override or the file that set the key: ``raise config.origin.blame(error)``.
    origin: ConfigOrigin | None = field(default=None, init=False, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, as written to the run's ``config.yaml``."""
        values = dataclasses.asdict(self)
        values.pop("origin")
        return values


TOP_LEVEL_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.init) + ("base",)
ERROR_KEY = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\[\d+\])*:")


@dataclass(frozen=True)
class ConfigOrigin:
    """Where the values of a config came from: a file (or other source), except the keys set by ``--set``."""

    source: str
    overrides: Mapping[str, str] = field(default_factory=dict)  # dotted key -> the override as typed

    def of(self, key: str) -> str:
        """'--set train.lr=abc' when an override set the key (or a section above it), else the source."""
        parts = re.sub(r"\[\d+\]", "", key).split(".")
        for depth in range(len(parts), 0, -1):
            item = self.overrides.get(".".join(parts[:depth]))
            if item is not None:
                return f"--set {item}"
        return self.source

    def blame(self, error: ConfigError, key: str | None = None) -> ConfigError:
        """The error, prefixed by the origin of the key it is about (``key``, ``error.key``, or its message's)."""
        key = key or error.key or config_key_of(error)
        return ConfigError(f"{self.of(key) if key else self.source}: {error}", key=key)


def config_key_of(error: ConfigError) -> str | None:
    """The dotted config key an error is about: its ``key``, or the 'model.num_stacks:' its message starts with."""
    if error.key:
        return error.key
    match = ERROR_KEY.match(str(error))
    return match.group(1) if match else None


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a yaml experiment, apply ``section.key=value`` overrides and validate everything.

    An error about a value names its origin: the ``--set`` override that set it, else the yaml file.
    """
    raw = _read_with_base(Path(path), seen=())
    raw.setdefault("experiment", default_experiment_name(Path(path)))
    return config_with_overrides(raw, overrides, source=str(path))


def config_with_overrides(
    raw: Mapping[str, Any], overrides: Iterable[str], source: str = "<dict>", *, schedule: bool = True
) -> ExperimentConfig:
    """Apply ``--set`` overrides to a raw config mapping and validate it; errors name the override or the source.

    ``schedule=False`` skips ``check_schedule``: for a checkpoint's saved config, read for its pipeline only.
    """
    raw = copy.deepcopy(dict(raw))
    origins: dict[str, str] = {}
    for item in overrides:
        created = _missing_keys(raw, item.split("=", 1)[0].strip().split("."))
        dotted = apply_override(raw, item)
        for key in [k for k in origins if k.startswith(f"{dotted}.")]:
            del origins[key]  # a later override of a whole section replaces the earlier ones inside it
        for key in created:  # sections the override created (e.g. 'tset' of tset.flip) are its doing too
            origins[key] = item.strip()
        origins[dotted] = item.strip()
    return config_from_dict(raw, source=ConfigOrigin(source, origins), schedule=schedule)


def _missing_keys(raw: Mapping[str, Any], keys: list[str]) -> list[str]:
    """The dotted prefixes of ``keys`` that are not in ``raw`` yet (the sections an override would create)."""
    node: Any = raw
    for depth, key in enumerate(keys):
        if not isinstance(node, Mapping) or key not in node:
            return [".".join(keys[:end]) for end in range(depth + 1, len(keys) + 1)]
        node = node[key]
    return []


def read_raw_config(path: str | Path) -> dict[str, Any]:
    """The yaml of an experiment with its ``base:`` files merged, unvalidated (no registry is imported)."""
    return _read_with_base(Path(path), seen=())


def default_experiment_name(path: Path) -> str:
    """'mpii_hg4_okdhp' for experiments/mpii/hg4_okdhp.yaml; the file's stem elsewhere."""
    try:
        relative = path.resolve().relative_to(EXPERIMENTS_DIR)
    except ValueError:
        return path.stem
    return "_".join(relative.with_suffix("").parts)


def config_from_dict(
    raw: Mapping[str, Any], source: str | ConfigOrigin = "<dict>", *, schedule: bool = True
) -> ExperimentConfig:
    """Validate a plain mapping (e.g. a checkpoint's saved config) into an ExperimentConfig."""
    origin = source if isinstance(source, ConfigOrigin) else ConfigOrigin(source)
    raw = copy.deepcopy(dict(raw))
    raw.pop("base", None)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"{origin.of(key)}: unknown top-level key '{key}'{closest(key, TOP_LEVEL_KEYS)}; "
                f"valid keys: {', '.join(TOP_LEVEL_KEYS)}",
                key=key,
            )
    for section in ("model", "data", "loss"):
        if section not in raw:
            raise ConfigError(f"{origin.source}: the '{section}' section is missing", key=section)
        if not isinstance(raw[section], Mapping):
            raise ConfigError(
                f"{origin.of(section)}: '{section}' must be a mapping with a 'name' key", key=section
            )
    config = ExperimentConfig(
        experiment=_typed(raw.get("experiment", "experiment"), str, "experiment", origin),
        model=dict(raw["model"]),
        data=dict(raw["data"]),
        loss=dict(raw["loss"]),
        train=_dataclass_from(TrainConfig, raw.get("train", {}), "train", origin),
        test=_dataclass_from(TestConfig, raw.get("test", {}), "test", origin),
        runtime=_dataclass_from(RuntimeConfig, raw.get("runtime", {}), "runtime", origin),
        teachers=_teachers_from(raw.get("teachers", {}), origin),
        seed=_typed(raw.get("seed", 0), int, "seed", origin),
        description=_typed(raw.get("description", ""), str, "description", origin),
    )
    validate_sections(config, origin, schedule=schedule)
    _teacher_windows(config, origin)
    config.origin = origin
    return config


def _teachers_from(values: Any, origin: ConfigOrigin) -> dict[str, TeacherConfig]:
    """The ``teachers:`` section: ``{name: {checkpoint, model?, start?, end?, experiment?}}``."""
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"{origin.of('teachers')}: 'teachers' must map teacher names to {{checkpoint: ...}} sections",
            key="teachers",
        )
    return {
        str(name): _dataclass_from(TeacherConfig, section, f"teachers.{name}", origin)
        for name, section in values.items()
    }


def _teacher_windows(config: ExperimentConfig, origin: ConfigOrigin) -> None:
    """Fill each teacher's ``start`` / ``end``: a teacher that gives neither gets the loss's default window
    (``PoseLoss.teacher_windows``: ODKD's orderly schedule), one that gives one of them 0 or 1 for the other;
    then check ``0 <= start < end <= 1``."""
    from losses.registry import LOSSES

    loss = LOSSES.get(config.loss["name"])
    windows = loss.teacher_windows(LOSSES.resolved(config.loss), config.teachers) if config.teachers else {}
    for name, teacher in config.teachers.items():
        if teacher.start is None and teacher.end is None:
            teacher.start, teacher.end = windows.get(name, (0.0, 1.0))
        teacher.start = 0.0 if teacher.start is None else teacher.start
        teacher.end = 1.0 if teacher.end is None else teacher.end
        if not 0.0 <= teacher.start < teacher.end <= 1.0:
            raise ConfigError(
                f"{origin.of(f'teachers.{name}')}: teachers.{name}: need 0 <= start < end <= 1 (fractions of "
                f"train.epochs), got start={teacher.start}, end={teacher.end}",
                key=f"teachers.{name}",
            )


def validate_sections(config: ExperimentConfig, source: str | ConfigOrigin, schedule: bool = True) -> None:
    """Check the registry-backed sections, the enumerated values and the ranges of the numbers.

    ``schedule`` adds ``check_schedule`` (the learning-rate steps against the epochs): what only training needs.
    """
    from datasets.registry import DATASETS, ENTRY_POINT_ARGS
    from losses.registry import LOSSES
    from models.registry import MODELS

    origin = source if isinstance(source, ConfigOrigin) else ConfigOrigin(source)
    for section, registry, reserved in (
        ("model", MODELS, ()),
        ("data", DATASETS, ENTRY_POINT_ARGS),
        ("loss", LOSSES, ()),
    ):
        try:
            registry.check(getattr(config, section), section, reserved=reserved)
        except ConfigError as error:
            raise origin.blame(error) from None

    def bad(key: str, value: Any, rule: str) -> ConfigError:
        return ConfigError(f"{origin.of(key)}: {key} must be {rule}, got {value!r}", key=key)

    train, test = config.train, config.test
    if train.optimizer not in OPTIMIZERS:
        raise bad("train.optimizer", train.optimizer, f"one of {', '.join(OPTIMIZERS)}")
    if test.select not in SELECT_MODES:
        raise bad("test.select", test.select, f"one of {', '.join(SELECT_MODES)}")
    counts = {
        "train.epochs": train.epochs,
        "train.batch_size": train.batch_size,
        "train.val_every": train.val_every,
        "test.batch_size": test.batch_size,
    }
    if train.iters_per_epoch is not None:
        counts["train.iters_per_epoch"] = train.iters_per_epoch
    for key, value in counts.items():
        if value < 1:
            raise bad(key, value, "a positive integer (>= 1)")
    if config.runtime.workers < 0:
        raise bad("runtime.workers", config.runtime.workers, ">= 0 (0 loads data in the main process)")
    if config.runtime.precision not in PRECISIONS:
        raise bad("runtime.precision", config.runtime.precision, f"one of {', '.join(PRECISIONS)}")
    for name, teacher in config.teachers.items():
        if teacher.model is not None:
            try:
                MODELS.check(teacher.model, f"teachers.{name}.model")
            except ConfigError as error:
                raise origin.blame(error) from None
    if config.seed < 0:
        raise bad("seed", config.seed, ">= 0 (numpy seeds are non-negative)")
    if not (math.isfinite(train.lr) and train.lr > 0):
        raise bad("train.lr", train.lr, "a positive finite number (e.g. 2.5e-4)")
    if not (math.isfinite(train.weight_decay) and train.weight_decay >= 0):
        raise bad("train.weight_decay", train.weight_decay, "a finite number >= 0 (0 for no weight decay)")
    if not (math.isfinite(train.momentum) and 0 <= train.momentum < 1):
        raise bad("train.momentum", train.momentum, "in [0, 1) (e.g. 0.9)")
    if not (math.isfinite(train.lr_factor) and train.lr_factor > 0):
        raise bad("train.lr_factor", train.lr_factor, "a positive finite number (e.g. 0.1)")
    if len(train.betas) != 2:
        raise bad("train.betas", train.betas, "two numbers [beta1, beta2] (e.g. [0.9, 0.999])")
    for index, beta in enumerate(train.betas):
        if not (math.isfinite(beta) and 0 <= beta < 1):
            raise bad(f"train.betas[{index}]", beta, "in [0, 1) (e.g. [0.9, 0.999])")
    for index, step in enumerate(train.lr_steps):
        if step < 0:
            raise bad(f"train.lr_steps[{index}]", step, "an epoch number >= 0")
    if schedule:
        check_schedule(train, origin)
    check_data_ranges(config.data, origin)


def check_schedule(train: TrainConfig, origin: ConfigOrigin) -> None:
    """Refuse an lr_factor above 1 and lr_steps that are not strictly increasing epochs within the run.

    A step at or after the last epoch never fires; a checkpoint's saved config skips this (older runs).
    """
    if train.lr_factor > 1:
        raise ConfigError(
            f"{origin.of('train.lr_factor')}: train.lr_factor must be in (0, 1]: the factor each step "
            f"multiplies the rate by (e.g. 0.1), got {train.lr_factor!r}",
            key="train.lr_factor",
        )
    steps = train.lr_steps
    for index, step in enumerate(steps):
        key = f"train.lr_steps[{index}]"
        if not 1 <= step < train.epochs:
            epochs = f"train.epochs = {train.epochs}, from {origin.of('train.epochs')}"
            raise ConfigError(
                f"{origin.of(key)}: {key} must be an epoch from 1 to train.epochs - 1 ({epochs}), got {step}: a "
                "step at or after the last epoch never lowers the rate; drop it (train.lr_steps=[] keeps the rate "
                "constant) or give steps within the run",
                key=key,
            )
        if index and step <= steps[index - 1]:
            raise ConfigError(
                f"{origin.of(key)}: train.lr_steps must be strictly increasing epochs (e.g. [90, 120]), got {steps}",
                key=key,
            )


PROBABILITY = ("a probability in [0, 1]", lambda v: 0 <= v <= 1)
DATA_NUMBERS: dict[str, tuple[str, typing.Callable[[float], bool]]] = {
    "sigma": ("a positive finite number (the Gaussian's width in heatmap pixels, e.g. 2)", lambda v: v > 0),
    "scale_factor": (
        "in [0, 1): the scale augmentation's spread (e.g. 0.25; 0 for none)",
        lambda v: 0 <= v < 1,
    ),
    "rotation_factor": ("a finite number of degrees >= 0 (e.g. 30; 0 for no rotation)", lambda v: v >= 0),
    "rotation_prob": PROBABILITY,
    "half_body_prob": PROBABILITY,
    "det_score_threshold": PROBABILITY,
    "oks_threshold": PROBABILITY,
    "keypoint_score_threshold": PROBABILITY,
}
DATA_FLAGS = ("flip", "with_mask", "use_gt_boxes", "reduced_decode")


def check_data_ranges(data: Mapping[str, Any], origin: ConfigOrigin) -> None:
    """Range-check the data section's numbers, flags, sizes and colour at load time (its builder's keys only)."""
    from datasets.registry import DATASETS, check_flag, check_subset, size_pair
    from datasets.transforms import check_color

    values = DATASETS.resolved(data)
    for key, value in values.items():
        dotted = f"data.{key}"
        try:
            if key in DATA_NUMBERS:
                rule, ok = DATA_NUMBERS[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{dotted} must be a number, {rule}; got {value!r}", key=dotted)
                if not (math.isfinite(value) and ok(value)):
                    raise ConfigError(f"{dotted} must be {rule}; got {value!r}", key=dotted)
            elif key in DATA_FLAGS:
                check_flag(value, key)
            elif key in ("input_size", "heatmap_size"):
                size_pair(value, key)
            elif key == "subset":
                check_subset(value, "persons or images")
            elif key == "color":
                check_color(value)
        except ConfigError as error:
            raise origin.blame(error, dotted) from None


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Apply one ``a.b.c=value`` override (value parsed as yaml) to a raw config mapping, in place.

    Returns the dotted key it set, so that later errors about that key can name the override.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item}: an override must look like section.key=value (e.g. train.lr=1e-4)")
    dotted, value_text = item.split("=", 1)
    dotted = dotted.strip()
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {item}: '{dotted}' is not a dotted key such as train.lr")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise ConfigError(f"--set {item}: cannot parse the value as yaml: {problem}") from None
    node = raw
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"--set {item}: '{'.'.join(keys[: depth + 1])}' is a value ({child!r}), not a section"
            )
        node = child
    node[keys[-1]] = value
    return dotted


def save_config(config: ExperimentConfig, path: Path) -> None:
    """Write the resolved config (after base merging and overrides) as yaml."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


class DuplicateKeyError(yaml.YAMLError):
    """A yaml mapping names the same key twice (PyYAML would silently keep the last value)."""

    def __init__(self, path: tuple[str, ...], marks: list[yaml.Mark]) -> None:
        self.key = ".".join(path)
        self.lines = [mark.line + 1 for mark in marks]
        if len(set(self.lines)) == len(self.lines):
            unit, places = "lines", [str(line) for line in self.lines]
        else:  # e.g. {q: 1, q: 2} on one line
            unit, places = "line:column", [f"{mark.line + 1}:{mark.column + 1}" for mark in marks]
        where = ", ".join(places[:-1]) + f" and {places[-1]}"
        times = "twice" if len(marks) == 2 else f"{len(marks)} times"
        super().__init__(f"'{self.key}' is given {times}, on {unit} {where}")


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with a repeated key at any level, e.g. two ``train:`` sections."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique_keys(node, (), set())
        return super().construct_document(node)

    def _check_unique_keys(self, node: yaml.Node, path: tuple[str, ...], seen: set[int]) -> None:
        """Walk the composed node tree (before construction, where line numbers are still known)."""
        if id(node) in seen:  # an alias of a node already checked
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            marks: dict[Any, list[yaml.Mark]] = {}
            children = []
            for key_node, value_node in node.value:
                key = None
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    key = self.construct_object(key_node)
                    if isinstance(key, typing.Hashable):
                        marks.setdefault(key, []).append(key_node.start_mark)
                children.append((value_node, path if key is None else (*path, str(key))))
            for key, where in marks.items():
                if len(where) > 1:
                    raise DuplicateKeyError((*path, str(key)), where)
            for value_node, child_path in children:
                self._check_unique_keys(value_node, child_path, seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique_keys(item, (*path[:-1], f"{path[-1]}[{index}]") if path else path, seen)


def read_yaml(path: Path) -> Any:
    """Parse a yaml file; invalid yaml or a key given twice in one mapping is a ConfigError naming the file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as error:
        raise ConfigError(
            f"{path}: {error}; keep one of them (yaml would silently use the last)", key=error.key
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid yaml: {' '.join(str(error).split())}") from None


def _read_with_base(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: 'base' files include each other in a loop")
    raw = read_yaml(path) or {}
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


def _dataclass_from(cls: type, values: Any, section: str, origin: ConfigOrigin) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{origin.of(section)}: '{section}' must be a mapping, got {values!r}", key=section)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in values:
        moved = MOVED_KEYS.get(f"{section}.{key}")
        if moved is not None:
            raise ConfigError(
                f"{origin.of(f'{section}.{key}')}: '{section}.{key}' has moved to '{moved}' (the runtime: section)",
                key=f"{section}.{key}",
            )
        if key not in fields:
            raise ConfigError(
                f"{origin.of(f'{section}.{key}')}: unknown key '{section}.{key}'{closest(key, fields)}; "
                f"valid keys: {', '.join(fields)}",
                key=f"{section}.{key}",
            )
    return cls(**{k: _typed(v, hints[k], f"{section}.{k}", origin) for k, v in values.items()})


def _typed(value: Any, hint: Any, where: str, origin: ConfigOrigin) -> Any:
    """Check (and gently coerce int -> float) a yaml value against a type hint."""
    origin_type = typing.get_origin(hint)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _typed(value, inner[0], where, origin)
    if origin_type is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{origin.of(where)}: {where} must be a list, got {value!r}", key=where)
        (item_hint,) = typing.get_args(hint)
        return [_typed(v, item_hint, f"{where}[{i}]", origin) for i, v in enumerate(value)]
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
    raise ConfigError(
        f"{origin.of(where)}: {where} must be {getattr(hint, '__name__', hint)}, got {value!r}", key=where
    )
