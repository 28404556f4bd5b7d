"""The live line `run --wait` keeps on a terminal: what it says, and that it is drawn over
itself on a terminal and not at all elsewhere."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from jobctl.status_line import CLEAR, StatusLine, describe

NOW = datetime(2027, 1, 1, 12, 0, 30, tzinfo=UTC)


def test_it_says_where_a_run_stands_and_for_how_long() -> None:
    queued = {"id": "run-1", "status": "pending", "createdAt": "2027-01-01T12:00:00+00:00",
              "queue": {"position": 4, "reason": "waiting for 2 CPUs (1 free)"}}  # fmt: skip
    assert (
        describe(queued, NOW) == "run-1 pending (#4 in the queue: waiting for 2 CPUs (1 free)) 30s"
    )
    starting = {**queued, "status": "assigned", "queue": None}
    assert describe(starting, NOW) == "run-1 assigned (starting its container) 30s"
    running = {**starting, "status": "running", "startedAt": "2027-01-01T11:58:00+00:00"}
    assert describe(running, NOW) == "run-1 running 2m30s"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_drawn_over_itself_on_a_terminal_and_not_at_all_elsewhere() -> None:
    run = {"id": "run-1", "status": "running", "startedAt": "2027-01-01T11:58:00+00:00"}
    terminal = Terminal()
    line = StatusLine(terminal)
    line.show(run)
    line.show(run)
    line.clear()
    assert terminal.getvalue().count(CLEAR) == 3 and terminal.getvalue().endswith(CLEAR)
    piped = io.StringIO()
    quiet = StatusLine(piped)
    quiet.show(run)
    quiet.clear()
    assert piped.getvalue() == ""
