"""One run's log, kept under the data directory: conmon's k8s-file itself, with the head
kept forever, the middle punched out, and a bounded tail (jobd/logs/__init__.py draws it)."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from jobd.config import LogLimits
from jobd.logs.lines import LineJoiner, LogLine, LogQuery

log = logging.getLogger(__name__)
SOURCE_NAME = "container.log"
READ_CHUNK = 1024 * 1024  # readers take the log in pieces of about this size
SCAN_WINDOW = 64 * 1024  # looking for a line boundary: read this much at a time
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
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


@dataclass(frozen=True, slots=True)
class Kept:
    """What a reader may read now: byte ranges of the file, the marker between them."""

    ranges: tuple[tuple[int, int], ...]
    omitted_bytes: int


class RunLog:
    """One run's log. The pump and readers may be in different threads."""

    def __init__(self, directory: Path, limits: LogLimits) -> None:
        self.directory = directory
        self.limits = limits
        self._lock = threading.Lock()
        self._state = self._load()
        self._fd: int | None = None  # conmon's file, open for pumping
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

    # -- the pump ---------------------------------------------------------------------

    @property
    def taken(self) -> int:
        """How far into conmon's file this log has taken whole lines (bytes)."""
        return self._state.end

    def pump(self) -> bool:
        """Take in the whole lines conmon wrote since the last call. Whether any came."""
        with self._lock:
            if self._state.finished or not self._open_source():
                return False
            assert self._fd is not None
            return self._advance(os.fstat(self._fd).st_size)

    def finish(self) -> None:
        """The container has exited: take in the rest (a last line without its newline gets
        one) and close the log."""
        with self._lock:
            if self._state.finished:
                return
            if self._open_source():
                assert self._fd is not None
                size = os.fstat(self._fd).st_size
                self._advance(size)
                if size > self._state.end:  # conmon's last line, cut short
                    os.pwrite(self._fd, b"\n", size)
                    self._advance(size + 1)
            self._state.finished = True
            self._save()
            self._close_source()

    def close(self) -> None:
        """Let go of conmon's file without finishing (the daemon is stopping; the next start
        resumes from state.json)."""
        with self._lock:
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
        self._fill_head()
        self._trim_tail()
        self._save()
        return True

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
        if state.head_end is None:
            return Kept(ranges=((0, state.end),), omitted_bytes=0)
        return Kept(
            ranges=((0, state.head_end), (state.tail_start, state.end)),
            omitted_bytes=state.omitted_bytes,
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
        marker (a LogLine) where the head ends unless `marker` is false; each with where
        the log goes on after it."""
        kept = self.kept()
        for index, (first, end) in enumerate(kept.ranges):
            position = max(first, start)
            if index == 1 and kept.omitted_bytes and marker:
                yield position, self.marker()
            while position < end:
                at, data = self.read(position, end)
                position = at + len(data)
                if data:
                    yield position, data

    def lines(self, query: LogQuery) -> Iterator[LogLine]:
        """Every kept line that matches, oldest first, with the marker."""
        joiner = LineJoiner(query)
        for _, block in self.blocks():
            if isinstance(block, LogLine):
                yield block
            else:
                yield from joiner.lines(block)

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
