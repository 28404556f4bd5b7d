"""Finding a job's marker lines (`::jobd progress 0.42`, domain/progress.py) in what the log pump
has just taken in, without reading the log into Python.

conmon writes each line as `<time> <stream> F <text>`, so a marker line holds ` ::jobd ` right
after its `F` tag. The new bytes are mapped (mmap, straight from the page cache conmon just
wrote them to) and searched with libc's memmem for that needle: a SIMD scan at about 8 GB/s,
where bytes.find manages under 2, and no copy. Only a hit is looked at: its line must start
there (the tag, the stream and the time right before it), then its text is read. Bulk output
without markers costs one memmem pass, about 0.1 s of CPU per GB of log.

conmon writes a line in pieces (`P` entries, then the `F` that ends it) when it straddles one
of its 8 KiB reads, which happens to a few lines in a thousand of fast output. A marker whose
first piece is a `P` entry (the entry before it, of its stream, ended a line) is joined from
its pieces, across pump turns when its end comes later. Two cases are left to chance, each
about one read in ten thousand of fast output: a marker cut within `::jobd ` itself is missed
(neither piece holds the needle), and a later piece of a long line that begins with the marker
is taken for one when the line's earlier piece is out of sight (an `F` piece, or a `P` whose
previous piece lies in an earlier window). A job's next marker makes up for a missed one."""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobd.domain.progress import PREFIX
from jobd.logs.lines import parse_time

NEEDLE = b" " + PREFIX.encode()
WINDOW = 64 * 1024 * 1024  # mapped at a time
MAX_PREFIX = 64  # `<time> <stream>`: longer, and the hit is inside some line's text
MAX_MARKER_BYTES = 4096  # of a marker line's text; a longer one is read this far
MAX_PIECES = 64  # entries looked through for a marker's next piece before giving up on it

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.memmem.restype = ctypes.c_void_p
_libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
_libc.memchr.restype = ctypes.c_void_p
_libc.memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
_libc.memrchr.restype = ctypes.c_void_p
_libc.memrchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_NEWLINE = ord("\n")
_STREAMS = (b"stdout", b"stderr")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerLine:
    at: float  # unix seconds: conmon's time for the line (its first piece's)
    stream: str
    text: str  # starting with PREFIX


@dataclass(slots=True, kw_only=True)
class _Pieces:
    """A marker line begun in a P entry, waiting for the entry that ends it."""

    at: float
    text: bytearray
    looked: int = 0  # entries looked through since


@dataclass(frozen=True, slots=True)
class _Entry:
    """One k8s-file entry's header, and where its text starts and its line ends."""

    time: bytes
    stream: bytes
    whole: bool  # F, not P
    text: int  # address
    end: int  # address of its newline (or the window's end)


@dataclass(slots=True)
class MarkerScanner:
    """One run's marker lines, found in the bytes the pump takes in, turn after turn."""

    _pieces: dict[bytes, _Pieces] = field(default_factory=dict)  # by stream

    def scan(self, path: Path, start: int, end: int) -> list[MarkerLine]:
        """The marker lines of the k8s-file at `path` in [start, end), which begins and ends
        at line boundaries (the pump's whole lines). Holes punched out of the log read as
        zeros and hold none."""
        if end <= start:
            return []
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        found: list[MarkerLine] = []
        try:
            position = start
            while position < end:
                position = self._window(fd, position, end, found)
        finally:
            os.close(fd)
        return found

    def _window(self, fd: int, start: int, end: int, found: list[MarkerLine]) -> int:
        """The marker lines of one mapped window from `start`, added to `found`; where the
        next window starts (a line boundary: the window's last newline, or `end`)."""
        base = start - start % mmap.PAGESIZE
        length = min(end, start + WINDOW) - base
        address = _libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, base)
        if address in (None, _MAP_FAILED):
            error = ctypes.get_errno()
            raise OSError(error, f"mapping the log: {os.strerror(error)}")
        try:
            first = address + (start - base)
            stop = address + length
            if base + length < end:  # a window short of the end stops after its last newline
                last = _libc.memrchr(first, _NEWLINE, stop - first)
                stop = last + 1 if last else stop
            found.extend(self._lines(address, first, stop))
            return int(base + (stop - address))
        finally:
            _libc.munmap(address, length)

    def _lines(self, mapped: int, first: int, stop: int) -> Iterator[MarkerLine]:
        """The marker lines in [first, stop): each needle hit's, and while a marker waits for
        its next piece, each entry's in turn."""
        position = first
        while position < stop:
            if self._pieces:
                entry = _entry(position, stop)
                position = (entry.end if entry else _line_end(position, stop)) + 1
                if entry is not None:
                    yield from self._next_entry(mapped, entry)
                continue
            hit = _libc.memmem(position, stop - position, NEEDLE, len(NEEDLE))
            if not hit:
                return
            line_end = _line_end(hit, stop)
            position = line_end + 1
            entry = _marker_entry(first, hit, line_end)
            if entry is not None:
                yield from self._marker_starts(mapped, entry)

    def _next_entry(self, mapped: int, entry: _Entry) -> Iterator[MarkerLine]:
        """An entry after a marker's first piece: its stream's next piece, another marker's
        first, or neither (a marker that waited too long for its next piece is dropped)."""
        pieces = self._pieces.get(entry.stream)
        if pieces is not None:
            pieces.text += _text(entry)[: max(MAX_MARKER_BYTES - len(pieces.text), 0)]
            if entry.whole:
                del self._pieces[entry.stream]
                yield _marker(pieces.at, entry.stream, bytes(pieces.text))
            return
        for stream, waiting in list(self._pieces.items()):
            waiting.looked += 1
            if waiting.looked > MAX_PIECES:
                del self._pieces[stream]
        if ctypes.string_at(entry.text, len(NEEDLE) - 1) == NEEDLE[1:]:
            yield from self._marker_starts(mapped, entry)

    def _marker_starts(self, mapped: int, entry: _Entry) -> Iterator[MarkerLine]:
        """An entry whose text is a marker's: the whole line, or its first piece."""
        at = _time(entry.time)
        if not at:
            return
        if entry.whole:
            yield _marker(at, entry.stream, _text(entry))
        elif not _continues(mapped, entry):
            self._pieces[entry.stream] = _Pieces(at=at, text=bytearray(_text(entry)))


