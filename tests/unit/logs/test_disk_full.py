"""A full disk and a run's log: a line conmon's write cut short is left out, with one
`[jobd] N bytes of output lost: disk full` marker in its place, once the output goes on (or
the run ends). tests/acceptance/test_disk_full.py fills a real disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobd.config.tables import LogLimits
from jobd.errors import NoSpace
from jobd.logs.follower import LogFollower
from jobd.logs.lines import LogQuery
from jobd.logs.run_log import RunLog
from tests.unit.logs.test_logs import at, k8s, texts, write


@pytest.fixture
def disk_full() -> Iterator[None]:
    """A write failed for lack of space: what the pump takes as the disk being full."""
    NoSpace.note()
    yield
    NoSpace.cleared()


def cut(run_log: RunLog, piece: bytes) -> None:
    """conmon's write cut short by a full disk: a piece of a line, then nothing."""
    write(run_log.source_path, piece)
    run_log.pump()
    run_log.pump()  # the piece stayed as it was: a cut


def test_a_cut_line_is_replaced_by_one_marker_once_output_goes_on(
    tmp_path: Path, disk_full: None
) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one", ts=at(1)) + k8s("two", ts=at(2)))
    piece = f"{at(3)} stdout F thr".encode()
    cut(run_log, piece)
    assert texts(run_log) == ["one", "two"]  # nothing yet: the output may go on
    write(run_log.source_path, k8s("four", ts=at(9)))  # glued to the piece, as conmon does
    assert run_log.pump()
    lines = list(run_log.lines(LogQuery()))
    assert [line.text for line in lines][:2] == ["one", "two"]
    assert lines[3].text == "four"
    marker = lines[2]
    assert marker.stream == "jobd"
    assert marker.text.startswith(f"[jobd] {len(piece)} bytes of output lost: disk full")
    assert at(3) in marker.text and at(9) in marker.text
    run_log.finish()
    again = RunLog(tmp_path, LogLimits())  # from state.json, as after a restart
    assert texts(again) == ["one", "two", marker.text, "four"]


def test_a_follower_reads_the_marker_once(tmp_path: Path, disk_full: None) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    follower = LogFollower(lambda: run_log, LogQuery(), skip_existing=False)
    write(run_log.source_path, k8s("one"))
    run_log.pump()
    assert [line.text for line in follower.read_new()] == ["one"]
    cut(run_log, f"{at(3)} stdout F tw".encode())
    write(run_log.source_path, k8s("three", ts=at(4)))
    run_log.pump()
    seen = [line.text for line in follower.read_new()]
    assert len(seen) == 2 and "output lost: disk full" in seen[0] and seen[1] == "three"
    assert follower.read_new() == []
    write(run_log.source_path, k8s("four"))
    run_log.pump()
    assert [line.text for line in follower.read_new()] == ["four"]


def test_a_run_that_ends_cut_gets_the_marker_at_its_end(tmp_path: Path, disk_full: None) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one"))
    piece = f"{at(3)} stdout F tw".encode()
    cut(run_log, piece)
    run_log.finish()
    lines = texts(RunLog(tmp_path, LogLimits()))
    assert lines[0] == "one"
    assert lines[1].startswith(f"[jobd] {len(piece)} bytes of output lost: disk full")
    assert len(lines) == 2


def test_a_line_that_was_only_slow_loses_nothing(tmp_path: Path, disk_full: None) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one"))
    cut(run_log, f"{at(3)} stdout F tw".encode())
    write(run_log.source_path, b"o and more\n")  # the same line, finished after all
    run_log.pump()
    run_log.finish()
    assert texts(run_log) == ["one", "two and more"]


def test_with_room_on_the_disk_a_stalled_last_line_is_kept(tmp_path: Path) -> None:
    run_log = RunLog(tmp_path, LogLimits())
    write(run_log.source_path, k8s("one") + f"{at(3)} stdout F unfin".encode())
    run_log.pump()
    run_log.pump()
    run_log.finish()
    assert texts(run_log) == ["one", "unfin"]
