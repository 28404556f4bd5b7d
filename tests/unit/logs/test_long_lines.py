"""A line of any length costs a reader no more than MAX_LINE_CHARS: its partial pieces are
kept up to that much, the rest counted and said in a marker at the cut."""

from __future__ import annotations

from jobd.logs.lines import MAX_LINE_CHARS, LineJoiner, LogQuery

T = b"2026-12-03T10:00:00.000000000+00:00"


def pieces(text: bytes, size: int = 8192) -> bytes:
    """One long line as conmon writes it: P pieces, then the F entry that ends it."""
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    entries = [T + b" stdout P " + c + b"\n" for c in chunks[:-1]]
    return b"".join(entries) + T + b" stdout F " + chunks[-1] + b"\n"


def test_a_long_line_is_cut_with_a_marker_and_the_next_is_whole() -> None:
    long = b"x" * (MAX_LINE_CHARS * 5 + 17)
    block = pieces(long) + T + b" stdout F after\n"
    joiner = LineJoiner(LogQuery())
    cut, after = list(joiner.lines(block))
    assert cut.text.startswith("x" * MAX_LINE_CHARS)
    assert cut.text.endswith(
        f"[jobd: line cut here; {len(long) - MAX_LINE_CHARS} more characters not shown]"
    )
    assert len(cut.text) < MAX_LINE_CHARS + 100 and after.text == "after"


def test_a_cut_line_spanning_blocks_stays_bounded() -> None:
    joiner = LineJoiner(LogQuery())
    piece = T + b" stdout P " + b"y" * 8192 + b"\n"
    for _ in range(100):  # 800 KiB of one line, block by block
        assert list(joiner.lines(piece * 10)) == []
    (line,) = list(joiner.lines(T + b" stdout F end\n"))
    assert len(line.text) < MAX_LINE_CHARS + 100 and "more characters not shown" in line.text


def test_a_short_line_is_untouched() -> None:
    (line,) = list(LineJoiner(LogQuery()).lines(pieces(b"z" * 20000)))
    assert line.text == "z" * 20000
