"""Keeping runs' outputs within bounds, as the kubelet keeps pods within their ephemeral storage:
the running runs' /outputs are measured every `sample_seconds`, and sooner while one is
filling them fast (the next measure comes before the fastest writer could reach its limit at
the rate it wrote since the last one, 50 ms apart at the most often). A run past its limit is
killed (no grace: writing more is what it must not do) and ends `output_limit`. While the disk
holding outputs has less free than the reserve, the run that wrote most since the last measure
is killed too, one a measure, so the disk jobd and the other jobs live on stays usable. A
writer can pass its limit by what it writes between two measures and its kill: at the page
cache's speed (0.6 GB/s here), about a hundred megabytes.

Once a run has ended, its outputs are sealed: checksummed into a manifest beside them, and the
run records how many there are, their size, and the newest image."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass

from jobd.config import Config
from jobd.domain.outputs import OutputSummary, size_text
from jobd.domain.runs import Run
from jobd.domain.states import RunStatus, StopReason
from jobd.node.disk import usage
from jobd.node.outputs import outputs_dir, write_manifest
from jobd.store import Store

log = logging.getLogger(__name__)
SOONEST_SECONDS = 0.05  # measures never come closer together than this
FIRST_LOOK_SECONDS = 0.1  # a run's second measure comes this soon: its rate is not known yet


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    sizes: dict[str, int]  # run id -> bytes in its /outputs
    files: dict[str, int]
    free_bytes: int  # on the disk holding the outputs


class OutputWatch:
    def __init__(self, *, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._last = 0.0
        self._due = 0.0  # when the next measure is due (monotonic)
        self._previous: dict[str, int] = {}  # each run's size at the last measure

    @property
    def interval(self) -> float:
        return self.config.outputs.sample_seconds

    def due_in(self) -> float:
        """Seconds until the next measure is due (the supervisor wakes for it)."""
        return max(0.0, self._due - time.monotonic())

    async def check(self, active: list[Run]) -> list[Run]:
        """Measure the running runs' outputs, at most once an interval; the ones that must
        stop, their stop recorded, for the stops step to kill at once."""
        running = [r for r in active if r.status is RunStatus.RUNNING and r.stop_reason is None]
        if not running or time.monotonic() < self._due:
            return []
        since, self._last = time.monotonic() - self._last, time.monotonic()
        measure = await asyncio.to_thread(self._measure, [r.id for r in running])
        self._due = self._last + self._next_gap(running, measure, since)
        doomed: list[Run | None] = []
        for run in running:
            limit = run.spec.output_limit_bytes if run.spec else None
            if limit is not None and measure.sizes[run.id] > limit:
                why = f"outputs hold {size_text(measure.sizes[run.id])}, over their limit"
                doomed.append(await self._stop(run, StopReason.OUTPUT_LIMIT, why, measure))
        if measure.free_bytes < self.config.outputs.disk_reserve_bytes:
            spared = [r for r in running if r.id not in {d.id for d in doomed if d}]
            doomed.append(await self._relieve_the_disk(spared, measure))
        self._previous = measure.sizes
        return [run for run in doomed if run is not None]

    def _next_gap(self, running: list[Run], measure: Measure, since: float) -> float:
        """The sample interval, or less: half the time the fastest writer would take to
        reach its limit at the rate it wrote since the last measure; soon after a run's first
        measure, to learn its rate."""
        gap = self.interval
        for run in running:
            if run.id not in self._previous:
                gap = min(gap, FIRST_LOOK_SECONDS)
                continue
            limit = run.spec.output_limit_bytes if run.spec else None
            grew = measure.sizes[run.id] - self._previous[run.id]
            if limit is None or grew <= 0 or since <= 0:
                continue
            headroom = max(0, limit - measure.sizes[run.id])
            gap = min(gap, headroom / (grew / since) / 2)
        return max(SOONEST_SECONDS, gap)

    def _measure(self, run_ids: list[str]) -> Measure:
        sizes: dict[str, int] = {}
        files: dict[str, int] = {}
        for run_id in run_ids:
            held = usage(outputs_dir(run_id, self.config))
            sizes[run_id], files[run_id] = held.size_bytes, held.files
        self.config.outputs_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.config.outputs_dir).free
        return Measure(sizes=sizes, files=files, free_bytes=free)

    async def _relieve_the_disk(self, running: list[Run], measure: Measure) -> Run | None:
        def grew(run: Run) -> int:
            return measure.sizes[run.id] - self._previous.get(run.id, 0)

        writers = [r for r in running if grew(r) > 0]
        if not writers:
            return None
        biggest = max(writers, key=grew)
        why = f"the disk holding outputs has {size_text(measure.free_bytes)} free"
        return await self._stop(biggest, StopReason.DISK_FULL, why, measure)

    async def _stop(self, run: Run, reason: StopReason, why: str, measure: Measure) -> Run | None:
        """Record that the run is to be killed; the run so changed, or None when it ended
        or was stopped otherwise meanwhile."""
        summary = OutputSummary(files=measure.files[run.id], bytes=measure.sizes[run.id])
        recorded = await self.store.update_run(
            run.id,
            detail=f"{why}: killed",
            expect={RunStatus.RUNNING},
            stop_reason=reason,
            stop_grace_seconds=0,
            outputs=summary,
        )
        if not recorded:
            return None
        log.info("%s: %s; killing it", run.id, why)
        return run.with_changes(stop_reason=reason, stop_grace_seconds=0, outputs=summary)


async def seal(run_id: str, store: Store, config: Config) -> None:
    """The ended run's outputs checksummed into their manifest, and counted on the run."""
    files = await asyncio.to_thread(write_manifest, run_id, config)
    await store.record_outputs(run_id, OutputSummary.of(files))
