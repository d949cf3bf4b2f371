"""The frozen teachers of a distillation run, built from the config's ``teachers:`` section.

Each teacher file goes through the one checkpoint loader (``engine.inference.networks.load_network``): a
checkpoint of this project, or a plain state_dict (a published HRNet file) with ``teachers.<name>.model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.experiment.checks import check_input_size, model_section_for
from engine.experiment.config import ExperimentConfig
from engine.inference.networks import load_network
from engine.inference.pipeline import Pipeline
from losses.joints_mse import PoseLoss
from losses.registry import LOSSES
from models.distiller import FrozenTeacher, epoch_range, freeze
from models.output import PoseOutput
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
    config: ExperimentConfig, student: Pipeline
) -> tuple[dict[str, FrozenTeacher], dict[str, PoseOutput]]:
    """The frozen teachers of the ``teachers:`` section, with the epochs each one teaches, and the output of
    each one's network on the meta device (the heads it has, for the loss's ``check_outputs``).

    Each teacher must predict the student's joints (its skeleton), have been trained with the student's input
    pipeline (input size, heatmap size, sigma, colour normalisation: ``check_teacher_pipeline``) and give
    heatmaps of the student's size for the run's input (checked on the meta device before its weights are
    read, when the config gives its model section).
    """
    teachers, outputs = {}, {}
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
            model_section, outputs[name] = teacher_section(section.model, f"teachers.{name}.model", student)
        loaded = load_network(path, section=model_section, plain_ok=True, label=label)
        check_teacher_pipeline(loaded.pipeline, f"{label} ({path})", student)  # None: a plain state_dict
        if model_section is None:
            _, outputs[name] = teacher_section(loaded.section, f"{label} ({path})", student)
        start, end = epoch_range(section.start, section.end, config.train.epochs)
        teachers[name] = FrozenTeacher(freeze(loaded.model), start, end, str(path), file_sha256(path))
    return teachers, outputs


def check_teacher_outputs(
    loss: PoseLoss, student: PoseOutput, teachers: dict[str, PoseOutput], config: ExperimentConfig
) -> None:
    """The loss's ``check_outputs`` (e.g. ODKD's senior teacher needs a mask head), its error naming the
    teacher's file: found before the first step, not in the epoch that teacher starts teaching."""
    try:
        loss.check_outputs(student, teachers)
    except ConfigError as error:
        name = (error.key or "").removeprefix("teachers.")
        if name not in config.teachers:
            raise
        raise ConfigError(
            f"teachers.{name}.checkpoint ({config.teachers[name].checkpoint}): {error}", key=error.key
        ) from None


def teacher_section(
    section: Mapping[str, Any], where: str, student: Pipeline
) -> tuple[dict[str, Any], PoseOutput]:
    """A teacher's model section checked against the student's joints and input size (``where`` names it),
    and the network's output on the meta device."""
    joints = student.skeleton.num_joints
    given = section.get("num_joints")
    if given is not None and given != joints:
        raise ConfigError(
            f"{where}: the teacher predicts {given} joints, but the student's data has the {student.skeleton.name} "
            f"skeleton of {joints} joints; a teacher must predict the student's joints: use a teacher trained "
            f"on {student.skeleton.name} data"
        )
    try:
        checked = model_section_for(section, joints)
        output = check_input_size(checked, student.codec)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return checked, output


def check_teacher_pipeline(pipeline: Pipeline | None, where: str, student: Pipeline) -> None:
    """Refuse a teacher trained on another skeleton, or with another input pipeline than the student's data:
    input size, heatmap size, sigma (the codec) or colour normalisation. The teacher runs on the student's
    crops and its heatmaps are compared with the student's pixel by pixel, so each must be the same. None: a
    file that does not say (a plain state_dict)."""
    if pipeline is None:
        return
    theirs, ours = pipeline.skeleton, student.skeleton
    if theirs.name != ours.name or theirs.joint_names != ours.joint_names:
        raise ConfigError(
            f"{where}: the teacher was trained on the {theirs.name} skeleton ({theirs.num_joints} joints), but the "
            f"student's data has the {ours.name} skeleton ({ours.num_joints} joints); a teacher must predict the "
            f"student's joints: use a teacher trained on {ours.name} data"
        )
    teacher, student_values = pipeline.data_values(), student.data_values()
    differing = [key for key in teacher if teacher[key] != student_values[key]]
    if differing:
        named = "; ".join(
            f"data.{key}: the teacher's is {teacher[key]}, the student's is {student_values[key]}"
            for key in differing
        )
        raise ConfigError(
            f"{where}: the teacher was trained with another input pipeline than the student's ({named}). The "
            "teacher sees the student's crops and its heatmaps teach the student's pixel by pixel, so both must "
            f"be the same: set {', '.join(f'data.{key}: {teacher[key]}' for key in differing)} for the student, "
            "or use a teacher trained with the student's values"
        )
