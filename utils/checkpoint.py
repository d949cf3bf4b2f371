"""Checkpoints: written atomically, read with ``weights_only=True``, checked against the model they fill.

A training checkpoint (``last.pth``, ``best.pth``) holds the model, optimizer, scheduler, epoch, best score and
RNG states, plus the resolved experiment config. A deploy checkpoint (``deploy.pth``) holds one extracted
network and the ``model`` config section that rebuilds it.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.disk import disk_full, is_disk_full
from utils.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves a half-written file.

    A disk that fills up meanwhile is a ``DiskFullError`` naming the folder and the space the file needs (the
    size of the file it replaces, else of its tensors); the previous file is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = path.stat().st_size if path.is_file() else tensor_bytes(state)
    try:
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        if is_disk_full(error, path.parent, needed):
            raise disk_full(path.parent, needed, path.name, _kept(path)) from None
        raise
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    full = False
    try:
        torch.save(state, tmp_name)
        os.replace(tmp_name, path)
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error, path.parent, needed):
            raise
        full = True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    if full:  # said here, once torch's writer (held by the traceback) has closed the file and freed its space
        raise disk_full(path.parent, needed, path.name, _kept(path))


def _kept(path: Path) -> str:
    return f"the previous {path.name} is intact" if path.is_file() else "nothing was written"


def tensor_bytes(value: Any) -> int:
    """The bytes of every tensor in a nested checkpoint (about the size ``torch.save`` writes)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(item) for item in value)
    return 0


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile


def read_torch_file(path: str | Path) -> Any:
    """Read a file written by ``torch.save`` safely (no arbitrary unpickling).

    A missing, empty, cut-off or foreign file is a CheckpointError that names it and says what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): the copy or download that made it did not finish, "
            "or the disk was full; copy it again, or use another checkpoint of the run (best.pth, last.pth)"
        )
    _check_complete(path, size)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        if isinstance(error, EOFError) or "unexpected EOF" in str(error):  # zip-less (legacy) format
            raise CheckpointError(
                f"checkpoint {path} is truncated ({size} bytes, it ends early): the copy or download that "
                "made it did not finish; copy it again, or use another checkpoint of the run"
            ) from None
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: {reason} "
            "(is it a file written by this project's train_mpii.py / train_coco.py?)"
        ) from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint of this project: ``read_torch_file``, then ``check_checkpoint``."""
    return check_checkpoint(read_torch_file(path), path)


def check_checkpoint(state: Any, path: str | Path) -> dict[str, Any]:
    """Refuse contents that are not a checkpoint of this project (a dict with a 'model' entry)."""
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    check_contents(state, path)
    return state


CHECKPOINT_KINDS = ("converted", "deploy", "train")  # what this project writes; older files have no 'kind'


