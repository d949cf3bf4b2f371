"""User-facing errors: raised for bad input, printed as one paragraph (no traceback) by the entry points."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (config, data, checkpoint) that the user can fix."""


class ConfigError(UserError):
    """An experiment config is invalid: unknown key, wrong type or value."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key  # the dotted config key at fault (e.g. 'train.lr'), when known


class DataError(UserError):
    """A dataset file or folder is missing or unreadable."""


class CheckpointError(UserError):
    """A checkpoint does not exist or does not fit the model."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt name, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
