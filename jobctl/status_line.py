"""The one live line jobctl keeps on a terminal's stderr while it waits (`run --wait`, `rerun
--wait`, `wait`) or follows a log (`--follow`): the run's status, where it stands in the queue
and why, how far its job says it has got (a bar, the phase, the message, the time left), and
for how long; or an array job's indices done of total. Redrawn in place at each poll, kept
below a followed log's lines, cleared at the end; nothing at all when stderr is not a
terminal."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, TextIO

from jobctl.log_output import LogOutput, Sink
from jobctl.render.progress import array_line, progress_line
from jobctl.render.values import duration

CLEAR = "\r\x1b[2K"
# a document (a run, an array job) as a line of at most `width` characters, at `now`
Text = Callable[[Mapping[str, Any], datetime, int], str]


def describe(run: Mapping[str, Any], now: datetime) -> str:
    """`run-... pending (#4 in the queue: waiting for alice's quota ...) 12s`, then
    `run-... running 1m05s`."""
    return f"{_where(run)} {_for_how_long(run, now)}"


def status_text(run: Mapping[str, Any], now: datetime, width: int) -> str:
    """describe(run) in `width` characters; once its job has reported progress,
    `run-... running [██████▌      ] 42% · rendering · frame 120 · ETA 3m10s · 1m05s`."""
    progress = run.get("progress")
    if not progress or run["status"] not in ("running", "cancelling"):
        return describe(run, now)[:width]
    return progress_line(_where(run), progress, now, _for_how_long(run, now), width)


def array_text(job: Mapping[str, Any], now: datetime, width: int) -> str:
    """`shards 37/100 done, 3 running [███▋      ] 37%` (a job without a name: its id)."""
    return array_line(job.get("name") or job["id"], job.get("arrayRuns") or {}, width)


def _where(run: Mapping[str, Any]) -> str:
    what = f"{run['id']} {run['status']}"
    queue = run.get("queue")
    if run["status"] == "pending" and queue:
        what += f" (#{queue['position']} in the queue: {queue['reason']})"
    elif run["status"] == "assigned":
        what += " (starting its container)"
    return what


def _for_how_long(run: Mapping[str, Any], now: datetime) -> str:
    """Since it started running, or while it waits since it was created."""
    status = run["status"]
    since = run.get("startedAt") if status in ("running", "cancelling") else run.get("createdAt")
    seconds = int((now - datetime.fromisoformat(since)).total_seconds()) if since else 0
    return str(duration(max(0, seconds)))


class StatusLine:
    """Writes `text(doc)` of the latest document shown over the last line on a terminal;
    does nothing elsewhere. Output written `above` it keeps it at the bottom; once closed,
    it is cleared and drawn no more (a poll still under way on another thread is late)."""

    def __init__(self, out: TextIO | None = None, text: Text = status_text) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        self.text = text
        self._doc: Mapping[str, Any] | None = None
        self._shown = False
        self._held = False  # output above has left its line unfinished: not drawn over it
        self._closed = False
        self._lock = threading.Lock()

    def show(self, doc: Mapping[str, Any]) -> None:
        if not self.live:
            return
        with self._lock:
            self._doc = doc
            self._draw()

    def above(self, write: Callable[[], None], *, ends_line: bool) -> None:
        """Write (`write`) with the line lifted out of the way, and draw it again below
        once the output has ended its line."""
        with self._lock:
            self._erase()
            write()
            self._held = not ends_line
            self._draw()

    def clear(self) -> None:
        with self._lock:
            self._erase()

    def close(self) -> None:
        with self._lock:
            self._erase()
            self._closed = True

    def _draw(self) -> None:
        if self._doc is None or self._held or self._closed or not self.live:
            return
        self.out.write(CLEAR + self.text(self._doc, datetime.now(UTC), self._width()))
        self.out.flush()
        self._shown = True

    def _width(self) -> int:
        """Room for the line: $COLUMNS, else the width of the terminal it is drawn on (stdout
        may be a file), less one column (a full line wraps on some terminals)."""
        if not os.environ.get("COLUMNS"):
            with suppress(OSError, ValueError, AttributeError):
                columns = os.get_terminal_size(self.out.fileno()).columns
                if columns > 1:
                    return columns - 1
        return max(1, shutil.get_terminal_size().columns - 1)

    def _erase(self) -> None:
        if self._shown:
            self.out.write(CLEAR)
            self.out.flush()
            self._shown = False


class BelowOutput:
    """A followed log's output (a Sink) with a live status line kept below its lines."""

    def __init__(self, out: Sink, line: StatusLine) -> None:
        self.out = out
        self.line = line

    def write(self, data: bytes, /) -> int:
        if not data:
            return 0
        written = 0

        def write() -> None:
            nonlocal written
            written = self.out.write(data)
            self.out.flush()

        # LogOutput knows whether its last line is whole (it may hold back a partial one)
        ends = self.out.at_line_start if isinstance(self.out, LogOutput) else data.endswith(b"\n")
        self.line.above(write, ends_line=ends)
        return written

    def flush(self) -> None:
        self.out.flush()
