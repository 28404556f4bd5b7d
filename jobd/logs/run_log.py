"""Run logs: kept under the data directory, bounded, never silently losing their beginning.

conmon writes each container's output to a k8s-file (`<RFC3339Nano> <stream> <F|P> <text>`),
`logs/<run-id>/container.log`, with no size cap (conmon's cap would throw away the start of the
output). That file *is* the run's log: jobd never copies it. The pump follows how far conmon
has written whole lines and keeps, in `state.json`:

    [0, head_end)            the head: the first `head_bytes` of output, kept forever
    [head_end, tail_start)   dropped: its disk blocks are punched out (FALLOC_FL_PUNCH_HOLE)
    [tail_start, end)        the tail: the newest `max_bytes - head_bytes` of output

The tail is trimmed in steps of `segment_bytes`, always at a line boundary. Readers see the
head, a `[jobd] N bytes omitted` marker line when something was dropped, then the tail. A
pump that only moves offsets costs almost no CPU however fast a job writes: the bytes go from
conmon to the page cache once. The log outlives the container and the daemon.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import errno
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from jobd.config import LogLimits

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


def k8s_text(block: bytes) -> bytes:
    """Whole k8s-file lines as plain output, without a LogLine per line: prefixes stripped,
    partial pieces joined to the line they end in (a piece at the end of a block joins the
    next block's first line)."""
    out: list[bytes] = []
    for raw in block.splitlines(keepends=True):
        parts = raw.split(b" ", 3)
        if len(parts) == 4 and parts[2] == b"F":
            out.append(parts[3])
            continue
        line, complete = parse_k8s_line(raw)  # the uncommon shapes
        if line is not None and not raw.startswith(b"\0"):
            out.append(line.text.encode() + (b"\n" if complete else b""))
    return b"".join(out)


# A raw line that may be a partial piece has this in its first 64 bytes (the parser decides).
# The search for lines to test looks for it anywhere in a line: that finds every line the
# per-line test passes, odd ones too, so results stay as they were; a hit in the text costs
# only a look at that one line.
PIECE_MARK = b" P "


def _has_partial(block: bytes) -> bool:
    return b" stdout P " in block or b" stderr P " in block


class LineJoiner:
    """k8s-file lines to LogLines that match a query, partial (P) pieces joined to the line
    they end in, across the blocks it is given. With a substring to find, a block without it
    (and without partial pieces) is skipped without being split into lines, and in the others
    only the lines that hold it or may be partial pieces are split and tested."""

    def __init__(self, query: LogQuery) -> None:
        self.query = query
        self._needle = query.contains.encode() if query.contains else None
        self._pending: list[LogLine] = []
        # a piece's invalid UTF-8 reads as U+FFFD: only a needle without it matches the
        # joined text exactly when its bytes are in the joined raw text
        self._jump_pieces = query.contains is not None and "\ufffd" not in query.contains

    def lines(self, block: bytes) -> Iterator[LogLine]:
        needle = self._needle
        raws: Iterable[bytes]
        if needle is None:
            raws = block.splitlines(keepends=True)
        else:
            first = block.find(needle)
            if first < 0 and not self._pending and not _has_partial(block):
                return
            lines = self._lines_to_test(block, needle, first)
            # the per-line test as it was (bytes.splitlines also ends a line at a bare \r),
            # only on fewer lines
            raws = (raw for line in lines for raw in line.splitlines(keepends=True))
            raws = (r for r in raws if needle in r or _is_partial(r) or self._pending)
        yield from _parse_lines(raws, self.query, self._pending)

    def _lines_to_test(self, block: bytes, needle: bytes, first: int) -> Iterator[bytes]:
        """The lines of `block` (newline to newline) that can hold a raw line the per-line
        test passes: those with the needle or a piece mark, and each line while a joined
        line waits for its end. The lines between are jumped over with bytes searches:
        conmon writes a P entry about every 8 KB, so nearly every block has one, yet few of
        its lines matter. The parser reads this lazily, so `_pending` is up to date whenever
        it is looked at. `first`: where the needle first occurs (-1: nowhere)."""
        needles, pieces = _Hits(block, needle, first), _Hits(block, PIECE_MARK)
        position = 0
        while position < len(block):
            if not self._pending:
                hit = min(needles.after(position), pieces.after(position))
                if hit == len(block):
                    return
                position = block.rfind(b"\n", 0, hit) + 1
                jump = self._unmatched_pieces_end(block, position, needle)
                if jump and needles.after(position) >= jump:
                    position = jump
                    continue
            end = block.find(b"\n", position) + 1 or len(block)
            yield block[position:end]
            position = end

    def _unmatched_pieces_end(self, block: bytes, start: int, needle: bytes) -> int:
        """Where the partial pieces from `start` end (after the F line that completes them)
        when their joined text cannot hold the needle: the run is jumped over unparsed. 0
        when that is not certain (the run goes on in the next block, an odd line, a needle
        with U+FFFD): the parser decides. The needle is not in any of the lines (the caller
        checks); it could only straddle two pieces."""
        if not self._jump_pieces:
            return 0
        texts: list[bytes] = []
        position = start
        while True:
            end = block.find(b"\n", position) + 1
            if end == 0:
                return 0
            raw = block[position:end]
            parts = raw[:-1].split(b" ", 3)
            if len(parts) < 3 or b"\r" in raw or raw.startswith(b"\0"):
                return 0
            texts.append(parts[3] if len(parts) == 4 else b"")
            position = end
            if parts[2] != b"P":
                return 0 if needle in b"".join(texts) else position


class _Hits:
    """Where a pattern next occurs in a block, searched for again only once passed: a rare
    needle is searched for once a block, not once per P entry."""

    __slots__ = ("at", "block", "pattern")

    def __init__(self, block: bytes, pattern: bytes, first: int | None = None) -> None:
        self.block = block
        self.pattern = pattern
        self.at = block.find(pattern) if first is None else first

    def after(self, position: int) -> int:
        """The first hit at or after `position`; len(block) where there is none."""
        if 0 <= self.at < position:
            self.at = self.block.find(self.pattern, position)
        return len(self.block) if self.at < 0 else self.at


def _parse_lines(
    raws: Iterable[bytes], query: LogQuery, pending: list[LogLine]
) -> Iterator[LogLine]:
    """k8s-file lines to LogLines, partial (P) pieces joined to the line they end in;
    `pending` holds the pieces still waiting for theirs (changed in place)."""
    for raw in raws:
        if raw.startswith(b"\0"):
            continue  # a hole read while it was punched; never whole lines
        line, complete = parse_k8s_line(raw)
        if line is None:
            continue
        if not complete:
            pending.append(line)
            continue
        if pending:
            text = "".join(p.text for p in pending) + line.text
            line = LogLine(time=pending[0].time, stream=line.stream, text=text)
            pending.clear()
        if query.matches(line):
            yield line


class LogFollower:
    """Reads what was appended to a run's log since its last call, a bounded piece at a
    time. It re-opens the log each time: a run that was pending when following began gets
    its live log later."""

    def __init__(
        self, open_log: Callable[[], RunLog], query: LogQuery, *, skip_existing: bool
    ) -> None:
        self.open_log = open_log
        self.joiner = LineJoiner(query)
        self.position = 0
        self.marked = False
        if skip_existing:
            self.position = open_log().kept().ranges[-1][1]
            self.marked = True

    def read(self, budget: int) -> tuple[list[bytes | LogLine], bool]:
        """Blocks of whole k8s-file lines (and the omission marker) appended since the last
        call, about `budget` bytes at most; and whether more may be there already."""
        items: list[bytes | LogLine] = []
        taken = 0
        for position, item in self.open_log().blocks(self.position, marker=not self.marked):
            items.append(item)
            if isinstance(item, LogLine):
                self.marked = True
                continue
            taken += len(item)
            self.position = position
            if taken >= budget:
                return items, True
        return items, False

    def lines(self, items: Iterable[bytes | LogLine]) -> list[LogLine]:
        lines: list[LogLine] = []
        for item in items:
            if isinstance(item, LogLine):
                lines.append(item)
            else:
                lines.extend(self.joiner.lines(item))
        return lines

    def read_new(self) -> list[LogLine]:
        """Every line appended since the last call."""
        lines: list[LogLine] = []
        more = True
        while more:
            items, more = self.read(4 * READ_CHUNK)
            lines += self.lines(items)
        return lines


def _is_partial(raw: bytes) -> bool:
    return PIECE_MARK in raw[:64]


def parse_k8s_line(raw: bytes) -> tuple[LogLine | None, bool]:
    """One k8s-file line: (the line, whether it is complete: F rather than P)."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None, True
    text = parts[3] if len(parts) == 4 else b""
    line = LogLine(
        time=parts[0].decode(errors="replace"),
        stream=parts[1].decode(errors="replace"),
        text=text.decode(errors="replace"),
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

    async def remove(self, run_id: str) -> None:
        """Forget the run's log and delete its directory: its job was deleted."""
        run_log = self._active.pop(run_id, None)
        if run_log is not None:
            run_log.close()
        self._notify(run_id)
        directory = self.directory(run_id)
        if directory.exists():
            await asyncio.to_thread(shutil.rmtree, directory)

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
