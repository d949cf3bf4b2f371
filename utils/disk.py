"""A full disk, said once: which folder, how much is free, how much a file needs.

A checkpoint written when the disk fills up fails inside torch's zip writer with a ``RuntimeError`` that only
speaks of positions in a stream (``unexpected pos 704 vs 598``); a small write (the run folder's lock, the
log) fails with ``OSError`` ENOSPC. Both mean the same to the user: free some space in that folder. Every
writer of a run turns them into a ``DiskFullError`` worded here.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from utils.errors import UserError

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left, disk quota exceeded


class DiskFullError(UserError):
    """The disk holding an output folder has no room for a file the command must write."""


def free_bytes(folder: Path) -> int:
    """Bytes available to this user on the file system of ``folder`` (its nearest existing ancestor)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def human(size: float) -> str:
    """'1.3 GB', '512 kB', '0 B' (powers of 1000, as ``df -H`` and file managers show them)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def is_disk_full(error: BaseException, folder: Path, needed: int) -> bool:
    """Whether a failed write means the disk is full: an ENOSPC / EDQUOT OSError, or (torch's zip writer says
    no more than 'file write failed' / 'unexpected pos') less free space in ``folder`` than ``needed``."""
    if isinstance(error, OSError) and error.errno in FULL_ERRNOS:
        return True
    return isinstance(error, RuntimeError) and free_bytes(folder) < needed


def disk_full(folder: Path, needed: int, what: str, kept: str = "") -> DiskFullError:
    """The one paragraph: the folder, its free space, what must be written there and the space it needs.

    ``kept`` says what was left intact (e.g. 'the previous last.pth is intact'). The message ends with "run
    the command again", which a caller may complete (a training run: "with --resume").
    """
    free = free_bytes(folder)
    kept = f"; {kept}" if kept else ""
    return DiskFullError(
        f"no room on the disk holding {folder} ({human(free)} free) for {what}, which needs about "
        f"{human(needed)}{kept}: make at least {human(needed)} free there (or use another folder) and run the "
        "command again"
    )
