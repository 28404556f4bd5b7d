"""One run's log, kept under the data directory: conmon's k8s-file itself, with the head
kept forever, the middle punched out, and a bounded tail (jobd/logs/__init__.py draws it).

A full disk: conmon's write of a line is cut short where the space ends, what the job writes
next is dropped until there is room again, and the next line conmon writes then begins right
after the cut piece, on the same line of the file. The pump notes a piece of a line that stays
unfinished (a cut); once a line ends after it, the cut piece is left out of the log and a
`[jobd] N bytes of output lost: disk full` marker stands in its place (N: the bytes left out;
what conmon dropped outright nobody counted, the marker's times bound it). A run that ends
while cut gets the marker at its end. state.json that cannot be written stays in memory and
is written once there is room."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jobd.config.tables import LogLimits
from jobd.errors import NoSpace, lacks_space
from jobd.logs.lines import LineJoiner, LogLine, LogQuery

log = logging.getLogger(__name__)
SOURCE_NAME = "container.log"
READ_CHUNK = 1024 * 1024  # readers take the log in pieces of about this size
SCAN_WINDOW = 64 * 1024  # looking for a line boundary: read this much at a time
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
LOW_SPACE_BYTES = 1024 * 1024  # less free than this, and a line stalls unfinished: a cut
RECENT_SECONDS = 60.0  # or a write failed for lack of space this lately
SAVE_SECONDS = 1.0  # state.json, when only the end moved
CUT_SCAN = 64 * 1024  # a line that ends after a cut: how much of it is searched for its start
# where a k8s-file line begins: conmon's RFC 3339 time, the stream, the F|P tag
LINE_START = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) (?:stdout|stderr) [FP] "
)
_libc = ctypes.CDLL(None, use_errno=True)


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the disk blocks of a file's bytes [offset, offset + length) (they read back as
    zeros). False where the filesystem can't (then the file keeps them)."""
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    result = _libc.fallocate(fd, mode, ctypes.c_int64(offset), ctypes.c_int64(length))
    if result == 0:
        return True
    if ctypes.get_errno() not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        log.warning("punching a hole in a run log: %s", os.strerror(ctypes.get_errno()))
    return False


def last_line_end(fd: int, start: int, end: int) -> int:
    """The offset just after the last newline in [start, end), or start if there is none."""
    position = end
    while position > start:
        window = max(start, position - SCAN_WINDOW)
        found = os.pread(fd, position - window, window).rfind(b"\n")
        if found >= 0:
            return window + found + 1
        position = window
    return start


def next_line_start(fd: int, start: int, end: int) -> int:
    """The offset just after the first newline in [start - 1, end), or end if there is none:
    where the first whole line at or after `start` begins."""
    position = max(0, start - 1)
    while position < end:
        found = os.pread(fd, min(SCAN_WINDOW, end - position), position).find(b"\n")
        if found >= 0:
            return position + found + 1
        position += SCAN_WINDOW
    return end


@dataclass(slots=True, kw_only=True)
class _State:
    end: int = 0  # whole lines up to here are the log's
    head_end: int | None = None  # where the head ends, once it is full
    tail_start: int = 0  # where the kept tail starts (once the head is full)
    omitted_bytes: int = 0
    punched: int = 0  # holes are punched from head_end up to here
    source_inode: int | None = None
    finished: bool = False
    cut: list[int] | None = None  # [where, how long]: a piece of a line conmon left unfinished
    losses: list[list[Any]] = field(default_factory=list)  # [at, bytes, since, until] each


@dataclass(frozen=True, slots=True, kw_only=True)
class Loss:
    """Output lost to a full disk: `bytes` cut-short bytes at `at` left out of the log (the
    log goes on at `at + bytes`), the job's output between `since` and `until` not kept."""

    at: int
    bytes: int
    since: str
    until: str

    @property
    def resumes(self) -> int:
        return self.at + self.bytes

    def marker(self) -> LogLine:
        between = f" (its output from {self.since} to {self.until} was not kept)"
        return LogLine(
            time=self.since,
            stream="jobd",
            text=f"[jobd] {self.bytes} bytes of output lost: disk full"
            + (between if self.since and self.until else ""),
        )


