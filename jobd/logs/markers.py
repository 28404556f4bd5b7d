"""Finding a job's marker lines (`::jobd progress 0.42`, domain/progress.py) in what the log pump
has just taken in, without reading the log into Python.

conmon writes each line as `<time> <stream> F <text>`, so a marker line holds ` ::jobd ` right
after its `F` tag. The new bytes are read a megabyte at a time into a buffer (which stays in
the CPU's cache) and searched there for that needle with glibc's strstr, which is SIMD (the
needle itself, put after the read's last newline, ends its search in one pass; past a NUL
byte a job printed, which stops it short, memmem takes over).
From a hit's line on, CHUNK bytes are copied and read in Python, so a bunch of markers costs
one call into libc, not several per line. A hit counts when its line starts there: the tag,
the stream and the time right before it.

The cost is reading every byte of output once, which the pump did not do before (it only
moved offsets): about 0.17 s of CPU per GB of log (k8s-file lines, twice the output) on a
2-core VM while the job itself writes, most of it the copy out of the page cache; mapping the
file instead costs more (page faults and page-table teardown), and memmem or bytes.find are
slower searches than strstr.

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
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobd.domain.progress import PREFIX
from jobd.logs.lines import parse_time

_PREFIX = PREFIX.encode()
NEEDLE = b" " + _PREFIX
_SENTINEL = NEEDLE + b"\0"  # after a window's last newline: strstr's search always ends in a hit
READ = 1024 * 1024  # read at a time, into a buffer of the pump thread's
MAX_PREFIX = 64  # `<time> <stream>`: longer, and the hit is inside some line's text
MAX_MARKER_BYTES = 4096  # of a marker line's text; a longer one is read this far
MAX_PIECES = 64  # entries looked through for a marker's next piece before giving up on it
CHUNK = 64 * 1024  # from a hit on, copied into Python and read there (markers come in bunches)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.memmem.restype = ctypes.c_void_p
_libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
_libc.strstr.restype = ctypes.c_void_p
_libc.strstr.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
_libc.memchr.restype = ctypes.c_void_p
_libc.memchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
_libc.memrchr.restype = ctypes.c_void_p
_libc.memrchr.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
_thread = threading.local()  # each pump thread's buffer
_NEWLINE = ord("\n")
_STREAMS = (b"stdout", b"stderr")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkerLine:
    stamp: str  # conmon's time for the line (its first piece's), RFC 3339
    stream: str
    text: str  # starting with PREFIX

    @property
    def at(self) -> float:
        """Unix seconds (parsed only for the lines a run's progress takes in); 0 if unreadable."""
        moment = parse_time(self.stamp)
        return moment.timestamp() if moment is not None else 0.0


@dataclass(slots=True, kw_only=True)
class _Pieces:
    """A marker line begun in a P entry, waiting for the entry that ends it."""

    stamp: bytes
    text: bytearray
    looked: int = 0  # entries looked through since


@dataclass(frozen=True, slots=True)
class _Entry:
    """One k8s-file entry: its time, stream, whether it ends a line (F, not P), its text."""

    stamp: bytes
    stream: bytes
    whole: bool
    text: bytes

    @classmethod
    def parse(cls, line: bytes) -> _Entry | None:
        parts = line.split(b" ", 3)
        if len(parts) < 3 or parts[1] not in _STREAMS or parts[2] not in (b"F", b"P"):
            return None
        text = parts[3][:MAX_MARKER_BYTES] if len(parts) == 4 else b""
        return cls(parts[0], parts[1], parts[2] == b"F", text)

    @property
    def is_marker(self) -> bool:
        return self.text.startswith(_PREFIX)


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
        """The marker lines of one read from `start` (up to READ bytes, to its last newline),
        added to `found`; where the next read starts."""
        buffer = _buffer()
        address = ctypes.addressof(buffer)
        size = os.preadv(fd, [memoryview(buffer)[: min(READ, end - start)]], start)
        if size <= 0:
            return end
        stop = address + size
        if start + size < end:  # a read short of the end stops after its last newline
            last = _libc.memrchr(address, _NEWLINE, size)
            stop = last + 1 if last else stop
        ctypes.memmove(stop, _SENTINEL, len(_SENTINEL))  # where strstr's search ends
        found.extend(self._lines(address, stop - 1))
        return int(start + (stop - address))

    def _lines(self, first: int, stop: int) -> Iterator[MarkerLine]:
        """The marker lines in the buffer's [first, stop): from each needle hit's line on,
        CHUNK bytes (to a line's end) are copied and read in Python, where the next hits of
        a bunch are found without another call into libc."""
        position = first
        while position < stop:
            if not self._pieces:
                hit = _find(position, stop)
                if hit is None:
                    return
                position = _line_start(first, hit)
            end = _line_end(min(position + CHUNK, stop), stop)
            back = max(first, position - MAX_MARKER_BYTES)
            chunk = ctypes.string_at(position, end - position)
            yield from self._chunk(chunk, ctypes.string_at(back, position - back))
            position = end + 1

    def _chunk(self, data: bytes, before: bytes) -> Iterator[MarkerLine]:
        """The marker lines of `data`, which starts at a line's start (`before`: what the
        buffer holds before it, for the entry before its first line)."""
        position = 0
        while position < len(data):
            if self._pieces:  # each entry in turn, until the marker's last piece
                line_end = _end_in(data, position)
                entry = _Entry.parse(data[position:line_end])
                position = line_end + 1
                if entry is not None:
                    yield from self._next_entry(entry, data, before)
                continue
            hit = data.find(NEEDLE, position)
            if hit < 0:
                return
            line_end = _end_in(data, hit)
            line_start = _start_in(data, hit)
            position = line_end + 1
            if line_start is None:
                continue  # no line starts close enough before it: the needle is in some text
            if data[hit - 2 : hit] not in (b" F", b" P"):
                continue
            entry = _Entry.parse(data[line_start:line_end])
            if entry is None or not entry.is_marker:
                continue
            if entry.whole:
                yield _marker(entry.stamp, entry.stream, entry.text)
            else:
                self._first_piece(entry, _previous(data, line_start, before))

    def _next_entry(self, entry: _Entry, data: bytes, before: bytes) -> Iterator[MarkerLine]:
        """An entry after a marker's first piece: its stream's next piece, another marker's
        first, or neither (a marker that waited too long for its next piece is dropped)."""
        pieces = self._pieces.get(entry.stream)
        if pieces is not None:
            pieces.text += entry.text[: max(MAX_MARKER_BYTES - len(pieces.text), 0)]
            if entry.whole:
                del self._pieces[entry.stream]
                yield _marker(pieces.stamp, entry.stream, bytes(pieces.text))
            return
        for stream, waiting in list(self._pieces.items()):
            waiting.looked += 1
            if waiting.looked > MAX_PIECES:
                del self._pieces[stream]
        if entry.is_marker and entry.whole:
            yield _marker(entry.stamp, entry.stream, entry.text)
        elif entry.is_marker:
            self._first_piece(entry, None)

    def _first_piece(self, entry: _Entry, previous: _Entry | None) -> None:
        """A P entry whose text is a marker's: its first piece, unless the entry before it
        is a piece of its stream's (then it goes on some line)."""
        if previous is None or previous.stream != entry.stream or previous.whole:
            self._pieces[entry.stream] = _Pieces(stamp=entry.stamp, text=bytearray(entry.text))


def _buffer() -> ctypes.Array[ctypes.c_char]:
    buffer: ctypes.Array[ctypes.c_char] | None = getattr(_thread, "buffer", None)
    if buffer is None:
        buffer = _thread.buffer = ctypes.create_string_buffer(READ + len(_SENTINEL))
    return buffer


def _find(position: int, stop: int) -> int | None:
    """The first needle in [position, stop), where `stop` is the window's last byte (its
    last newline, unless one line outgrew the read) and the sentinel follows it: strstr,
    SIMD in glibc (about 0.04 s of CPU per GB, where memmem takes 0.1 to 0.16), which finds
    the sentinel when the window holds no needle, so no second pass looks for NUL bytes;
    only when one stops it (a job printed one, strstr gives NULL) does memmem search past
    it."""
    hit = _libc.strstr(position, NEEDLE)
    if hit:
        return int(hit) if hit < stop else None
    zero = _libc.memchr(position, 0, stop - position)
    if not zero:
        return None
    found = _libc.memmem(zero, stop - zero, NEEDLE, len(NEEDLE))
    return int(found) if found else None


def _line_start(first: int, hit: int) -> int:
    """Where the line of a hit at `hit` starts, as far back as MAX_PREFIX (else `hit`, which
    the chunk's reader then finds in no line's header)."""
    reach = min(MAX_PREFIX, hit - first)
    before = ctypes.string_at(hit - reach, reach)
    cut = max(before.rfind(b"\n"), before.rfind(b"\0"))  # a hole's zeros end a line too
    if cut < 0:
        return first if reach < MAX_PREFIX else hit
    return hit - reach + cut + 1


def _line_end(position: int, stop: int) -> int:
    found = _libc.memchr(position, _NEWLINE, stop - position)
    return int(found) if found else stop


def _end_in(data: bytes, position: int) -> int:
    end = data.find(b"\n", position)
    return end if end >= 0 else len(data)


def _start_in(data: bytes, hit: int) -> int | None:
    """Where the line holding a needle at `hit` starts; None when no line starts within
    MAX_PREFIX before it (the chunk itself starts at a line's start)."""
    low = max(0, hit - MAX_PREFIX)
    cut = max(data.rfind(b"\n", low, hit), data.rfind(b"\0", low, hit))
    if cut >= 0:
        return cut + 1
    return 0 if low == 0 else None


def _previous(data: bytes, line_start: int, before: bytes) -> _Entry | None:
    """The entry on the line before the one at `line_start` (in `data`, or at the end of
    `before` for the chunk's first line); None when it can't be seen."""
    if line_start > 0:
        return _Entry.parse(data[data.rfind(b"\n", 0, line_start - 1) + 1 : line_start - 1])
    if not before.endswith(b"\n"):
        return None
    cut = before.rfind(b"\n", 0, len(before) - 1)
    return _Entry.parse(before[cut + 1 : -1]) if cut >= 0 else None


def _marker(stamp: bytes, stream: bytes, text: bytes) -> MarkerLine:
    line = text.decode(errors="replace").rstrip("\r")
    return MarkerLine(stamp=stamp.decode(errors="replace"), stream=stream.decode(), text=line)
