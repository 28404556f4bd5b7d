"""Partial (P) pieces and the lines they end in: a stdout piece ends in stdout's next line,
whatever stderr wrote meanwhile, and output that did not end in a newline is still a line
once the log has ended."""

from __future__ import annotations

from jobd.logs.lines import LineJoiner, LogQuery

T = "2026-12-04T05:00:00.000000001+00:00"


def block(*entries: tuple[str, str, str]) -> bytes:
    return b"".join(f"{T} {stream} {flag} {text}\n".encode() for stream, flag, text in entries)


def test_a_piece_ends_in_its_own_streams_line() -> None:
    joiner = LineJoiner(LogQuery())
    lines = list(
        joiner.lines(block(("stdout", "P", "tw"), ("stderr", "F", "three"), ("stdout", "F", "o")))
    )
    assert [(line.stream, line.text) for line in lines] == [("stderr", "three"), ("stdout", "two")]


def test_the_last_pieces_of_an_ended_log_are_a_line() -> None:
    joiner = LineJoiner(LogQuery())
    assert list(joiner.lines(block(("stdout", "F", "one"), ("stdout", "P", "no newline")))) != []
    assert [(line.stream, line.text) for line in joiner.ended()] == [("stdout", "no newline")]
    assert list(joiner.ended()) == []  # once


def test_a_search_sees_a_needle_across_pieces_with_another_stream_between() -> None:
    joiner = LineJoiner(LogQuery(contains="needle"))
    lines = list(
        joiner.lines(
            block(("stdout", "P", "nee"), ("stderr", "F", "other"), ("stdout", "F", "dle here"))
        )
    )
    assert [(line.stream, line.text) for line in lines] == [("stdout", "needle here")]


def test_ended_lines_are_filtered_by_the_query() -> None:
    joiner = LineJoiner(LogQuery(contains="keep"))
    list(joiner.lines(block(("stdout", "P", "drop me"), ("stderr", "P", "keep me"))))
    assert [line.text for line in joiner.ended()] == ["keep me"]