def _line_end(position: int, stop: int) -> int:
    found = _libc.memchr(position, _NEWLINE, stop - position)
    return int(found) if found else stop


def _entry(line_start: int, stop: int) -> _Entry | None:
    """The entry whose line starts at `line_start`; None for a line that is not one."""
    line_end = _line_end(line_start, stop)
    head = ctypes.string_at(line_start, min(MAX_PREFIX + 3, line_end - line_start))
    parts = head.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in _STREAMS or parts[2] not in (b"F", b"P"):
        return None
    text = line_start + len(parts[0]) + len(parts[1]) + len(parts[2]) + 3
    return _Entry(parts[0], parts[1], parts[2] == b"F", min(text, line_end), line_end)


def _marker_entry(first: int, hit: int, line_end: int) -> _Entry | None:
    """The entry a needle hit begins the text of; None when the hit is inside some text."""
    if hit - first < 2 or ctypes.string_at(hit - 2, 2) not in (b" F", b" P"):
        return None
    reach = min(MAX_PREFIX, hit - first)
    before = ctypes.string_at(hit - reach, reach)
    # a line starts after a newline, or after a hole punched out of the log (zeros)
    cut = max(before.rfind(b"\n"), before.rfind(b"\0"))
    if cut < 0 and reach == MAX_PREFIX:
        return None  # no line starts close enough before it
    line_start = hit - reach + cut + 1
    entry = _entry(line_start, line_end + 1)
    if entry is None or entry.text != hit + 1:
        return None
    return entry


def _continues(mapped: int, entry: _Entry) -> bool:
    """Whether a P entry goes on a line its stream began before: the entry before it (as
    far as the mapping reaches back) is one of its stream's P entries."""
    line_start = entry.text - len(entry.time) - len(entry.stream) - 4
    if line_start - 1 <= mapped:
        return False
    reach = min(MAX_MARKER_BYTES, line_start - 1 - mapped)
    newline = _libc.memrchr(line_start - 1 - reach, _NEWLINE, reach)
    if newline is None and reach < MAX_MARKER_BYTES:
        previous_start = mapped
    elif newline is None:
        return False  # a line too long to see where it started
    else:
        previous_start = newline + 1
    previous = _entry(previous_start, line_start)
    return previous is not None and previous.stream == entry.stream and not previous.whole


def _text(entry: _Entry) -> bytes:
    return ctypes.string_at(entry.text, min(entry.end - entry.text, MAX_MARKER_BYTES))


def _time(stamp: bytes) -> float:
    moment = parse_time(stamp.decode(errors="replace"))
    return moment.timestamp() if moment is not None else 0.0


def _marker(at: float, stream: bytes, text: bytes) -> MarkerLine:
    line = text.decode(errors="replace").rstrip("\r")
    return MarkerLine(at=at, stream=stream.decode(), text=line)
