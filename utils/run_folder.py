"""One run per folder: refuse to mix two runs, lock against a second process, say what can be resumed.

``RunFolder.claim`` runs every check before anything of the run is written: the folder is a writable
directory; no other process is training into it (an exclusive POSIX record lock on ``.lock``, released
when the process ends, even by SIGKILL; unlike ``flock`` it is not inherited by forked DataLoader workers,
which could otherwise hold it after their parent was killed); a fresh run does not land on an existing one unless ``overwrite`` is asked
(which removes the run's own files and what commands run on them wrote into the folder, ``note_follow_up``,
and nothing else); a resume has a checkpoint to resume. Stale temporary files of a save interrupted by a
kill are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from utils.disk import DiskFullError, disk_full, free_bytes, is_disk_full
from utils.errors import UserError
from utils.output_paths import OutputPathError, make_folder

LOCK = ".lock"
FOLLOW_UPS = ".follow_ups"  # one name a line: what evaluations, exports, demos wrote into the run folder


class RunFolderError(UserError):
    """The output folder cannot take this run (it holds another, is locked, is not writable)."""


class RunFolder:
    """The output folder of one training run and the names of the files a run writes there."""

    def __init__(self, path: Path, run_files: Sequence[str], last: str = "last.pth") -> None:
        self.path = Path(path)
        self.run_files = tuple(run_files)
        self.last = last

    def existing_run_files(self) -> list[str]:
        return [name for name in self.run_files if (self.path / name).exists()]

    @contextlib.contextmanager
    def claim(
        self,
        *,
        resume: bool,
        overwrite: bool,
        main: bool = True,
        agree: Callable[[bool], bool] = bool,
        needed: int = 0,
    ) -> Iterator[None]:
        """Check, lock and prepare the folder for the run; the lock is held until the block ends.

        Only the main process checks and locks; ``agree`` (a collective over the processes) tells the others
        whether it succeeded, so that a refused run stops every process instead of leaving them waiting.
        ``needed``: the bytes of one checkpoint of the run; a disk with less free space is refused now rather
        than after the first epoch.
        """
        if not main:
            if not agree(True):
                raise RunFolderError(
                    f"the main process refused the output folder {self.path} (see its message)"
                )
            yield
            return
        handle = None
        try:
            self._check_kind(resume)
            make_folder(self.path, "--output-dir")
            handle = self._lock(needed)
            self._remove_stale_temporaries()
            if resume:
                self._check_resumable()
            else:
                self._check_fresh(overwrite)
            if free_bytes(self.path) < needed:
                raise disk_full(self.path, needed, f"a checkpoint of this run ({self.last})")
        except (RunFolderError, OutputPathError, DiskFullError):
            agree(False)
            self._release(handle)
            raise
        agree(True)
        try:
            yield
        finally:
            self._release(handle)

    @staticmethod
    def _release(handle) -> None:
        if handle is not None:
            fcntl.lockf(handle, fcntl.LOCK_UN)
            handle.close()

    def _check_kind(self, resume: bool) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(
                f"the output folder {self.path} is a file, not a folder; pass another --output-dir"
            )
        if resume and not self.path.is_dir():
            raise RunFolderError(
                f"--resume: there is no run in {self.path} (the folder does not exist); start a fresh run "
                "without --resume, or pass the --output-dir of the run to continue"
            )

    def _lock(self, needed: int):
        try:
            handle = open(self.path / LOCK, "a+")  # noqa: SIM115 - held open for the run's duration
        except OSError as error:
            if is_disk_full(error, self.path, needed):
                raise disk_full(self.path, needed, f"its lock file {LOCK} and checkpoints") from None
            raise RunFolderError(
                f"cannot write into the output folder {self.path} ({error.strerror}); make it writable or pass "
                "another --output-dir"
            ) from None
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"another training (process {owner}) is running in {self.path}; wait for it to end, or train "
                "into another --output-dir"
            ) from None
        try:  # unbuffered: a full disk fails here, not later when the handle is closed
            os.ftruncate(handle.fileno(), 0)
            os.pwrite(handle.fileno(), f"{os.getpid()}\n".encode(), 0)
        except OSError as error:
            self._release(handle)
            if is_disk_full(error, self.path, needed):
                raise disk_full(self.path, needed, f"its lock file {LOCK} and checkpoints") from None
            raise
        return handle

    def _remove_stale_temporaries(self) -> None:
        for stale in self.path.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def _check_resumable(self) -> None:
        if (self.path / self.last).is_file():
            return
        found = self.existing_run_files()
        if found:
            raise RunFolderError(
                f"--resume: the run in {self.path} stopped before its first epoch finished, so it wrote no "
                f"{self.last} (it has only {', '.join(found)}); there is nothing to resume: start it again "
                "with --overwrite"
            )
        raise RunFolderError(
            f"--resume: {self.path} holds no run ({self.last} not found); start a fresh run without --resume"
        )

    def _check_fresh(self, overwrite: bool) -> None:
        found = self.existing_run_files()
        if not found:
            return
        if not overwrite:
            raise RunFolderError(
                f"{self.path} already holds a run ({', '.join(found)}); continue it with --resume, train into "
                "another --output-dir, or start over with --overwrite (which deletes that run's files and "
                "what was made from them there: evaluations, exports, demos)"
            )
        for name in [*found, *follow_ups(self.path), FOLLOW_UPS]:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()


def note_follow_up(path: Path) -> None:
    """Record that a command run on a run's files (an evaluation, an export, a demo, an inspection) writes
    ``path`` into the run's folder, so that ``--overwrite`` removes it with the run. A ``path`` whose folder
    holds no run (no ``.lock``) is not recorded."""
    path = Path(path)
    folder = path.parent
    if not (folder / LOCK).is_file() or path.name in (LOCK, FOLLOW_UPS) or path.name in follow_ups(folder):
        return
    with (folder / FOLLOW_UPS).open("a") as handle:
        handle.write(path.name + "\n")


def follow_ups(folder: Path) -> list[str]:
    """The names ``note_follow_up`` recorded in a run folder (plain names only: nothing outside the folder)."""
    record = Path(folder) / FOLLOW_UPS
    names = record.read_text().splitlines() if record.is_file() else []
    return [name for name in names if name and "/" not in name and name not in (".", "..", LOCK)]
