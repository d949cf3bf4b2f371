"""Progress reporting: a tqdm bar on a terminal, a plain line every few seconds in a log file.

A bar redrawn with carriage returns turns a redirected log (``> train.log``, a cluster job's output) into
thousands of fragments; without a terminal the same loop prints one readable line every ``interval``
seconds and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


class Progress:
    """Iterate with progress output; ``set_postfix`` shows running values (e.g. the loss terms); ``unit``
    names what is counted (the rate is ``unit``/s: it/s, frames/s)."""

    def __init__(
        self,
        iterable: Iterable[Any],
        total: int | None,
        desc: str,
        *,
        enabled: bool = True,
        interval: float = 30.0,
        stream: TextIO | None = None,
        unit: str = "it",
    ) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.postfix: dict[str, str] = {}
        self.bar = None
        if enabled and _is_terminal(self.stream):
            self.bar = tqdm(iterable, total=total, desc=desc, leave=False, file=self.stream, unit=unit)

    def __iter__(self) -> Iterator[Any]:
        if self.bar is not None:
            yield from self.bar
            return
        started = last = time.monotonic()
        count = 0
        for count, item in enumerate(self.iterable, start=1):
            yield item
            now = time.monotonic()
            if self.enabled and now - last >= self.interval:
                last = now
                self._line(count, now - started)
        if self.enabled and count:
            self._line(count, time.monotonic() - started)

    def _line(self, count: int, seconds: float) -> None:
        values = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        rate = count / seconds if seconds > 0 else 0.0
        print(
            f"{self.desc}: {count}/{self.total if self.total is not None else '?'} ({rate:.2f} {self.unit}/s) {values}".rstrip(),
            file=self.stream,
            flush=True,
        )

    def set_postfix(self, values: dict[str, str]) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(values)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
