"""Reading k8s-file lines (`<RFC3339Nano> <stdout|stderr> <F|P> <text>`): parsing them, joining
partial (P) pieces to the line they end in, filtering by a query, and as plain text."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime


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
        self._pending = Pending()
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

    def ended(self) -> Iterator[LogLine]:
        """The log has ended: the pieces of a last line without its newline, as lines."""
        yield from (line for line in self._pending.ended() if self.query.matches(line))

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
        stream = b""
        position = start
        while True:
            end = block.find(b"\n", position) + 1
            if end == 0:
                return 0
            raw = block[position:end]
            parts = raw[:-1].split(b" ", 3)
            if len(parts) < 3 or b"\r" in raw or raw.startswith(b"\0"):
                return 0
            if texts and parts[1] != stream:  # another stream's line between the pieces
                return 0
            stream = parts[1]
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


MAX_LINE_CHARS = 64 * 1024  # of one line's text; the rest is counted, not kept


class Pending:
    """The partial (P) pieces of lines not ended yet, by stream (stdout's pieces end in a
    stdout line, whatever stderr wrote meanwhile), up to MAX_LINE_CHARS of a line's text;
    beyond that only their length is counted, so a reader's memory stays flat whatever the
    line's length (a 300 MB line is 64 KiB and a marker)."""

    __slots__ = ("cut", "kept", "lines")

    def __init__(self) -> None:
        self.lines: dict[str, list[LogLine]] = {}
        self.kept: dict[str, int] = {}  # characters of text held
        self.cut: dict[str, int] = {}  # characters left out

    def __bool__(self) -> bool:
        return bool(self.lines)

    def holds(self, stream: str) -> bool:
        return stream in self.lines

    def add(self, line: LogLine) -> None:
        stream = line.stream
        kept = self.kept.get(stream, 0)
        room = MAX_LINE_CHARS - kept
        if len(line.text) > room:
            self.cut[stream] = self.cut.get(stream, 0) + len(line.text) - max(room, 0)
            line = LogLine(time=line.time, stream=stream, text=line.text[: max(room, 0)])
        self.kept[stream] = kept + len(line.text)
        self.lines.setdefault(stream, []).append(line)

    def joined(self, last: LogLine) -> LogLine:
        """The whole line the pieces of its stream and `last` (its F entry) make; cut with
        a marker."""
        self.add(last)
        pieces = self.lines.pop(last.stream)
        self.kept.pop(last.stream, None)
        cut = self.cut.pop(last.stream, 0)
        text = "".join(p.text for p in pieces)
        if cut:
            text += f" [jobd: line cut here; {cut} more characters not shown]"
        return LogLine(time=pieces[0].time, stream=last.stream, text=text)

    def ended(self) -> list[LogLine]:
        """The log has ended: each stream's last pieces, which no F entry will end (output
        that did not end in a newline), as the lines they are."""
        return [
            self.joined(LogLine(time=pieces[-1].time, stream=stream, text=""))
            for stream, pieces in list(self.lines.items())
        ]


def _parse_lines(raws: Iterable[bytes], query: LogQuery, pending: Pending) -> Iterator[LogLine]:
    """k8s-file lines to LogLines, partial (P) pieces joined to the line they end in;
    `pending` holds the pieces still waiting for theirs (changed in place)."""
    for raw in raws:
        if raw.startswith(b"\0"):
            continue  # a hole read while it was punched; never whole lines
        line, complete = parse_k8s_line(raw)
        if line is None:
            continue
        if not complete:
            pending.add(line)
            continue
        if pending.holds(line.stream) or len(line.text) > MAX_LINE_CHARS:
            line = pending.joined(line)
        if query.matches(line):
            yield line


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
