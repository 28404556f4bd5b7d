"""Run logs: kept under the data directory, bounded, never silently losing their beginning.

conmon writes each container's output to a k8s-file (`<RFC3339Nano> <stream> <F|P> <text>`).
conmon's own size cap would throw away the start of the output (and a fast writer can rotate it
twice between two reads), so jobd gives it none: the pump copies the file, line-aligned, into the
run's retained log and punches holes (FALLOC_FL_PUNCH_HOLE) behind what it has copied, so the disk
holds only what the pump has not read yet. The retained log:

    logs/<run-id>/head.log          the first `head_bytes` of output, kept forever
    logs/<run-id>/tail-NNNNNN.log   the newest output, in segments; the oldest is dropped first
    logs/<run-id>/state.json        where the pump is, and how many bytes were dropped

Readers see head, then a `[jobd] N bytes omitted` marker line when something was dropped, then
the tail. The retained log outlives the container and the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jobd.config import LogLimits

log = logging.getLogger(__name__)
SOURCE_NAME = "container.log"
CHUNK = 1024 * 1024
PUNCH_EVERY = 4 * 1024 * 1024  # free conmon's copied bytes once this many have piled up
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(None, use_errno=True)


def punch_hole(fd: int, length: int) -> bool:
    """Free the disk blocks of a file's first `length` bytes (they read back as zeros).
    False where the filesystem can't (then the file just keeps its size until the run ends)."""
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    result = _libc.fallocate(fd, mode, ctypes.c_int64(0), ctypes.c_int64(length))
    if result == 0:
        return True
    if ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        log.warning("punching a hole in a run log: %s", os.strerror(ctypes.get_errno()))
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    time: str
    stream: str  # stdout, stderr, or jobd for lines jobd itself inserts
    text: str

    def to_api(self, run_id: str) -> dict[str, str]:
        return {"time": self.time, "stream": self.stream, "text": self.text, "runId": run_id}


@dataclass(frozen=True, slots=True, kw_only=True)
class LogQuery:
    since: datetime | None = None
    until: datetime | None = None
    contains: str | None = None

    def matches(self, line: LogLine) -> bool:
        if self.contains is not None and self.contains not in line.text:
            return False
        if self.since is None and self.until is None:
            return True
        moment = parse_time(line.time)
        if moment is None:
            return True
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until


@dataclass(slots=True, kw_only=True)
class _State:
    head_bytes: int = 0
    head_full: bool = False
    first_segment: int = 1
    last_segment: int = 0
    segment_size: int = 0
    omitted_bytes: int = 0
    source_inode: int | None = None
    source_offset: int = 0
    punched: int = 0
    finished: bool = False


