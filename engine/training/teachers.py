"""The frozen teachers of a distillation run, built from the config's ``teachers:`` section.

Each teacher file goes through the one checkpoint loader (``engine.inference.networks.load_network``): a
checkpoint of this project, or a plain state_dict (a published HRNet file) with ``teachers.<name>.model``.
"""

from __future__ import annotations

from pathlib import Path

from datasets.codec import HeatmapCodec
from engine.experiment.checks import check_input_size, model_section_for
from engine.experiment.config import ExperimentConfig
from engine.inference.networks import load_network
from losses.registry import LOSSES
from models.distiller import FrozenTeacher, epoch_range, freeze
from utils.checkpoint import file_sha256
from utils.errors import CheckpointError, ConfigError


def check_loss_teachers(config: ExperimentConfig) -> None:
    """Refuse a distillation loss whose teachers the config does not define (before any file is read)."""
    keys = getattr(LOSSES.get(config.loss["name"]), "teacher_keys", ())
    values = LOSSES.resolved(config.loss)
    names = [values[key] for key in keys if values[key]]
    missing = [name for name in names if name not in config.teachers]
    if missing:
        raise ConfigError(
            f"loss '{config.loss['name']}' learns from the teacher(s) {', '.join(missing)}, which the config's "
            f"teachers: section does not define (it has: {', '.join(config.teachers) or 'none'}); add e.g. "
            f"teachers: {{{missing[0]}: {{checkpoint: path/to/teacher/deploy.pth}}}}"
        )


def build_teachers(
    config: ExperimentConfig, num_joints: int, codec: HeatmapCodec
) -> dict[str, FrozenTeacher]:
    """The frozen teachers of the ``teachers:`` section, with the epochs each one teaches.

    Each teacher must give heatmaps of the student's joints and size for the run's input (checked on the
    meta device before its weights are read).
    """
    teachers = {}
    for name, section in config.teachers.items():
        path = Path(section.checkpoint).expanduser()
        label = f"teachers.{name}.checkpoint"
        if not path.is_file():
            raise CheckpointError(
                f"{label}: file not found: {path}. Train the teacher first (its run writes deploy.pth) or point "
                "the config at an existing checkpoint."
            )
        model_section = None
        if section.model is not None:
            try:
                model_section = model_section_for(section.model, num_joints)
                check_input_size(model_section, codec)
            except ConfigError as error:
                raise ConfigError(f"teachers.{name}.model: {error}") from None
        loaded = load_network(path, section=model_section, plain_ok=True, label=label)
        if model_section is None:
            try:
                check_input_size(model_section_for(loaded.section, num_joints), codec)
            except ConfigError as error:
                raise ConfigError(f"{label} ({path}): {error}") from None
        start, end = epoch_range(section.start, section.end, config.train.epochs)
        teachers[name] = FrozenTeacher(freeze(loaded.model), start, end, str(path), file_sha256(path))
    return teachers
