"""The retained log: head kept, tail bounded, rotation of conmon's file followed, lines whole."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from jobd.config import LogLimits
from jobd.logs import LogQuery, RunLog, parse_k8s_line

TS = "2026-11-23T10:00:00.000000000+00:00"


def k8s(text: str, stream: str = "stdout", tag: str = "F") -> bytes:
    return f"{TS} {stream} {tag} {text}\n".encode()


def write(source: Path, data: bytes) -> None:
    with source.open("ab") as f:
        f.write(data)


def rotate(source: Path) -> None:
    """As conmon does: a fresh file renamed over the old one."""
    fresh = source.with_suffix(".tmp")
    fresh.write_bytes(b"")
    os.replace(fresh, source)


def texts(run_log: RunLog, query: LogQuery | None = None) -> list[str]:
    return [line.text for line in run_log.lines(query or LogQuery())]


def test_small_output_is_kept_whole(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one") + k8s("two", "stderr"))
    assert run_log.pump()
    run_log.finish()
    assert texts(run_log) == ["one", "two"]
    assert not run_log.source_path.exists(), "conmon's file is dropped once copied"


def test_partial_lines_are_joined_and_a_cut_last_line_is_kept(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("hel", tag="P") + k8s("lo") + f"{TS} stdout F unfin".encode())
    run_log.pump()
    assert texts(run_log) == ["hello"]
    run_log.finish()
    assert texts(run_log) == ["hello", "unfin"]


def test_a_rotated_source_is_drained_before_the_new_one(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("a"))
    run_log.pump()
    write(run_log.source_path, k8s("b"))
    old = run_log.source_path.open("rb")  # keep the old inode alive, as conmon's rename does
    rotate(run_log.source_path)
    write(run_log.source_path, k8s("c"))
    run_log.pump()
    old.close()
    run_log.finish()
    assert texts(run_log) == ["a", "b", "c"]


def test_the_head_is_kept_the_middle_dropped_with_a_marker_and_the_tail_kept(
    tmp_path: Path,
) -> None:
    limits = LogLimits(max_bytes=4096, head_bytes=1024, segment_bytes=1024)
    run_log = RunLog(tmp_path, limits)
    for n in range(1000):
        write(run_log.source_path, k8s(str(n)))
        if n % 50 == 0:
            run_log.pump()
    run_log.finish()
    lines = texts(run_log)
    assert lines[0] == "0" and lines[-1] == "999"
    marker = next(i for i, t in enumerate(lines) if t.startswith("[jobd]"))
    assert "omitted" in lines[marker] and run_log.omitted_bytes > 0
    numbers = [int(t) for t in lines if not t.startswith("[jobd]")]
    assert numbers == sorted(numbers)
    kept = sum(p.stat().st_size for p in tmp_path.glob("*.log"))
    assert kept <= limits.max_bytes + limits.segment_bytes


def test_pumping_resumes_where_it_stopped_after_a_restart(tmp_path: Path) -> None:
    first = RunLog(tmp_path, LogLimits())
    write(first.source_path, k8s("before"))
    first.pump()
    first.close()
    write(first.source_path, k8s("after"))
    second = RunLog(tmp_path, LogLimits())  # a new daemon: state.json says where to go on
    second.pump()
    second.finish()
    assert texts(second) == ["before", "after"]


def test_queries_filter_by_substring_and_time(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(
        run_log.source_path,
        k8s("apple") + k8s("banana") + b"2026-11-23T11:00:00.000000000+00:00 stdout F cherry\n",
    )
    run_log.finish()
    assert texts(run_log, LogQuery(contains="an")) == ["banana"]
    late = LogQuery(since=datetime.fromisoformat("2026-11-23T10:30:00+00:00"))
    assert texts(run_log, late) == ["cherry"]
    early = LogQuery(until=datetime.fromisoformat("2026-11-23T10:30:00+00:00"), contains="e")
    assert texts(run_log, early) == ["apple"]


def test_k8s_lines_parse() -> None:
    line, complete = parse_k8s_line(b"2026-11-23T10:00:00Z stderr P  spaced text\n")
    assert line is not None and not complete
    assert (line.stream, line.text) == ("stderr", " spaced text")


def test_copied_source_bytes_are_freed_from_disk(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    line = k8s("x" * 1000)
    write(run_log.source_path, line * 6000)  # ~6 MB, more than one punch interval
    run_log.pump()
    source = run_log.source_path.stat()
    assert source.st_size == len(line) * 6000, "the file keeps its size for conmon"
    assert source.st_blocks * 512 < 2 * 1024 * 1024, "but its copied blocks are freed"
    write(run_log.source_path, k8s("after the hole"))
    run_log.finish()
    lines = texts(run_log)
    assert len(lines) == 6001 and lines[-1] == "after the hole"
