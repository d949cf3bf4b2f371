"""Output paths, checked once before any work starts, so that a command never replaces what it should not.

Every command that writes (demo, export, evaluate, convert, inspection, training's run folder) names the
files it will write and the files it reads; ``prepare_outputs`` refuses, in one paragraph, an output whose
folder lies under a file or cannot be written (a read-only filesystem too), an output that is one of the
inputs (never replaced, not even with ``--overwrite``), two outputs with the same path, and an output that
exists already unless ``overwrite`` is asked. Then it creates the folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from utils.errors import UserError


class OutputPathError(UserError):
    """An output path cannot be written: under a file, read-only, one of the inputs, or an earlier result."""


def writable(folder: Path) -> bool:
    """Whether this process may create files in an existing folder (false on a read-only filesystem, even for root)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of ``path`` (itself or a parent) that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def check_folder(path: Path, option: str) -> None:
    """Refuse a folder that is a file, lies under a file, or would be created in (or is) a read-only place."""
    path = Path(path)
    found = _existing_ancestor(path)
    if not found.is_dir():
        where = "is a file" if found == path else f"lies under {found}, which is a file"
        raise OutputPathError(
            f"cannot create the output folder {path}: it {where}, not a folder; pass another {option}"
        )
    if not writable(found):
        what = (
            f"the output folder {path}" if found == path else f"{found}, where the output folder {path} goes,"
        )
        raise OutputPathError(
            f"{what} is not writable (a read-only place or filesystem); pass another {option}"
        )


def make_folder(path: Path, option: str) -> None:
    """Create an output folder; a path through a file or a read-only place is a one-paragraph error."""
    path = Path(path)
    check_folder(path, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputPathError(
            f"cannot create the output folder {path} ({error.strerror or error}); pass another {option}"
        ) from None
    if not writable(path):
        raise OutputPathError(f"the output folder {path} is not writable; pass another {option}")


def prepare_outputs(
    outputs: Iterable[Path | str],
    option: str,
    *,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
) -> None:
    """Check every output file before any work (see the module's rules), then create the folders they go in."""
    files = [Path(path) for path in outputs]
    read = {Path(path).resolve(): Path(path) for path in inputs}
    seen: dict[Path, Path] = {}
    existing = []
    for path in files:
        resolved = path.resolve()
        if resolved in read:
            raise OutputPathError(
                f"{option}: writing {path} would replace the input file {read[resolved]}; input files are never "
                f"replaced (not even with --overwrite): pass another {option}, e.g. an empty folder"
            )
        if resolved in seen:
            raise OutputPathError(
                f"{option}: two outputs would be written to the same file {path}; give each output its own name"
            )
        seen[resolved] = path
        if path.is_dir():
            raise OutputPathError(
                f"{option}: {path} is a folder, and a file of that name is to be written there; remove or rename "
                f"it, or pass another {option}"
            )
        if path.exists() or path.is_symlink():
            existing.append(path)
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise OutputPathError(
            f"{option}: {existing[0]}{more} already exist{'s' if not more else ''} (the result of an earlier "
            f"run?); pass --overwrite to replace {'it' if not more else 'them'}, or another {option}"
        )
    folders = list(dict.fromkeys(path.parent for path in files))
    for folder in folders:
        check_folder(folder, option)
    for folder in folders:
        make_folder(folder, option)
