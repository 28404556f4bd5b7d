"""A run's newest log lines within a byte budget, read from the log's end: whole lines, in
order, as many as fit; partial pieces joined; the head, the omission marker and the tail of a
bounded log in their places."""

from __future__ import annotations

from pathlib import Path

from jobd.config.tables import LogLimits
from jobd.logs.lines import LogQuery
from jobd.logs.newest import newest_lines
from jobd.logs.run_log import RunLog
from tests.unit.logs.test_logs import k8s, write


def texts(run_log: RunLog, budget: int) -> tuple[list[str], bool]:
    lines, left_out = newest_lines(run_log, budget)
    return [line.text for line in lines], left_out


def every(run_log: RunLog) -> list[str]:
    return [line.text for line in run_log.lines(LogQuery())]


def test_the_newest_lines_that_fit_are_read_whole_and_in_order(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, b"".join(k8s(f"line {n:05d}") for n in range(20_000)))
    run_log.pump()
    run_log.finish()
    for budget in (1, 10, 11, 100, 4096, 65536):
        got, left_out = texts(run_log, budget)
        assert left_out
        assert got == every(run_log)[len(every(run_log)) - len(got) :]
        assert len(got) == budget // 10, budget  # each line's text is 10 bytes
    whole, left_out = texts(run_log, 10 * 20_000)
    assert whole == every(run_log) and not left_out


def test_an_empty_or_missing_log_has_no_lines(tmp_path: Path) -> None:
    assert newest_lines(RunLog(tmp_path / "none", LogLimits()), 100) == ([], False)


def test_partial_pieces_are_joined_and_a_last_unfinished_line_counts(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    pieces = b"".join(k8s("x" * 100, tag="P") for _ in range(50)) + k8s("end")
    write(run_log.source_path, k8s("first") + pieces + b"2026-11-23T10:00:00Z stderr F tail")
    run_log.pump()
    assert texts(run_log, 10_000) == (["first", "x" * 5000 + "end"], False)
    assert texts(run_log, 5003) == (["x" * 5000 + "end"], True)
    run_log.finish()
    assert texts(run_log, 5007) == (["x" * 5000 + "end", "tail"], True)


def test_a_bounded_log_keeps_its_marker_between_head_and_tail(tmp_path: Path) -> None:
    limits = LogLimits(max_bytes=4096, head_bytes=1024, segment_bytes=1024)
    run_log = RunLog(tmp_path, limits)
    for n in range(1000):
        write(run_log.source_path, k8s(f"{n:04d}"))
        run_log.pump()
    run_log.finish()
    kept = every(run_log)
    assert any(text.startswith("[jobd]") for text in kept), "the middle was dropped"
    tail = kept[kept.index(next(t for t in kept if t.startswith("[jobd]"))) + 1 :]
    got, left_out = texts(run_log, 4 * len(tail))
    assert (got, left_out) == (tail, True), "the tail alone, without the marker"
    whole, left_out = texts(run_log, 1_000_000)
    assert (whole, left_out) == (kept, False), "head, marker and tail"
