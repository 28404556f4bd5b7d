"""The one live line `jobctl run --wait` and `rerun --wait` keep on a terminal's stderr while a
run waits and runs: its status, where it stands in the queue and why, and for how long. Redrawn
in place at each poll, cleared at the end; nothing at all when stderr is not a terminal."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from jobctl.render.values import duration

CLEAR = "\r\x1b[2K"


def describe(run: Mapping[str, Any], now: datetime) -> str:
    """`run-... pending (#4 in the queue: waiting for alice's quota ...) 12s`, then
    `run-... running 1m05s`."""
    status = run["status"]
    since = run.get("startedAt") if status in ("running", "cancelling") else run.get("createdAt")
    seconds = int((now - datetime.fromisoformat(since)).total_seconds()) if since else 0
    what = f"{run['id']} {status}"
    queue = run.get("queue")
    if status == "pending" and queue:
        what += f" (#{queue['position']} in the queue: {queue['reason']})"
    elif status == "assigned":
        what += " (starting its container)"
    return f"{what} {duration(max(0, seconds))}"


class StatusLine:
    """Writes `describe(run)` over the last line on a terminal; does nothing elsewhere."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        self._shown = False

    def show(self, run: Mapping[str, Any]) -> None:
        if not self.live:
            return
        width = shutil.get_terminal_size().columns - 1
        self.out.write(CLEAR + describe(run, datetime.now(UTC))[:width])
        self.out.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.out.write(CLEAR)
            self.out.flush()
            self._shown = False
