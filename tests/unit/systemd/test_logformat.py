"""jobd's log lines: journald's <N> priorities without a time, JSON for shippers, the text
form elsewhere; the journal form chosen only when stderr really is the journal's stream."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from jobd.systemd.logformat import (
    JournalFormatter,
    JsonFormatter,
    configure,
    formatter_for,
    priority,
    stream_is_journal,
)


def record(level: int, message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("jobd.scheduler", level, __file__, 1, message, args, exc_info)


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
    ],
)
def test_levels_are_syslog_priorities(level: int, expected: int) -> None:
    assert priority(level) == expected


def test_the_journal_form_is_one_line_with_a_priority_and_no_time() -> None:
    line = JournalFormatter().format(record(logging.WARNING, "run %s lost", "run-1"))
    assert line == "<4>jobd.scheduler: run run-1 lost"


def test_a_traceback_stays_in_the_same_journal_line() -> None:
    line = JournalFormatter().format(record(logging.ERROR, "failed", exc=True))
    assert "\n" not in line
    assert line.startswith("<3>jobd.scheduler: failed\\nTraceback")
    assert "ValueError: boom" in line


def test_the_json_form_has_time_level_logger_message_and_exception() -> None:
    event = json.loads(JsonFormatter().format(record(logging.ERROR, "failed: %d", 3, exc=True)))
    assert set(event) == {"time", "level", "logger", "message", "exception"}
    assert (event["level"], event["logger"], event["message"]) == (
        "error",
        "jobd.scheduler",
        "failed: 3",
    )
    assert event["time"].endswith("+00:00")
    assert "ValueError: boom" in event["exception"]
    assert "exception" not in json.loads(JsonFormatter().format(record(logging.INFO, "ok")))


def test_journal_stream_must_name_stderr_itself(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as stream, (tmp_path / "other").open("w") as other:
        mine = os.fstat(stream.fileno())
        assert stream_is_journal(stream, f"{mine.st_dev}:{mine.st_ino}")
        # a stderr redirected to a file after systemd started jobd keeps the text form
        assert not stream_is_journal(other, f"{mine.st_dev}:{mine.st_ino}")
        assert not stream_is_journal(stream, None)
        assert not stream_is_journal(stream, "garbage")


def test_auto_is_journal_under_systemd_and_text_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        found = os.fstat(stream.fileno())
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert type(formatter_for("auto", stream)) is logging.Formatter
        monkeypatch.setenv("JOURNAL_STREAM", f"{found.st_dev}:{found.st_ino}")
        assert isinstance(formatter_for("auto", stream), JournalFormatter)
        assert isinstance(formatter_for("json", stream), JsonFormatter)
    with pytest.raises(ValueError, match="unknown log format"):
        formatter_for("xml", io.StringIO())


def test_configure_writes_one_line_per_event_to_the_stream() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure("info", "json", stream)
        logging.getLogger("jobd").info("ready")
        logging.getLogger("jobd").debug("not shown at info")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["ready"]