def check_contents(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint of an unknown kind, with a null or malformed codec, or with non-finite weights."""
    if "kind" in state and state["kind"] not in CHECKPOINT_KINDS:
        raise CheckpointError(
            f"checkpoint {path} has kind {state['kind']!r}, which this project does not write (known: "
            f"{', '.join(CHECKPOINT_KINDS)}); use a file written by its training, or convert a foreign file "
            "with tools/convert_checkpoint.py"
        )
    if "codec" in state:
        _check_codec(state["codec"], path)
    if not isinstance(state["model"], dict):
        raise CheckpointError(
            f"checkpoint {path}: its 'model' entry holds a {type(state['model']).__name__}, not a state_dict "
            "(a mapping of names to tensors)"
        )
    check_finite_weights(state["model"], str(path))


def check_finite_weights(state_dict: dict[str, Any], source: str) -> None:
    """Refuse weights holding NaN or infinity (a diverged or damaged run), naming the first such tensor."""
    for name, tensor in state_dict.items():
        if (
            isinstance(tensor, torch.Tensor)
            and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())
        ):
            count = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"checkpoint {source}: weight '{name}' holds {count} non-finite value(s) (NaN or infinity) of "
                f"{tensor.numel()}: the run that wrote it diverged or the file is damaged; use another checkpoint "
                "of the run (an earlier best.pth or last.pth) or train again"
            )


def _check_codec(codec: Any, path: Path) -> None:
    """Refuse a 'codec' entry that is not {input_size: [w, h], heatmap_size: [w, h], sigma > 0}."""
    sizes_ok = isinstance(codec, dict) and all(
        isinstance(codec.get(key), list | tuple)
        and len(codec[key]) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in codec[key])
        for key in ("input_size", "heatmap_size")
    )
    sigma = codec.get("sigma") if isinstance(codec, dict) else None
    if not (
        sizes_ok
        and isinstance(sigma, int | float)
        and not isinstance(sigma, bool)
        and math.isfinite(sigma)
        and sigma > 0
    ):
        raise CheckpointError(
            f"checkpoint {path}: its 'codec' entry is {codec!r:.120}, not {{input_size: [w, h], heatmap_size: "
            "[w, h], sigma: a positive number} (the input pipeline the network was trained with); the file was "
            "not written by this project's training or was edited: use the run's own checkpoint"
        )


def _check_complete(path: Path, size: int) -> None:
    """Refuse a zip-format checkpoint whose end is cut off (torch's own message talks of a miniz error)."""
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} is truncated ({size} bytes, its zip archive has no end record): the copy "
            "or download that made it did not finish; copy it again, or use another checkpoint of the run"
        )


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Keys without the wrappers' prefixes, so a wrapped model's weights fit the plain model.

    Leading ``module.`` (DDP, DataParallel) and ``_orig_mod.`` (torch.compile) go in any order and number; an
    inner ``._orig_mod.`` (a compiled submodule) goes too, since torch.compile reserves that name.
    """
    stripped = {}
    for key, value in state_dict.items():
        name = key
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        stripped[name.replace("._orig_mod.", ".")] = value
    return stripped


def strip_prefixes(state_dict: Mapping[str, Any], source: str = "the file") -> dict[str, Any]:
    """``strip_wrapper_prefixes``, refusing a file in which two keys become one (the same weight twice)."""
    stripped = strip_wrapper_prefixes(state_dict)
    if len(stripped) < len(state_dict):
        raise CheckpointError(
            f"{source} holds the same weight twice, with and without a 'module.' or '_orig_mod.' prefix; "
            "save the state_dict of the unwrapped model"
        )
    return stripped


def is_state_dict(value: Any) -> bool:
    """A non-empty mapping of string keys to tensors."""
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_mismatch(
    own: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], *, ignore_missing: Sequence[str] = ()
) -> str:
    """How a file's tensors (``found``) differ from a model's state_dict (``own``), in the one wording every
    loader and converter uses; empty when every key and shape matches. ``ignore_missing``: keys allowed absent."""
    missing = [k for k in own if k not in found and k not in ignore_missing]
    unexpected = [k for k in found if k not in own]
    wrong = [k for k in own if k in found and tuple(found[k].shape) != tuple(own[k].shape)]
    details = []
    if missing:
        details.append(f"{len(missing)} model weights not in the file (e.g. {', '.join(missing[:3])})")
    if unexpected:
        details.append(
            f"{len(unexpected)} tensors the model does not have (e.g. {', '.join(unexpected[:3])})"
        )
    if wrong:
        key = wrong[0]
        details.append(
            f"{len(wrong)} of another shape (e.g. {key}: {tuple(found[key].shape)} in the file, "
            f"{tuple(own[key].shape)} in the model)"
        )
    return "; ".join(details)


DEFAULT_ADVICE = (
    "It was probably saved from another experiment: pass the config it was trained with, or a deploy.pth "
    "with --config of the matching single network."
)


def load_model_weights(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str, advice: str = DEFAULT_ADVICE
) -> None:
    """Load weights strictly; on a mismatch, say in one paragraph how the file and the model differ.

    Keys saved from a wrapped model (``module.`` of DDP/DataParallel, ``_orig_mod.`` of torch.compile) are
    matched to the plain model's keys. ``advice`` ends the message (what the user should do).
    """
    own = model.state_dict()
    if not any(key.startswith(WRAPPER_PREFIXES) or "._orig_mod." in key for key in own):
        state_dict = strip_prefixes(state_dict, f"checkpoint {source}")
    mismatch = describe_mismatch(own, state_dict)
    if mismatch:
        raise CheckpointError(
            f"checkpoint {source} does not fit the model built from the config: {mismatch}. {advice}"
        )
    model.load_state_dict(state_dict)
