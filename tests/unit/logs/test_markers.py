"""The marker scanner on k8s-files as conmon writes them: whole marker lines on either stream,
markers conmon wrote in pieces (joined, across scans too), the needle inside ordinary text,
holes, window boundaries; and, over random logs cut at random places, exactly the marker lines
a full parse of the log finds."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from jobd.logs import markers
from jobd.logs.lines import LineJoiner, LogQuery
from jobd.logs.markers import MarkerScanner

T0 = "2026-12-04T13:00:00.000000001+00:00"
T1 = "2026-12-04T13:00:01.500000000+00:00"


def entry(text: str, stream: str = "stdout", tag: str = "F", at: str = T0) -> bytes:
    return f"{at} {stream} {tag} {text}\n".encode()


def scan_all(path: Path, cuts: list[int] | None = None) -> list[tuple[str, str]]:
    """Scan the file whole, or in turns ending at each cut (line boundaries)."""
    size = path.stat().st_size
    scanner = MarkerScanner()
    found = []
    start = 0
    for end in [*(cuts or []), size]:
        found += scanner.scan(path, start, end)
        start = end
    return [(line.stream, line.text) for line in found]


def test_whole_marker_lines_on_either_stream_and_nothing_else(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    log.write_bytes(
        entry("ordinary output")
        + entry("::jobd phase rendering")
        + entry("x ::jobd progress 0.9")  # not at the line's start
        + entry("a F ::jobd progress 0.9")  # looks like a header, inside the text
        + entry(" ::jobd progress 0.9")
        + entry("::jobd progress 3/10 frame 3", stream="stderr", at=T1)
        + entry("::jobdprogress 0.5")
        + b"\0" * 300  # a hole punched out of the log
        + entry("::jobd progress 0.5\r")
    )
    scanner = MarkerScanner()
    found = scanner.scan(log, 0, log.stat().st_size)
    assert [(line.stream, line.text) for line in found] == [
        ("stdout", "::jobd phase rendering"),
        ("stderr", "::jobd progress 3/10 frame 3"),
        ("stdout", "::jobd progress 0.5"),
    ]
    assert found[1].at == pytest.approx(1_796_389_201.5)


def test_a_marker_written_in_pieces_is_joined_even_across_scans(tmp_path: Path) -> None:
    log = tmp_path / "container.log"
    parts = [
        entry("::jobd pro", tag="P"),
        entry("an error in between", stream="stderr"),
        entry("gress 5/1", tag="P", at=T1),
        entry("0 halfway", at=T1),
        entry("long line start", tag="P"),
        entry(" ::jobd progress 0.9 a later piece", tag="P"),
        entry("the end of the long line"),
    ]
    log.write_bytes(b"".join(parts))
    expected = [("stdout", "::jobd progress 5/10 halfway")]
    assert scan_all(log) == expected
    every_cut = [sum(len(p) for p in parts[:i]) for i in range(1, len(parts))]
    assert scan_all(log, every_cut) == expected


def test_reads_end_at_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(markers, "READ", 4096)
    monkeypatch.setattr(markers, "_thread", threading.local())  # a buffer of that size
    log = tmp_path / "container.log"
    lines = [entry(f"::jobd progress {i}/500" if i % 7 == 0 else f"line {i}") for i in range(500)]
    log.write_bytes(b"".join(lines))
    assert scan_all(log) == [("stdout", f"::jobd progress {i}/500") for i in range(0, 500, 7)]


@pytest.mark.parametrize("read", [markers.READ, 256])
def test_a_nul_a_job_printed_hides_no_marker_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read: int
) -> None:
    """strstr stops at a NUL byte: past one, the window is searched again with memmem; a
    window with neither ends at the sentinel after its last newline, never in the next read."""
    monkeypatch.setattr(markers, "READ", read)
    monkeypatch.setattr(markers, "_thread", threading.local())
    log = tmp_path / "container.log"
    lines = [entry("binary \0 output"), entry("::jobd phase a"), entry("x" * 40)]
    lines += [entry("::jobd progress 1/2"), entry("\0"), entry("::jobd progress 2/2")]
    log.write_bytes(b"".join(lines))
    assert scan_all(log) == [
        ("stdout", "::jobd phase a"),
        ("stdout", "::jobd progress 1/2"),
        ("stdout", "::jobd progress 2/2"),
    ]


@pytest.mark.parametrize("read", [markers.READ, 256])
@pytest.mark.parametrize("seed", range(20))
def test_random_logs_give_what_a_full_parse_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, read: int
) -> None:
    monkeypatch.setattr(markers, "READ", read)
    monkeypatch.setattr(markers, "_thread", threading.local())
    rng = random.Random(seed)
    raw, boundaries, missed = random_log(rng)
    log = tmp_path / "container.log"
    log.write_bytes(raw)
    joiner = LineJoiner(LogQuery())
    expected = [
        (line.stream, line.text)
        for line in [*joiner.lines(raw), *joiner.ended()]
        if line.text.startswith("::jobd ") and line.text not in missed
    ]
    assert len(expected) > 5
    cuts = sorted(rng.sample(boundaries, min(len(boundaries), rng.randint(0, 30))))
    assert scan_all(log, cuts) == expected


def random_log(rng: random.Random) -> tuple[bytes, list[int], set[str]]:
    """Lines of both streams, some of them markers, some written in pieces (as conmon does
    for a line that straddles its read); where each entry ends; and the markers cut within
    `::jobd ` itself, which the scanner cannot see (the needle is not in either piece)."""
    out = bytearray()
    boundaries = []
    missed = set()
    for number in range(rng.randint(50, 300)):
        stream = rng.choice(["stdout", "stderr"])
        if rng.random() < 0.3:
            text = f"::jobd progress {rng.randint(0, 9)}/10 frame {number}"
        else:
            text = "".join(rng.choice("abc ::jobd xyz F P") for _ in range(rng.randint(0, 60)))
            text = text.replace("::jobd", "::job d")  # the marker only ever starts a line
        pieces = split(rng, text)
        if text.startswith("::jobd") and len(pieces[0]) < len("::jobd "):
            missed.add(text)
        for i, piece in enumerate(pieces):
            tag = "F" if i == len(pieces) - 1 else "P"
            out += entry(piece, stream=stream, tag=tag)
            boundaries.append(len(out))
    return bytes(out), boundaries[:-1], missed


def split(rng: random.Random, text: str) -> list[str]:
    if len(text) < 2 or rng.random() < 0.7:
        return [text]
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, min(3, len(text) - 1))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
