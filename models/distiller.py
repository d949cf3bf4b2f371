"""A student and its frozen teachers: the home of every distillation method (FPD, ODKD).

The ``Distiller`` is what the engine trains when an experiment has a ``teachers:`` section. Its rules:

- teachers are frozen: eval mode always (they are not child modules, so ``model.train()`` never reaches
  them), ``requires_grad`` off, never in the optimizer, run under ``torch.no_grad()``;
- teachers are not part of the state_dict: a checkpoint holds the student, plus each teacher's checkpoint
  path and sha256 (``teacher_records``), and a resume refuses a teacher file whose hash changed;
- ``set_epoch`` selects the teachers the epoch uses (each teacher's ``[start, end)`` fraction of the epochs),
  and only those are run at all;
- the forward returns the student's ``PoseOutput`` with ``teachers`` filled by name.

Deployment, config sections and parts are the student's: distillation costs nothing at inference.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.output import PoseModel, PoseOutput
from utils.errors import CheckpointError


@dataclass
class FrozenTeacher:
    """One frozen teacher network, the epochs ``[start_epoch, end_epoch)`` it teaches, and its file."""

    network: nn.Module
    start_epoch: int
    end_epoch: int
    path: str = ""
    sha256: str = ""


class Distiller(PoseModel):
    """A student network trained with frozen teachers whose outputs it carries by name."""

    def __init__(self, student: PoseModel, teachers: Mapping[str, FrozenTeacher]) -> None:
        super().__init__()
        self.student = student
        # A plain dict, not a ModuleDict: teachers stay out of parameters(), state_dict() and train().
        self.__dict__["teachers"] = dict(teachers)
        for teacher in self.teachers.values():
            freeze(teacher.network)
        self.active: list[str] = list(self.teachers)

    def set_epoch(self, epoch: int) -> list[str]:
        """Select (and return) the teachers that run in ``epoch``."""
        self.active = [
            name
            for name, teacher in self.teachers.items()
            if teacher.start_epoch <= epoch < teacher.end_epoch
        ]
        return list(self.active)

    def forward(self, images: Tensor) -> PoseOutput:
        output = self.student(images)
        if self.training:
            with torch.no_grad():
                for name in self.active:
                    output.teachers[name] = self.teachers[name].network(images)
        return output

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Distiller:
        """``.to(device)``, ``.float()`` etc. move the teachers with the student."""
        super()._apply(fn, recurse)
        for teacher in self.teachers.values():
            teacher.network._apply(fn, recurse)
        return self

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.network.eval()
        return self

    # The student's interface: what is deployed, summarised and rebuilt.
    def config_section(self) -> dict[str, Any]:
        return self.student.config_section()

    def parts(self) -> dict[str, nn.Module]:
        return self.student.parts()

    def deployable_heads(self) -> list[str]:
        return self.student.deployable_heads()

    def deploy_section(self, head: str = "branch0") -> dict[str, Any]:
        return self.student.deploy_section(head)

    def deploy(self, head: str = "branch0") -> tuple[nn.Module, dict[str, Any]]:
        return self.student.deploy(head)

    def teacher_records(self) -> dict[str, dict[str, str]]:
        """What a checkpoint stores of each teacher: its file and that file's sha256 (never its weights)."""
        return {name: {"path": t.path, "sha256": t.sha256} for name, t in self.teachers.items()}


def freeze(network: nn.Module) -> nn.Module:
    """Eval mode and no gradients, for good."""
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def epoch_range(start: float, end: float, epochs: int) -> tuple[int, int]:
    """``[start, end)`` fractions of the run as epochs: the switch epoch is ``round(r * epochs)``."""
    return int(math.floor(start * epochs + 0.5)), int(math.floor(end * epochs + 0.5))


def load_teacher(
    name: str,
    checkpoint: str | Path,
    model_section: Mapping[str, Any] | None,
    build: Callable[[Mapping[str, Any]], nn.Module],
) -> tuple[nn.Module, str]:
    """Build a teacher and fill it from its file; returns (network, sha256 of the file).

    The file is a checkpoint of this project (the network is rebuilt from its ``model_config`` or saved
    config unless ``model_section`` is given) or a plain state_dict (``{'state_dict': ...}`` too), which needs
    ``model_section``: e.g. a published HRNet checkpoint.
    """
    from utils.checkpoint import check_finite_weights, load_model_weights

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"teachers.{name}.checkpoint: file not found: {path}. Train the teacher first (its run writes "
            "deploy.pth) or point the config at an existing checkpoint."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, foreign or empty files raise several types
        raise CheckpointError(
            f"teachers.{name}.checkpoint: cannot read {path}: {str(error).splitlines()[0] if str(error) else error!r}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"teachers.{name}.checkpoint: {path} does not hold a state_dict")
    if "model" in state and isinstance(state["model"], dict):
        weights = state["model"]
        section = model_section or state.get("model_config") or state.get("config", {}).get("model")
    else:
        weights = state.get("state_dict", state)
        section = model_section
    if section is None:
        raise CheckpointError(
            f"teachers.{name}: {path} is a plain state_dict with no model description; add "
            f"teachers.{name}.model (e.g. {{name: hrnet, width: 32}}) to the config"
        )
    network = build(section)
    check_finite_weights(weights, f"teachers.{name} ({path})")
    load_model_weights(network, weights, f"teachers.{name} ({path})")
    return freeze(network), file_sha256(path)
