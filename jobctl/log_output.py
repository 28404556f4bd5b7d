"""A run's log written where its container wrote it: stdout's lines to stdout, stderr's (and
jobd's own notes about the run) to stderr, read from the API's JSON lines, which say each
line's stream; with timestamps, each line after its time. `jobctl logs ID > out.txt` keeps
the program's output apart from its errors, as running it in a shell would."""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO, Protocol


class Sink(Protocol):
    """Where copied log bytes go: a binary file, or a LogOutput."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class LogOutput:
    """Writes the API's ndjson log lines (`format` says which the request asks for) to
    stdout or stderr by their stream. When both are the same file and no timestamps are
    wanted, splitting changes nothing: the plain text is asked for and copied as it is."""

    def __init__(
        self,
        *,
        timestamps: bool = False,
        run_ids: bool = False,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
    ) -> None:
        self.stdout = stdout or sys.stdout.buffer
        self.stderr = stderr or sys.stderr.buffer
        self.timestamps = timestamps
        self.run_ids = run_ids  # each line after its run's id (a job's logs)
        self.plain = not timestamps and not run_ids and _same_file(self.stdout, self.stderr)
        self._partial = b""
        self._line_ended = True

    @property
    def at_line_start(self) -> bool:
        """Whether what it has written so far ends with a whole line (a line held back to
        be parsed is not written yet)."""
        return self._line_ended

    @property
    def format(self) -> str:
        return "text" if self.plain else "ndjson"

    def write(self, data: bytes, /) -> int:
        if self.plain:
            if data:
                self._line_ended = data.endswith(b"\n")
            return self.stdout.write(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            if raw.strip():
                self._line(raw)
        return len(data)

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    def end(self) -> None:
        """The log has ended: a last line cut short (the stream broke) is written too."""
        if self._partial.strip():
            partial, self._partial = self._partial, b""
            self._line(partial)
        self.flush()

    def _line(self, raw: bytes) -> None:
        try:
            line = json.loads(raw)
        except ValueError:
            line = {"stream": "stderr", "text": raw.decode(errors="replace")}
        head = ""
        if self.run_ids and line.get("runId"):
            head += f"{line['runId']} "
        if self.timestamps and line.get("time"):
            head += f"{line['time']} "
        out = self.stdout if line.get("stream") == "stdout" else self.stderr
        out.write(f"{head}{line.get('text', '')}\n".encode())


def _same_file(one: BinaryIO, other: BinaryIO) -> bool:
    """Whether two outputs end in the same file (a terminal, or `> f 2>&1`)."""
    try:
        return os.path.sameopenfile(one.fileno(), other.fileno())
    except (OSError, ValueError, AttributeError):
        return False
