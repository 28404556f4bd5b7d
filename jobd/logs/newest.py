"""The newest lines of a run's log within a byte budget, read from its end (a run read with
`include=logs`): the last 64 KiB of a 100 MiB log take a read of about that much, not of the
whole log."""

from __future__ import annotations

import os
from collections.abc import Iterator

from jobd.logs.lines import LineJoiner, LogLine, LogQuery
from jobd.logs.run_log import Kept, RunLog, next_line_start

FIRST_WINDOW = 4096  # bytes of the file read beyond twice the budget, the first time


def newest_lines(run_log: RunLog, budget: int) -> tuple[list[LogLine], bool]:
    """The newest lines whose texts add up to at most `budget` bytes (UTF-8), oldest first,
    and whether older lines were left out. The file is read from a window before its end,
    widened until the window holds more than the budget or reaches the log's start."""
    kept = run_log.kept()
    first, end = kept.ranges[0][0], kept.ranges[-1][1]
    window = 2 * budget + FIRST_WINDOW
    while True:
        start = _line_start(run_log, kept, max(first, end - window))
        lines = list(_lines_from(run_log, kept, start))
        chosen: list[LogLine] = []
        size = 0
        for line in reversed(lines):
            size += len(line.text.encode())
            if size > budget:
                # the window's first line may lack its earlier partial pieces: it is one of
                # those left out whenever the window did not start at the log's start
                return chosen[::-1], True
            chosen.append(line)
        if start <= first:
            return chosen[::-1], False
        window *= 4


def _line_start(run_log: RunLog, kept: Kept, position: int) -> int:
    """Where the first whole line of the kept log at or after `position` begins."""
    if position <= kept.ranges[0][0]:
        return kept.ranges[0][0]
    if len(kept.ranges) == 2:
        head_end, tail_start = kept.ranges[0][1], kept.ranges[1][0]
        if head_end <= position <= tail_start:  # in what was punched out: the tail's start
            return tail_start
    try:
        fd = os.open(run_log.source_path, os.O_RDONLY)
    except FileNotFoundError:
        return position
    try:
        return next_line_start(fd, position, kept.ranges[-1][1])
    finally:
        os.close(fd)


def _lines_from(run_log: RunLog, kept: Kept, start: int) -> Iterator[LogLine]:
    """Every kept line from `start` (a line's start) on, with the omission marker only when
    `start` is before the kept tail, and a last line without its newline once finished."""
    joiner = LineJoiner(LogQuery())
    marker = len(kept.ranges) < 2 or start <= kept.ranges[1][0]
    for _, block in run_log.blocks(start, marker=marker):
        if isinstance(block, LogLine):
            yield block
        else:
            yield from joiner.lines(block)
    if run_log.finished:
        yield from joiner.ended()
