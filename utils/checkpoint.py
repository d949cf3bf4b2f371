"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the model they fill.

A training checkpoint (``last.pth``, ``best.pth``) holds the model, optimizer, scheduler, epoch, best score and
RNG states, plus the resolved experiment config. A deploy checkpoint (``deploy.pth``) holds one extracted
network and the ``model`` config section that rebuilds it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        torch.save(state, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (no arbitrary unpickling); a missing or unreadable file is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path}: {str(error).splitlines()[0]} "
            "(is it a file written by this project's train_mpii.py / train_coco.py?)"
        ) from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    return state


def load_model_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly; on a mismatch, say in one paragraph which model the checkpoint belongs to."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            key = wrong_shape[0]
            details.append(
                f"{len(wrong_shape)} of another shape (e.g. {key}: {tuple(state_dict[key].shape)} in the "
                f"checkpoint, {tuple(own[key].shape)} in the model)"
            )
        raise CheckpointError(
            f"checkpoint {source} does not fit the model built from the config: {'; '.join(details)}. "
            "It was probably saved from another experiment: pass the config it was trained with, or a "
            "deploy.pth with --config of the matching single network."
        )
    model.load_state_dict(state_dict)