@dataclass(frozen=True, slots=True)
class Kept:
    """What a reader may read now: byte ranges of the file, the marker between them."""

    ranges: tuple[tuple[int, int], ...]
    omitted_bytes: int
    losses: tuple[Loss, ...] = ()


class RunLog:
    """One run's log. The pump and readers may be in different threads."""

    def __init__(self, directory: Path, limits: LogLimits) -> None:
        self.directory = directory
        self.limits = limits
        self._lock = threading.Lock()
        self._state = self._load()
        self._fd: int | None = None  # conmon's file, open for pumping
        self._can_punch = True
        self._unfinished: tuple[int, int] | None = None  # (end, size) at the last pump
        self.unsaved = False  # state.json lacks what is in memory: no space to write it
        self._saved_at = 0.0  # monotonic; state.json is written at most every SAVE_SECONDS

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
        """state.json as the state is now; without space for it, it stays in memory (unsaved)
        for save() to write later: readers in this process read the memory."""
        tmp = self.directory / "state.json.tmp"
        try:
            tmp.write_text(json.dumps(asdict(self._state)))
        except OSError as e:
            if not lacks_space(e):
                raise
            NoSpace.note()
            self.unsaved = True
            return
        tmp.replace(self.directory / "state.json")
        self.unsaved = False
        self._saved_at = time.monotonic()

    def save(self) -> bool:
        """Write what state.json lacks, if it lacks anything. Whether it is written now."""
        with self._lock:
            if self.unsaved:
                self._save()
            return not self.unsaved

    # -- the pump ---------------------------------------------------------------------

    @property
    def taken(self) -> int:
        """How far into conmon's file this log has taken whole lines (bytes)."""
        return self._state.end

    def caught_up(self) -> bool:
        """Whether a pump would find nothing to do: conmon's file ends where the whole lines
        taken in end (or is not there yet), and state.json lacks nothing. One stat of the
        file the pump follows (its open one: conmon goes on writing a file unlinked or
        renamed under it), so a quiet run costs a pump turn nothing more. An error is left
        for the pump to meet and tell."""
        if self.unsaved:
            return False
        with self._lock:
            try:
                if self._fd is not None:
                    return os.fstat(self._fd).st_size == self._state.end
                return os.stat(self.source_path).st_size == self._state.end
            except FileNotFoundError:
                return True
            except OSError:
                return False

    def pump(self) -> bool:
        """Take in the whole lines conmon wrote since the last call. Whether any came."""
        with self._lock:
            if self._state.finished or not self._open_source():
                return False
            assert self._fd is not None
            size = os.fstat(self._fd).st_size
            lost = self._mend_cut(size)
            got = self._advance(size) or lost
            self._watch_unfinished(size)
            return got

    def finish(self) -> None:
        """The container has exited: take in the rest (a last line without its newline gets
        one) and close the log."""
        with self._lock:
            if self._state.finished:
                return
            if self._open_source():
                assert self._fd is not None
                size = os.fstat(self._fd).st_size
                self._mend_cut(size)
                self._advance(size)
                if size > self._state.end:  # conmon's last line, cut short
                    self._end_line(size)
            self._state.finished = True
            self._save()
            self._close_source()

    def close(self) -> None:
        """Let go of conmon's file without finishing (the daemon is stopping; the next start
        resumes from state.json, written now)."""
        with self._lock:
            if self._fd is not None and not self._state.finished:
                self._save()
            self._close_source()

    def _open_source(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.source_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        inode = os.fstat(fd).st_ino
        if self._state.source_inode not in (None, inode):
            log.warning("%s was replaced; its log starts over", self.source_path)
            self._state = _State()
        self._state.source_inode = inode
        self._fd = fd
        return True

    def _end_line(self, size: int) -> None:
        """The run ended on an unfinished line: it gets its newline; one cut by a full disk
        (or with no room for the newline) is left out as lost."""
        assert self._fd is not None
        if self._state.cut is None:
            try:
                os.pwrite(self._fd, b"\n", size)
            except OSError as e:
                if not lacks_space(e):
                    raise
                NoSpace.note()
            else:
                self._advance(size + 1)
                return
        self._lose(self._state.end, size, until="")
        self._save()

    def _watch_unfinished(self, size: int) -> None:
        """conmon writes each line whole, with one write: a piece of a line that stays as it
        was from one pump to the next, while the disk is full, was cut short."""
        state = self._state
        seen = (state.end, size) if size > state.end else None
        stalled = seen is not None and seen == self._unfinished and state.cut is None
        if stalled and self._disk_full():
            state.cut = [state.end, size - state.end]
            log.warning("%s: a line was cut short (disk full?)", self.source_path)
            self._save()
        self._unfinished = seen

    def _disk_full(self) -> bool:
        """The log's disk has almost no room, or a write failed for lack of space lately (a
        quota: the disk itself has room)."""
        noted = NoSpace.noted_at
        if noted is not None and time.monotonic() - noted < RECENT_SECONDS:
            return True
        found = os.statvfs(self.directory)
        return found.f_bavail * found.f_frsize < LOW_SPACE_BYTES

    def _mend_cut(self, size: int) -> bool:
        """After a cut, once a line ends: where the last line conmon began in it starts, the
        cut piece before it is left out as lost. No other line began in it: the piece was
        a line being written after all, and nothing was lost. Whether a loss was noted."""
        state = self._state
        if state.cut is None or size <= sum(state.cut):
            return False
        assert self._fd is not None
        at = state.cut[0]
        data = os.pread(self._fd, min(CUT_SCAN, size - at), at)
        line_end = data.find(b"\n")
        if line_end < 0 and size - at > CUT_SCAN:
            line_end = len(data)  # a line too long to look through: no line began in it
        if line_end < 0:
            return False  # the line after the cut is not whole yet
        starts = [m.start() for m in LINE_START.finditer(data, 1, line_end)]
        state.cut = None
        if not starts:
            return False
        resumed = data[starts[-1] : starts[-1] + 40].split(b" ", 1)[0].decode()
        self._lose(at, at + starts[-1], until=resumed)
        self._save()
        return True

    def _lose(self, at: int, resumes: int, *, until: str) -> None:
        """[at, resumes) is left out: a line cut short by a full disk."""
        assert self._fd is not None
        piece = os.pread(self._fd, min(64, resumes - at), at)
        since = piece.split(b" ", 1)[0].decode(errors="replace") if LINE_START.match(piece) else ""
        state = self._state
        state.losses.append([at, resumes - at, since, until])
        state.end = max(state.end, resumes)
        state.cut = None
        log.warning("%s: %d bytes of output lost: disk full", self.source_path, resumes - at)

    def _close_source(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _advance(self, size: int) -> bool:
        assert self._fd is not None
        state = self._state
        end = last_line_end(self._fd, state.end, size)
        if end == state.end:
            return False
        state.end = end
        bounds = (state.head_end, state.tail_start)
        self._fill_head()
        self._trim_tail()
        # the head fixed or the tail trimmed (holes punched): written now; only the end moved:
        # at most every SAVE_SECONDS: a start after a crash takes in again what came since
        # (readers see nothing twice: they read the kept ranges; the log stream may forward
        # those lines again, and their markers are read again)
        if (state.head_end, state.tail_start) != bounds or self._save_due():
            self._save()
        return True

    def _save_due(self) -> bool:
        return time.monotonic() - self._saved_at >= SAVE_SECONDS

    def _fill_head(self) -> None:
        state = self._state
        if state.head_end is None and state.end > self.limits.head_bytes:
            assert self._fd is not None
            state.head_end = last_line_end(self._fd, 0, self.limits.head_bytes)
            state.tail_start = state.punched = state.head_end

    def _trim_tail(self) -> None:
        """Drop the oldest output beyond the tail's bound, a segment or more at a time."""
        state = self._state
        keep = self.limits.max_bytes - self.limits.head_bytes
        if (
            state.head_end is None
            or state.end - state.tail_start <= keep + self.limits.segment_bytes
        ):
            return
        assert self._fd is not None
        start = next_line_start(self._fd, state.end - keep, state.end)
        state.omitted_bytes += start - state.tail_start
        state.tail_start = start
        if self._can_punch:
            self._can_punch = punch_hole(self._fd, state.punched, start - state.punched)
            if self._can_punch:
                state.punched = start

    # -- reading ----------------------------------------------------------------------

    def kept(self) -> Kept:
        with self._lock:
            state = dataclasses.replace(self._state)
            losses = tuple(
                Loss(at=at, bytes=size, since=since, until=until)
                for at, size, since, until in state.losses
            )
        if state.head_end is None:
            return Kept(ranges=((0, state.end),), omitted_bytes=0, losses=losses)
        return Kept(
            ranges=((0, state.head_end), (state.tail_start, state.end)),
            omitted_bytes=state.omitted_bytes,
            losses=losses,
        )

    def read(self, start: int, end: int) -> tuple[int, bytes]:
        """Whole lines from [start, end), about READ_CHUNK bytes of them (more only to finish
        a longer line): (where they start, the bytes). When the tail was trimmed past `start`
        meanwhile, what is left of them starts later, at the new tail."""
        try:
            fd = os.open(self.source_path, os.O_RDONLY)
        except FileNotFoundError:
            return end, b""
        try:
            data = os.pread(fd, min(READ_CHUNK, end - start), start)
            while b"\n" not in data and start + len(data) < end:  # a line longer than a chunk
                more = os.pread(fd, min(READ_CHUNK, end - start - len(data)), start + len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
        data = data[: data.rfind(b"\n") + 1]
        kept = self.kept()  # after the read: a trim that freed these bytes shows here
        if len(kept.ranges) == 2:
            head_end, tail_start = kept.ranges[0][1], kept.ranges[1][0]
            if head_end <= start < tail_start:
                return tail_start, data[tail_start - start :]
        return start, data

    def blocks(
        self, start: int = 0, *, marker: bool = True
    ) -> Iterator[tuple[int, bytes | LogLine]]:
        """The kept log from `start` on: blocks of whole k8s-file lines, with the omission
        marker (a LogLine) where the head ends unless `marker` is false, and a loss marker
        where a full disk cut the output; each with where the log goes on after it."""
        kept = self.kept()
        for index, (first, end) in enumerate(kept.ranges):
            position = max(first, start)
            if index == 1 and kept.omitted_bytes and marker:
                yield position, self.marker()
            for loss in kept.losses:
                if position <= loss.at < end:
                    yield from self._between(position, loss.at)
                    position = loss.resumes
                    yield position, loss.marker()
            yield from self._between(position, end)

    def _between(self, position: int, end: int) -> Iterator[tuple[int, bytes]]:
        while position < end:
            at, data = self.read(position, end)
            if not data and at == position:
                return
            position = at + len(data)
            if data:
                yield position, data

    def lines(self, query: LogQuery) -> Iterator[LogLine]:
        """Every kept line that matches, oldest first, with the marker; once the log is
        finished, a last line without its newline too."""
        joiner = LineJoiner(query)
        for _, block in self.blocks():
            if isinstance(block, LogLine):
                yield block
            else:
                yield from joiner.lines(block)
        if self.finished:
            yield from joiner.ended()

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
