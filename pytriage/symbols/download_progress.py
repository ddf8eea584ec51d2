"""Showing how far a symbol download has got, and byte counts people can read.

A PDB can be hundreds of megabytes, so a silent download looks like a hang; but a redrawn counter is
garbage in a redirected log, so the store only uses :class:`TerminalProgress` on a terminal.
"""

import time
from typing import IO, Callable, Optional

#: ``progress(label, done, total)``: ``total`` is None while unknown; the last call has done == total.
ProgressCallback = Callable[[str, int, Optional[int]], None]


def human_size(count: int) -> str:
    """``count`` bytes as ``123 B``, ``2.0 KiB`` ... ``1.5 GiB`` (GiB is the largest unit)."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%d B" % count


class TerminalProgress:
    """Byte counter on one stderr line, redrawn at most ten times a second (used only on a terminal)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._last = 0.0

    def __call__(self, label: str, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < 0.1:
            return
        self._last = now
        amount = human_size(done) if total is None else "%s / %s" % (human_size(done), human_size(total))
        self.stream.write("\rdownloading %s: %s\x1b[K" % (label, amount))
        if finished:
            self.stream.write("\n")
        self.stream.flush()


def no_progress(label: str, done: int, total: Optional[int]) -> None:
    """A progress callback that shows nothing (pass it to silence a terminal)."""
