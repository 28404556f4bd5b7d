"""How jobd's own log lines read on stderr: one line per event, in one of three forms.

- `journal`: `<6>jobd.scheduler: message`, the priority as a syslog `<N>` prefix that journald
  turns into the entry's priority; no time (journald stamps each entry itself). Chosen by
  default when stderr is the journal's stream: JOURNAL_STREAM names its device and inode, as
  systemd.exec(5) says to check, so a stderr redirected elsewhere keeps the text form.
- `json`: one JSON object per line (time, level, logger, message, exception) for log shippers.
- `text`: `2026-01-01 12:00:00,000 INFO jobd: message`, for a terminal or a file.

A traceback or a multi-line message stays one line in the journal and JSON forms (newlines
become `\\n`), so that one event is one entry and keeps its priority.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("auto", "text", "journal", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog priorities (sd-daemon(3)): what journald records for each of logging's levels
PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
DEBUG_PRIORITY = 7


def priority(level: int) -> int:
    """A logging level as a syslog priority: the first whose level it reaches."""
    for threshold, value in PRIORITIES:
        if level >= threshold:
            return value
    return DEBUG_PRIORITY


def _event_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The message with the exception's traceback (and stack) after it, when there is one."""
    text = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    for extra in (record.exc_text, record.stack_info and formatter.formatStack(record.stack_info)):
        if extra:
            text = f"{text}\n{extra}"
    return text


class JournalFormatter(logging.Formatter):
    """`<N>logger: message` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        text = _event_text(self, record).replace("\n", "\\n")
        return f"<{priority(record.levelno)}>{record.name}: {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per event: time (UTC, ISO 8601), level, logger, message, and the
    exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            event["exception"] = record.exc_text
        return json.dumps(event, ensure_ascii=False)


def stream_is_journal(stream: TextIO, journal_stream: str | None) -> bool:
    """Whether `stream` is the journal's own stream: JOURNAL_STREAM is `device:inode` of the
    stream systemd connected, and a stderr redirected since then has another."""
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def formatter_for(form: str, stream: TextIO) -> logging.Formatter:
    """The formatter a `--log-format` asks for; `auto` is `journal` under systemd's journal,
    else `text`."""
    if form == "auto":
        journal = stream_is_journal(stream, os.environ.get("JOURNAL_STREAM"))
        form = "journal" if journal else "text"
    if form == "journal":
        return JournalFormatter()
    if form == "json":
        return JsonFormatter()
    if form == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {form!r}: one of {', '.join(FORMATS)}")


def configure(level: str, form: str, stream: TextIO) -> None:
    """The root logger writes one line per event to `stream` in the chosen form."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(form, stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
