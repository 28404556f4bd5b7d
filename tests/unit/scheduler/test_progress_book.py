"""The progress book's own rules, with a store that records what it is asked to write: marks
taken in order (phases each, progress marks in a row as their last), at most one write per
run per interval whatever comes in, a change made while a write is under way written next
time, an ended run written once more then forgotten, ignored markers counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from jobd.domain.progress import Progress
from jobd.logs.markers import MarkerLine
from jobd.scheduler.progress import ProgressBook


class Recorder:
    def __init__(self) -> None:
        self.writes: list[dict[str, Progress]] = []
        self.gate: asyncio.Event | None = None

    async def record_progress(self, progress: dict[str, Progress]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.writes.append(dict(progress))


def book() -> tuple[ProgressBook, Recorder]:
    recorder = Recorder()
    return ProgressBook(cast(Any, recorder)), recorder


def line(text: str, at: float) -> MarkerLine:
    return MarkerLine(stamp=datetime.fromtimestamp(at, UTC).isoformat(), stream="stdout", text=text)


def test_marks_are_taken_in_order_and_written_once_per_turn() -> None:
    progress, recorder = book()
    progress.track("run-a", None)
    progress.take(
        "run-a",
        [line(f"::jobd progress {i}/100", float(i)) for i in range(50)]
        + [line("::jobd phase two", 50.0)]
        + [line(f"::jobd progress {i}/100", float(i)) for i in range(51, 60)]
        + [line("::jobd nonsense", 60.0)],
    )
    progress.take("run-a", [line("::jobd progress 60/100 sixty", 61.0)])
    asyncio.run(progress.write())
    asyncio.run(progress.write())  # nothing changed: nothing written
    assert len(recorder.writes) == 1
    written = recorder.writes[0]["run-a"]
    assert (written.done, written.message, written.phase) == (60, "sixty", "two")
    assert written.rate is not None and written.eta_seconds is not None
    assert progress.counts().ignored == 1 and progress.counts().writes == 1


def test_a_change_during_a_write_is_written_next_time() -> None:
    async def scenario() -> list[dict[str, Progress]]:
        progress, recorder = book()
        progress.track("run-a", None)
        progress.take("run-a", [line("::jobd progress 0.1", 1.0)])
        recorder.gate = asyncio.Event()
        writing = asyncio.create_task(progress.write())
        await asyncio.sleep(0)
        progress.take("run-a", [line("::jobd progress 0.2", 2.0)])
        recorder.gate.set()
        await writing
        await progress.write()
        return recorder.writes

    writes = asyncio.run(scenario())
    assert [w["run-a"].fraction for w in writes] == [0.1, 0.2]


def test_an_ended_run_is_written_once_more_then_forgotten() -> None:
    progress, recorder = book()
    progress.track("run-a", None)
    progress.take("run-a", [line("::jobd progress 0.5", 1.0)])
    progress.finish("run-a")
    asyncio.run(progress.write())
    progress.take("run-a", [])
    asyncio.run(progress.write())
    assert len(recorder.writes) == 1, "written once, then forgotten"


def test_a_restarted_daemon_goes_on_from_the_record() -> None:
    progress, recorder = book()
    before = Progress.from_record({"fraction": 0.4, "phases": [["rendering", 5.0]]})
    progress.track("run-a", before)
    progress.take("run-a", [line("::jobd progress 0.5", 10.0)])
    asyncio.run(progress.write())
    written = recorder.writes[0]["run-a"]
    assert (written.fraction, written.phase) == (0.5, "rendering")
