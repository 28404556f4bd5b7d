"""The live line `run --wait`, `wait` and `--follow` keep on a terminal: what it says (with a
progress bar once the job reported progress), that it is drawn over itself on a terminal and
not at all elsewhere, and that a followed log's lines are written above it."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobctl.log_output import LogOutput
from jobctl.status_line import CLEAR, BelowOutput, StatusLine, describe, status_text

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


PROGRESS = {
    "fraction": 0.5, "done": 5, "total": 10, "message": "frame 5", "phase": "rendering",
    "updatedAt": "2027-01-01T12:00:20+00:00", "etaSeconds": 40.0,
}  # fmt: skip


def test_a_run_that_reports_progress_shows_a_bar_and_one_that_does_not_reads_as_before() -> None:
    run = {"id": "run-1", "status": "running", "startedAt": "2027-01-01T11:58:00+00:00"}
    assert status_text(run, NOW, 200) == describe(run, NOW) == "run-1 running 2m30s"
    assert status_text({**run, "progress": None}, NOW, 200) == "run-1 running 2m30s"
    shown = status_text({**run, "progress": PROGRESS}, NOW, 200)
    assert shown == (
        "run-1 running [██████████          ] 50% · rendering · frame 5 · ETA 30s · 2m30s"
    )
    assert len(status_text({**run, "progress": PROGRESS}, NOW, 30)) <= 30


def test_a_followed_logs_lines_go_above_the_line_which_waits_for_a_whole_line() -> None:
    screen = Terminal()
    line = StatusLine(screen, text=lambda doc, now, width: str(doc["id"]))

    class Out(io.BytesIO):
        def write(self, data: bytes, /) -> int:  # type: ignore[override]
            screen.write(f"<{data.decode()}>")
            return len(data)

    out = BelowOutput(Out(), line)
    line.show({"id": "run-1"})
    out.write(b"one\n")
    out.write(b"half a line")  # not drawn over: the line waits for the rest of it
    line.show({"id": "run-1"})
    out.write(b" and its end\n")
    line.close()
    line.show({"id": "run-1"})  # a late poll from the follower's thread draws nothing
    assert screen.getvalue() == (
        f"{CLEAR}run-1{CLEAR}<one\n>{CLEAR}run-1{CLEAR}<half a line>< and its end\n>"
        f"{CLEAR}run-1{CLEAR}"
    )


def test_a_log_output_knows_whether_it_left_a_line_unfinished(tmp_path: Path) -> None:
    with (tmp_path / "terminal").open("w+b") as both:  # stdout and stderr: one file
        output = LogOutput(stdout=both, stderr=both)
        assert output.plain and output.at_line_start
        output.write(b"a\nb")
        assert not output.at_line_start
        output.write(b"c\n")
        assert output.at_line_start
    assert (tmp_path / "terminal").read_bytes() == b"a\nbc\n"


def test_piped_a_followed_log_gets_nothing_extra() -> None:
    run = {"id": "run-1", "status": "running", "startedAt": "2027-01-01T11:58:00+00:00"}
    piped = io.StringIO()
    line = StatusLine(piped)
    follower = threading.Thread(target=line.show, args=(run,))
    follower.start()
    follower.join()
    line.above(lambda: None, ends_line=True)
    line.close()
    assert piped.getvalue() == ""


def test_the_line_fits_the_terminals_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    terminal = Terminal()
    run = {"id": "run-1", "status": "running", "startedAt": "2027-01-01T11:58:00+00:00",
           "progress": PROGRESS}  # fmt: skip
    StatusLine(terminal).show(run)
    drawn = terminal.getvalue().removeprefix(CLEAR)
    assert len(drawn) == 29 and drawn.startswith("run-1 running 50% ·"), drawn