class RunLog:
    """One run's retained log. Writers (the pump) and readers may be in different threads."""

    def __init__(self, directory: Path, limits: LogLimits) -> None:
        self.directory = directory
        self.limits = limits
        self._lock = threading.Lock()
        self._state = self._load()
        self._source: Any = None  # the open conmon file
        self._partial = b""
        self._can_punch = True

    @property
    def source_path(self) -> Path:
        return self.directory / SOURCE_NAME

    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def omitted_bytes(self) -> int:
        return self._state.omitted_bytes

    def _load(self) -> _State:
        try:
            return _State(**json.loads((self.directory / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return _State()

    def _save(self) -> None:
        tmp = self.directory / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self._state)))
        tmp.replace(self.directory / "state.json")

    # -- writing: the pump ------------------------------------------------------------

    def pump(self) -> bool:
        """Copy whatever conmon wrote since the last call. Returns whether anything came."""
        with self._lock:
            if self._state.finished:
                return False
            got = self._drain_source()
            if got:
                self._free_copied()
                self._save()
            return got

    def finish(self) -> None:
        """The container has exited: copy the rest, close the log, drop conmon's file."""
        with self._lock:
            if self._state.finished:
                return
            self._drain_source()
            if self._partial:
                self._append(self._partial + b"\n")
                self._partial = b""
            self._state.finished = True
            self._save()
            if self._source is not None:
                self._source.close()
                self._source = None
            self.source_path.unlink(missing_ok=True)

    def close(self) -> None:
        """Let go of conmon's file without finishing (the daemon is stopping; the next start
        resumes from state.json)."""
        with self._lock:
            if self._source is not None:
                self._source.close()
                self._source = None

    def _drain_source(self) -> bool:
        got = False
        while True:
            if self._source is None and not self._open_source():
                return got
            rotated = self._source_rotated()
            got = self._read_to_end() or got
            if not rotated:
                return got
            self._source.close()
            self._source = None
            self._state.source_inode = None
            self._state.source_offset = 0
            self._state.punched = 0

    def _free_copied(self) -> None:
        state = self._state
        if not self._can_punch or self._source is None:
            return
        if state.source_offset - state.punched < PUNCH_EVERY:
            return
        self._can_punch = punch_hole(self._source.fileno(), state.source_offset)
        if self._can_punch:
            state.punched = state.source_offset

    def _open_source(self) -> bool:
        try:
            source = self.source_path.open("r+b")
        except FileNotFoundError:
            return False
        inode = os.fstat(source.fileno()).st_ino
        if inode == self._state.source_inode:
            source.seek(self._state.source_offset)
        else:
            self._state.source_inode = inode
            self._state.source_offset = 0
            self._state.punched = 0
        self._source = source
        return True

    def _source_rotated(self) -> bool:
        try:
            current = self.source_path.stat().st_ino
        except FileNotFoundError:
            return False
        return bool(current != os.fstat(self._source.fileno()).st_ino)

    def _read_to_end(self) -> bool:
        got = False
        while chunk := self._source.read(CHUNK):
            got = True
            data = self._partial + chunk
            cut = data.rfind(b"\n") + 1
            self._partial = data[cut:]
            if cut:
                self._append(data[:cut])
            self._state.source_offset = self._source.tell() - len(self._partial)
        return got

    def _append(self, data: bytes) -> None:
        if not self._state.head_full:
            data = self._append_head(data)
        while data:
            data = self._append_tail(data)
        self._drop_old_segments()

    def _append_head(self, data: bytes) -> bytes:
        room = self.limits.head_bytes - self._state.head_bytes
        take = data if len(data) <= room else data[: data.rfind(b"\n", 0, room) + 1]
        if take:
            with (self.directory / "head.log").open("ab") as f:
                f.write(take)
            self._state.head_bytes += len(take)
        if len(take) < len(data):
            self._state.head_full = True
        return data[len(take) :]

    def _append_tail(self, data: bytes) -> bytes:
        state = self._state
        if state.last_segment == 0 or state.segment_size >= self.limits.segment_bytes:
            state.last_segment += 1
            state.segment_size = 0
        room = self.limits.segment_bytes - state.segment_size
        take = data if len(data) <= room else data[: data.rfind(b"\n", 0, room) + 1]
        if not take:  # one line longer than a segment: keep it whole
            take = data[: data.find(b"\n") + 1] or data
        with self._segment(state.last_segment).open("ab") as f:
            f.write(take)
        state.segment_size += len(take)
        return data[len(take) :]

    def _drop_old_segments(self) -> None:
        state = self._state
        keep = max(2, (self.limits.max_bytes - self.limits.head_bytes) // self.limits.segment_bytes)
        while state.last_segment - state.first_segment + 1 > keep:
            path = self._segment(state.first_segment)
            with contextlib.suppress(FileNotFoundError):
                state.omitted_bytes += path.stat().st_size
                path.unlink()
            state.first_segment += 1

    def _segment(self, number: int) -> Path:
        return self.directory / f"tail-{number:06d}.log"

    # -- reading ----------------------------------------------------------------------

    def files(self) -> list[Path]:
        with self._lock:
            state = self._state
            segments = range(state.first_segment, state.last_segment + 1)
            return [self.directory / "head.log", *(self._segment(n) for n in segments)]

    def lines(self, query: LogQuery) -> Iterator[LogLine]:
        """Every retained line that matches, oldest first, with the omission marker."""
        files = self.files()
        for index, path in enumerate(files):
            if index == 1 and self.omitted_bytes:
                yield self.marker()
            yield from _read_file(path, query)

    def marker(self) -> LogLine:
        limits = self.limits
        return LogLine(
            time="",
            stream="jobd",
            text=(
                f"[jobd] {self.omitted_bytes} bytes of output omitted here: the log keeps the"
                f" first {limits.head_bytes} bytes and the last"
                f" {limits.max_bytes - limits.head_bytes} bytes"
            ),
        )


def _read_file(path: Path, query: LogQuery) -> Iterator[LogLine]:
    needle = query.contains.encode() if query.contains else None
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        # cheap pre-filter on the raw bytes; partial lines must reach the parser whole
        raws = (r for r in f if needle is None or needle in r or _is_partial(r))
        yield from _parse_lines(raws, query)


def _parse_lines(raws: Iterable[bytes], query: LogQuery) -> Iterator[LogLine]:
    """k8s-file lines to LogLines, partial (P) pieces joined to the line they end in."""
    pending: list[LogLine] = []
    for raw in raws:
        line, complete = parse_k8s_line(raw)
        if line is None:
            continue
        if not complete:
            pending.append(line)
            continue
        if pending:
            text = "".join(p.text for p in pending) + line.text
            line = LogLine(time=pending[0].time, stream=line.stream, text=text)
            pending = []
        if query.matches(line):
            yield line


class LogFollower:
    """Reads the lines appended to a run's retained log since its last call. It re-opens the
    log each time: a run that was pending when following began gets its live log later."""

    def __init__(
        self, open_log: Callable[[], RunLog], query: LogQuery, *, skip_existing: bool
    ) -> None:
        self.open_log = open_log
        self.query = query
        self.offsets: dict[Path, int] = {}
        self.marked = False
        if skip_existing:
            self.offsets = {path: _size(path) for path in open_log().files()}

    def read_new(self) -> list[LogLine]:
        run_log = self.open_log()
        lines: list[LogLine] = []
        for index, path in enumerate(run_log.files()):
            if index == 1 and run_log.omitted_bytes and not self.marked:
                self.marked = True
                lines.append(run_log.marker())
            lines.extend(_parse_lines(self._new_raw_lines(path), self.query))
        return lines

    def _new_raw_lines(self, path: Path) -> list[bytes]:
        offset = self.offsets.get(path, 0)
        try:
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return []
        cut = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offsets[path] = offset + cut
        return data[:cut].splitlines(keepends=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _is_partial(raw: bytes) -> bool:
    return b" P " in raw[:64]


def parse_k8s_line(raw: bytes) -> tuple[LogLine | None, bool]:
    """One k8s-file line: (the line, whether it is complete: F rather than P)."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None, True
    text = parts[3] if len(parts) == 4 else b""
    line = LogLine(
        time=parts[0].decode(), stream=parts[1].decode(), text=text.decode(errors="replace")
    )
    return line, parts[2] != b"P"


def parse_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class LogPump:
    """Copies conmon's files of all running runs into their retained logs, and wakes followers."""

    def __init__(self, root: Path, limits: LogLimits, interval: float = 0.1) -> None:
        self.root = root
        self.limits = limits
        self.interval = interval
        self._active: dict[str, RunLog] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def directory(self, run_id: str) -> Path:
        return self.root / run_id

    def prepare(self, run_id: str) -> Path:
        """Create the run's log directory (podman fails with 'broken pipe' without it) and
        return the path conmon should write to."""
        directory = self.directory(run_id)
        directory.mkdir(parents=True, exist_ok=True)
        return directory / SOURCE_NAME

    def open(self, run_id: str) -> RunLog:
        return self._active.get(run_id) or RunLog(self.directory(run_id), self.limits)

    def track(self, run_id: str) -> None:
        if run_id not in self._active:
            self.prepare(run_id)
            self._active[run_id] = RunLog(self.directory(run_id), self.limits)

    async def finish(self, run_id: str) -> None:
        run_log = self._active.pop(run_id, None) or RunLog(self.directory(run_id), self.limits)
        if run_log.directory.exists():
            await asyncio.to_thread(run_log.finish)
        self._notify(run_id)

    def changed(self, run_id: str) -> asyncio.Event:
        return self._changed.setdefault(run_id, asyncio.Event())

    def _notify(self, run_id: str) -> None:
        event = self._changed.pop(run_id, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        for run_log in self._active.values():
            run_log.close()

    async def run(self) -> None:
        """The pump loop: a named background task for the daemon's lifetime."""
        while True:
            await asyncio.sleep(self.interval)
            for run_id, run_log in list(self._active.items()):
                try:
                    got = await asyncio.to_thread(run_log.pump)
                except OSError as e:
                    log.warning("log pump for %s: %s", run_id, e)
                    continue
                if got:
                    self._notify(run_id)
