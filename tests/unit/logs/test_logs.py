"""The run log: conmon's file kept in place, head kept, tail bounded by punching out the middle,
lines whole, readers and followers reading it in bounded pieces."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

from jobd.config.tables import LogLimits
from jobd.logs.follower import LogFollower
from jobd.logs.lines import LineJoiner, LogQuery, k8s_text, parse_k8s_line
from jobd.logs.run_log import READ_CHUNK, RunLog

TS = "2026-11-23T10:00:00.000000000+00:00"


def k8s(text: str, stream: str = "stdout", tag: str = "F", ts: str = TS) -> bytes:
    return f"{ts} {stream} {tag} {text}\n".encode()


def at(second: int) -> str:
    return f"2026-11-23T10:00:{second:02d}.000000000+00:00"


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


def search(blocks: list[bytes], needle: str) -> list[tuple[str, str, str]]:
    """(time, stream, text) of the lines a filtered LineJoiner finds in `blocks`, checked
    against the unfiltered lines filtered afterwards: the skipping must change nothing."""

    def found(query: LogQuery) -> list[tuple[str, str, str]]:
        joiner = LineJoiner(query)
        return [(ln.time, ln.stream, ln.text) for b in blocks for ln in joiner.lines(b)]

    filtered = found(LogQuery(contains=needle))
    assert filtered == [line for line in found(LogQuery()) if needle in line[2]]
    return filtered


def test_a_filter_finds_a_needle_split_across_partial_pieces() -> None:
    pieces = k8s("say NEE", tag="P", ts=at(1)) + k8s("DL", tag="P", ts=at(2)) + k8s("E now")
    block = k8s("noise") * 50 + pieces + k8s("noise") * 50
    assert search([block], "NEEDLE") == [(at(1), "stdout", "say NEEDLE now")]
    assert search([block], "needle") == [], "the match is case-sensitive, as it was"


def test_pieces_without_the_needle_are_jumped_and_those_with_it_still_found() -> None:
    unmatched = k8s("NEE", tag="P") + k8s("xDLE", tag="P") + k8s("end")  # no straddle
    straddle = k8s("a NEE", tag="P", ts=at(2)) + k8s("DLE b", ts=at(3))
    across_three = k8s("N", tag="P", ts=at(4)) + k8s("EEDL", tag="P") + k8s("E!")
    block = unmatched * 20 + straddle + unmatched + across_three + k8s("NEEDLE", ts=at(5))
    assert search([block], "NEEDLE") == [
        (at(2), "stdout", "a NEEDLE b"),
        (at(4), "stdout", "NEEDLE!"),
        (at(5), "stdout", "NEEDLE"),
    ]
    broken = k8s("NEE", tag="P", ts=at(6)) + b"\xc3 stdout P DL\n" + k8s("E")
    assert search([broken + unmatched], "NEEDLE") == [(at(6), "stdout", "NEEDLE")], (
        "a header that is not UTF-8 is read, not raised on"
    )


def test_a_filter_joins_a_piece_to_its_end_in_the_next_block() -> None:
    first = k8s("a") * 100 + k8s("x NEE", tag="P", ts=at(1))
    second = k8s("DLE y") + k8s("b") * 100 + k8s("NEEDLE alone", ts=at(3))
    expected = [(at(1), "stdout", "x NEEDLE y"), (at(3), "stdout", "NEEDLE alone")]
    assert search([first, second], "NEEDLE") == expected
    in_piece = [k8s("has NEEDLE", tag="P", ts=at(1)), k8s(" and its end") + k8s("b")]
    assert search(in_piece, "NEEDLE") == [(at(1), "stdout", "has NEEDLE and its end")]
    in_end = [k8s("a") + k8s("its start", tag="P", ts=at(1)), k8s(", NEEDLE") + k8s("b")]
    assert search(in_end, "NEEDLE") == [(at(1), "stdout", "its start, NEEDLE")]


def test_a_filter_finds_lines_in_a_block_without_partial_pieces() -> None:
    block = b"".join(k8s(f"line {n}") for n in range(1000))
    block += k8s("the NEEDLE", ts=at(1)) + k8s("line") + k8s("NEEDLE again", "stderr", ts=at(2))
    expected = [(at(1), "stdout", "the NEEDLE"), (at(2), "stderr", "NEEDLE again")]
    assert search([block], "NEEDLE") == expected


def test_p_in_the_text_does_not_make_a_line_partial() -> None:
    texts = ["P NEEDLE", "a P b", "NEEDLE", "see stdout P NEEDLE", "P", " P ", "NEEDLE P "]
    block = b"".join(k8s(text, ts=at(n)) for n, text in enumerate(texts))
    for needle in ("NEEDLE", " P "):
        expected = [(at(n), "stdout", text) for n, text in enumerate(texts) if needle in text]
        assert search([block], needle) == expected


def test_a_filter_keeps_streams_and_order_when_stdout_and_stderr_interleave() -> None:
    block = (
        k8s("NEEDLE 1", ts=at(1))
        + k8s("NEEDLE 2", "stderr", ts=at(2))
        + k8s("no", "stderr")
        + k8s("NEE", "stderr", "P", ts=at(3))
        + k8s("DLE 3", "stderr")
        + k8s("no")
        + k8s("NEEDLE 4", ts=at(4))
    )
    assert search([block], "NEEDLE") == [
        (at(1), "stdout", "NEEDLE 1"),
        (at(2), "stderr", "NEEDLE 2"),
        (at(3), "stderr", "NEEDLE 3"),
        (at(4), "stdout", "NEEDLE 4"),
    ]


def test_a_filter_finds_a_last_line_without_its_newline(tmp_path: Path) -> None:
    cut = f"{TS} stdout F cut NEEDLE".encode()
    assert search([k8s("a") + k8s("NEE", tag="P") + k8s("DLE") + cut], "NEEDLE") == [
        (TS, "stdout", "NEEDLE"),
        (TS, "stdout", "cut NEEDLE"),
    ]
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("a") + cut)
    run_log.pump()
    assert texts(run_log, LogQuery(contains="NEEDLE")) == [], "not a whole line yet"
    run_log.finish()
    assert texts(run_log, LogQuery(contains="NEEDLE")) == ["cut NEEDLE"]


def conmon(output: bytes, cuts: list[int]) -> bytes:
    """`output` as conmon writes it: one entry per line of each read (reads end at `cuts`),
    the unfinished rest of a read as a P entry."""
    entries = []
    for n, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(output)], strict=True)):
        *whole, rest = output[start:end].split(b"\n")
        entries += [k8s(line.decode(), ts=at(n % 60)) for line in whole]
        if rest:
            entries.append(k8s(rest.decode(), tag="P", ts=at(n % 60)))
    return b"".join(entries)


def test_a_filter_agrees_with_the_unfiltered_lines_on_a_conmon_log(tmp_path: Path) -> None:
    output = b"".join(
        b"line %d %s\n" % (n, b"NEEDLE" if n % 997 == 0 else b"x" * (n % 90)) for n in range(30_000)
    )
    hits = [m.start() for m in re.finditer(b"NEEDLE", output)]
    # a P entry about every 8 KB, as under fast output; some needles cut in two
    cuts = {*range(8192, len(output), 8192), *(hit + 3 for hit in hits[::3])}
    log = conmon(output, sorted(cuts))
    # and the first block read ends in a P entry with half a needle
    head = log[: log.rfind(b"\n", 0, READ_CHUNK - 300) + 1]
    piece = k8s("NEE", tag="P")
    pad = k8s("y" * (READ_CHUNK - len(head) - len(piece) - len(k8s(""))))
    log = head + pad + piece + k8s("DLE at the block boundary") + log[len(head) :]
    run_log = RunLog(tmp_path, LogLimits(max_bytes=64 * 2**20, head_bytes=32 * 2**20))
    write(run_log.source_path, log)
    run_log.finish()
    assert next(run_log.blocks())[0] == READ_CHUNK
    since = datetime.fromisoformat(at(30))
    for query in (LogQuery(contains="NEEDLE"), LogQuery(contains="NEEDLE", since=since)):
        everything = run_log.lines(dataclasses.replace(query, contains=None))
        expected = [line for line in everything if "NEEDLE" in line.text]
        assert list(run_log.lines(query)) == expected
    found = texts(run_log, LogQuery(contains="NEEDLE"))
    assert len(found) == len(hits) + 1 and "NEEDLE at the block boundary" in found
