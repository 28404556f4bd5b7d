"""The run log: conmon's file kept in place, head kept, tail bounded by punching out the middle,
lines whole, readers and followers reading it in bounded pieces."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from jobd.config import LogLimits
from jobd.logs import LogFollower, LogQuery, RunLog, k8s_text, parse_k8s_line

TS = "2026-11-23T10:00:00.000000000+00:00"


def k8s(text: str, stream: str = "stdout", tag: str = "F") -> bytes:
    return f"{TS} {stream} {tag} {text}\n".encode()


def write(source: Path, data: bytes) -> None:
    with source.open("ab") as f:
        f.write(data)


def texts(run_log: RunLog, query: LogQuery | None = None) -> list[str]:
    return [line.text for line in run_log.lines(query or LogQuery())]


def test_small_output_is_kept_whole(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one") + k8s("two", "stderr"))
    assert run_log.pump()
    run_log.finish()
    assert texts(run_log) == ["one", "two"]
    assert run_log.source_path.exists(), "conmon's file is the log: nothing was copied"


def test_partial_lines_are_joined_and_a_cut_last_line_is_kept(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("hel", tag="P") + k8s("lo") + f"{TS} stdout F unfin".encode())
    run_log.pump()
    assert texts(run_log) == ["hello"]
    run_log.finish()
    assert texts(run_log) == ["hello", "unfin"]


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
    kept = sum(end - start for start, end in run_log.kept().ranges)
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


def test_dropped_bytes_are_freed_from_disk(tmp_path: Path) -> None:
    limits = LogLimits(max_bytes=2 * 2**20, head_bytes=2**16, segment_bytes=2**18)
    run_log = RunLog(tmp_path, limits)
    line = k8s("x" * 1000)
    write(run_log.source_path, line * 6000)  # ~6 MB: three times what is kept
    run_log.pump()
    source = run_log.source_path.stat()
    assert source.st_size == len(line) * 6000, "the file keeps its size for conmon"
    assert source.st_blocks * 512 < 3 * 2**20, "but the dropped middle is freed"
    write(run_log.source_path, k8s("after the hole"))
    run_log.finish()
    lines = texts(run_log)
    assert lines[-1] == "after the hole" and lines[0] == "x" * 1000
    assert all(t == "x" * 1000 for t in lines[1:-1] if not t.startswith("[jobd]"))
    assert run_log.omitted_bytes > 3 * 2**20


def test_plain_text_of_blocks_matches_the_lines(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    pieces = [k8s("a"), k8s("hel", tag="P"), k8s("lo"), k8s("", "stderr"), k8s("x y", tag="P")]
    write(run_log.source_path, b"".join(pieces) + k8s(" z"))
    run_log.finish()
    text = b"".join(k8s_text(b) for _, b in run_log.blocks() if isinstance(b, bytes))
    assert text.decode().splitlines() == texts(run_log) == ["a", "hello", "", "x y z"]
    # a partial piece at the end of one block joins the first line of the next
    assert k8s_text(k8s("ab", tag="P")) + k8s_text(k8s("c")) == b"abc\n"


def test_a_follower_reads_in_bounded_pieces_and_joins_pieces_across_them(
    tmp_path: Path,
) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    follower = LogFollower(lambda: run_log, LogQuery(), skip_existing=False)
    write(run_log.source_path, k8s("start", tag="P"))
    run_log.pump()
    assert follower.read_new() == []  # the piece waits for the rest of its line
    write(run_log.source_path, k8s("ed") + k8s("y" * 5000) * 1000)
    run_log.pump()
    items, more = follower.read(budget=100_000)
    assert more and sum(len(i) for i in items if isinstance(i, bytes)) < 2 * 2**20
    lines = follower.lines(items) + follower.read_new()
    assert lines[0].text == "started" and len(lines) == 1001
    write(run_log.source_path, k8s("later"))
    run_log.pump()
    assert [line.text for line in follower.read_new()] == ["later"]


def test_a_filter_skips_blocks_without_the_needle_yet_finds_split_lines(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    noise = k8s("n" * 200) * 20_000  # several read blocks without the needle
    write(run_log.source_path, noise + k8s("nee", tag="P") + k8s("dle here") + noise)
    run_log.finish()
    assert texts(run_log, LogQuery(contains="needle")) == ["needle here"]
