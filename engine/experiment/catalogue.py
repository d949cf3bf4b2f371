"""The catalogue of experiments: finding a yaml by name, listing them, and what start.sh asks of one.

Nothing here imports torch, so ``start.sh`` can ask cheaply which trainer and which teachers an experiment
needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.experiment.config import apply_override, read_raw_config
from utils.errors import ConfigError, closest
from utils.paths import EXPERIMENTS_DIR

TRAIN_FAMILIES = {"mpii": ("mpii",), "coco": ("coco", "ochuman")}  # training script -> the datasets it trains


TABLES_FOLDER = "tables"  # experiments/tables/ holds the paper tables (engine/tables), not experiments


def experiment_paths() -> list[Path]:
    """Every experiment yaml (files starting with '_' are shared bases; experiments/tables/ holds tables), sorted."""
    return sorted(
        p
        for p in EXPERIMENTS_DIR.rglob("*.yaml")
        if not p.name.startswith("_") and p.relative_to(EXPERIMENTS_DIR).parts[0] != TABLES_FOLDER
    )


def experiment_name(path: Path) -> str:
    """'mpii/hg4_okdhp' for experiments/mpii/hg4_okdhp.yaml."""
    return str(path.resolve().relative_to(EXPERIMENTS_DIR).with_suffix(""))


def resolve_config_path(name: str) -> Path:
    """A yaml path, or an experiment name looked up under experiments/ (e.g. 'mpii/hg4_okdhp').

    A shared base under experiments/ (``_defaults.yaml``: a file other yamls start from) is not an experiment.
    """
    path = Path(name)
    known = [experiment_name(p) for p in experiment_paths()]
    for candidate in (path, EXPERIMENTS_DIR / name, EXPERIMENTS_DIR / f"{name}.yaml"):
        if not candidate.is_file():
            continue
        if candidate.name.startswith("_") and candidate.resolve().is_relative_to(EXPERIMENTS_DIR.resolve()):
            raise ConfigError(
                f"config '{name}' is a shared base that experiments start from (base: {candidate.name}), not an "
                f"experiment{closest(name, known)}; experiments: {', '.join(known)}"
            )
        return candidate
    raise ConfigError(f"config '{name}' not found{closest(name, known)}; experiments: {', '.join(known)}")


def trainer_for(config: str) -> str:
    """The training script of an experiment (``train_mpii.py`` / ``train_coco.py``), from its data section."""
    raw = read_raw_config(resolve_config_path(config))
    name = raw.get("data", {}).get("name") if isinstance(raw.get("data"), dict) else None
    for family, names in TRAIN_FAMILIES.items():
        if name in names:
            return f"train_{family}.py"
    raise ConfigError(f"{config}: data.name {name!r} has no training script (known: mpii, coco, ochuman)")


def missing_teachers(config: str, overrides: Iterable[str] = ()) -> list[str]:
    """The experiments that train the teachers of ``config`` whose checkpoint file does not exist yet, with the
    run's ``--set`` overrides applied (``--set teachers.teacher.checkpoint=PATH`` names an existing one)."""
    raw = read_raw_config(resolve_config_path(config))
    for item in overrides:
        apply_override(raw, item)
    teachers = raw.get("teachers") or {}
    missing = []
    for name, section in teachers.items():
        if not isinstance(section, dict) or Path(str(section.get("checkpoint", ""))).expanduser().is_file():
            continue
        if not section.get("experiment"):
            raise ConfigError(
                f"{config}: the checkpoint of teacher '{name}' ({section.get('checkpoint')}) does not exist and "
                f"teachers.{name}.experiment does not say which experiment trains it"
            )
        missing.append(str(section["experiment"]))
    return missing
