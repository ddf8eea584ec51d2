"""Batch progress on stderr: a one-line bar on a terminal, plain lines in a log.

A batch of hundreds of dumps runs for minutes to hours, so the user needs done/total, the rate and an ETA.
On a terminal one line is redrawn in place (``\\r``), at most ten times a second so a fast batch does not
spend its time drawing. Redirected to a file or a CI log, ``\\r`` redraws become a wall of text, so there it
prints a line for every 10% of the dumps (at most one per 2 seconds, at least one per 30 seconds, and the
last one), plus one line for each dump that did not triage cleanly: those are what someone reading the log is
looking for.
"""

import time
from typing import Optional, TextIO

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
LOG_SECONDS = 30.0            # a log line at least this often
LOG_MIN_SECONDS = 2.0         # and at most this often (the last line always comes)


def format_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "%d:%02d:%02d" % (hours, minutes, secs) if hours else "%d:%02d" % (minutes, secs)


class Progress:
    """Counts finished dumps out of ``total`` and shows it on ``stream`` (None: silent)."""

    def __init__(self, total: int, stream: Optional[TextIO], tty: Optional[bool] = None, label: str = "triage",
                 clock=time.monotonic) -> None:
        self.total = total
        self.stream = stream
        self.tty = bool(tty if tty is not None else stream is not None and getattr(stream, "isatty", lambda: False)())
        self.label = label
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._drawn = 0.0
        self._logged_at = self.start
        self._logged_step = 0
        self._width = 0

    # -- numbers -------------------------------------------------------------------------------------------------
    def rate(self) -> float:
        """Dumps per second so far."""
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> Optional[float]:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self) -> str:
        """``[#########...............] 37/120 dumps  2.4/s  ETA 0:35``"""
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        eta = self.eta()
        return "%s [%s%s] %d/%d dumps  %.1f/s  ETA %s" % (
            self.label, "#" * filled, "." * (BAR_WIDTH - filled), self.done, self.total, self.rate(),
            format_duration(eta) if eta is not None else "?")

    # -- output --------------------------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None            # stderr closed under us: progress is not worth failing the batch for

    def _redraw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        text = self.line()
        self._write("\r" + text + " " * max(0, self._width - len(text)))
        self._width = len(text)

    def _clear(self) -> None:
        if self._width:
            self._write("\r" + " " * self._width + "\r")
            self._width = 0

    def message(self, text: str) -> None:
        """A line that must stay in the scroll-back (a failed dump): printed above the bar."""
        if self.tty:
            self._clear()
            self._write(text + "\n")
            self._redraw(force=True)
        else:
            self._write(text + "\n")

    def begin(self) -> None:
        if self.tty and self.total:
            self._redraw(force=True)

    def advance(self, status: str = "ok", name: str = "", error: Optional[str] = None) -> None:
        """One more dump finished; non-ok dumps get their own line."""
        self.done += 1
        if status != "ok":
            self.message("%s: %s%s" % (status, name, ": %s" % error if error else ""))
        if self.tty:
            self._redraw(force=self.done == self.total)
            return
        step = 10 * self.done // self.total if self.total else 10
        now = self.clock()
        since = now - self._logged_at
        if (step > self._logged_step and since >= LOG_MIN_SECONDS) or since >= LOG_SECONDS \
                or self.done == self.total:
            self._logged_step, self._logged_at = step, now
            eta = self.eta()
            self._write("%s: %d/%d dumps, %.1f/s, ETA %s\n" % (self.label, self.done, self.total, self.rate(),
                                                              format_duration(eta) if eta is not None else "?"))

    def end(self) -> None:
        """Leave the terminal line clean (the bar ends on its own line)."""
        if self.tty and self._width:
            self._write("\n")
            self._width = 0
