"""The log pump's thread on real files: marker lines handed to the sink in order and once, even
when a run's end is taken while the thread is taking its lines; followers woken; a quiet run
left alone (no take); a log it cannot read told and tried again; a bug in a turn ends the pump's
task, as the daemon's supervision expects."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from jobd.config.tables import LogLimits
from jobd.domain.progress import MarkerCounts, Progress
from jobd.logs.markers import MarkerLine
from jobd.logs.pump import LogPump
from jobd.logs.run_log import RunLog

TS = "2026-12-04T10:00:00.000000000+00:00"


def k8s(text: str) -> bytes:
    return f"{TS} stdout F {text}\n".encode()


class Sink:
    """A marker sink that notes which thread it was called on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.finished: list[str] = []
        self.threads: set[int] = set()

    def track(self, run_id: str, progress: Progress | None) -> None:
        pass

    def take(self, run_id: str, lines: list[MarkerLine]) -> None:
        self.threads.add(threading.get_ident())
        assert run_id not in self.finished, "a marker after the run's end was handed over"
        self.lines += [line.text for line in lines]

    def finish(self, run_id: str) -> None:
        self.finished.append(run_id)

    def forget(self, run_id: str) -> None:
        pass

    def counts(self) -> MarkerCounts:
        return MarkerCounts()


def pump_at(tmp_path: Path) -> tuple[LogPump, Sink]:
    sink = Sink()
    return LogPump(tmp_path, LogLimits(), interval=0.005, markers=sink), sink


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


async def test_markers_reach_the_sink_on_the_loop_and_followers_wake(tmp_path: Path) -> None:
    pump, sink = pump_at(tmp_path)
    pump.track("run-a")
    source = pump.directory("run-a") / "container.log"
    task = asyncio.create_task(pump.run())
    try:
        changed = pump.changed("run-a")
        source.write_bytes(k8s("hello") + k8s("::jobd phase one") + k8s("::jobd progress 1/2"))
        async with asyncio.timeout(5):
            await changed.wait()
        await until(lambda: len(sink.lines) == 2)
        assert sink.lines == ["::jobd phase one", "::jobd progress 1/2"]
        assert sink.threads == {threading.get_ident()}  # the progress book lives on the loop
        assert pump.bytes_taken == source.stat().st_size
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not [t for t in threading.enumerate() if t.name == "log-pump"]


async def test_a_quiet_run_costs_no_take(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pump, _ = pump_at(tmp_path)
    pump.track("run-a")
    (pump.directory("run-a") / "container.log").write_bytes(k8s("one line, then quiet"))
    takes = 0
    pump_once = RunLog.pump

    def counted(run_log: RunLog) -> bool:
        nonlocal takes
        takes += 1
        return pump_once(run_log)

    monkeypatch.setattr(RunLog, "pump", counted)
    task = asyncio.create_task(pump.run())
    try:
        await until(lambda: pump.bytes_taken > 0)
        await asyncio.sleep(0.2)  # forty turns
        assert takes == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_end_taken_during_a_turn_hands_every_marker_once_in_order(
    tmp_path: Path,
) -> None:
    for attempt in range(20):
        pump, sink = pump_at(tmp_path / str(attempt))
        pump.track("run-a")
        source = pump.directory("run-a") / "container.log"
        task = asyncio.create_task(pump.run())
        written = [f"::jobd progress {i}/400" for i in range(400)]
        with source.open("ab") as out:
            for i, text in enumerate(written):
                out.write(k8s("x" * 2000) * 20 + k8s(text))  # turns with work to do
                if i % 50 == 0:
                    out.flush()
                    await asyncio.sleep(0.001)
        await pump.finish("run-a")  # the thread may be taking this very run's lines now
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sink.lines == written
        assert sink.finished == ["run-a"]


async def test_a_bug_in_a_turn_ends_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pump, _ = pump_at(tmp_path)
    pump.track("run-a")
    (pump.directory("run-a") / "container.log").write_bytes(k8s("a line"))

    def broken(run_log: RunLog) -> bool:
        raise ValueError("a bug")

    monkeypatch.setattr(RunLog, "pump", broken)
    with pytest.raises(ValueError, match="a bug"):
        async with asyncio.timeout(5):
            await pump.run()


async def test_a_log_the_pump_cannot_read_is_told_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pump, _ = pump_at(tmp_path)
    pump.track("run-a")
    (pump.directory("run-a") / "container.log").write_bytes(k8s("a line"))
    tries = 0

    def failing(run_log: RunLog) -> bool:
        nonlocal tries
        tries += 1
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(RunLog, "pump", failing)
    task = asyncio.create_task(pump.run())
    try:
        await until(lambda: tries >= 3)
        assert not task.done()
        assert "log pump for run-a" in caplog.text
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
