"""Stopping runs: the ones being cancelled, the running ones asked to stop cleanly, and the
ones past their deadline. Each stop (SIGTERM, the grace period, SIGKILL) is a task of its own;
the container's exit then ends the run as usual."""

from __future__ import annotations

import asyncio
import logging
import time

from jobd.config import Config
from jobd.domain.records import now
from jobd.domain.runs import Run
from jobd.domain.states import RunStatus, StopReason
from jobd.errors import RuntimeFailure
from jobd.runtime.contract import ContainerRuntime, Handle
from jobd.scheduler.endings import Endings
from jobd.scheduler.inflight import STOP_RETRY_SECONDS, InFlight
from jobd.store import Store

log = logging.getLogger(__name__)
# stops recorded on a running run for the stops step to carry out (a deadline's is timed)
ASKED = frozenset({StopReason.STOP, StopReason.OUTPUT_LIMIT, StopReason.DISK_FULL})


class Stops:
    def __init__(
        self,
        *,
        store: Store,
        runtime: ContainerRuntime,
        config: Config,
        inflight: InFlight,
        endings: Endings,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.config = config
        self.inflight = inflight
        self.endings = endings

    async def apply_cancellations(self, active: list[Run]) -> None:
        """Stop the runs being cancelled, and the running ones asked to stop cleanly."""
        for run in active:
            self._hurry(run)
            if self.inflight.busy(run.id):
                continue
            if run.status is RunStatus.RUNNING and run.stop_reason in ASKED:
                self._stop(run)
                continue
            if run.status is not RunStatus.CANCELLING:
                continue
            if run.container_id is None:
                await self.endings.end_cancelled(run, "cancelled before its container existed")
                continue
            self._stop(run)

    async def enforce_deadlines(self, active: list[Run]) -> None:
        moment = now()
        for run in active:
            if run.status is not RunStatus.RUNNING:
                continue
            if run.deadline_at is None or run.deadline_at > moment or self.inflight.busy(run.id):
                continue
            if run.stop_reason is None:
                recorded = await self.store.update_run(
                    run.id,
                    detail="deadline reached",
                    expect={RunStatus.RUNNING},
                    stop_reason=StopReason.TIMEOUT,
                )
                if not recorded:
                    continue  # cancelled or ended meanwhile
            self._stop(run)

    def _grace(self, run: Run) -> int:
        """The run's own grace (a cancel or stop asked for it), or the configured one."""
        if run.stop_grace_seconds is not None:
            return run.stop_grace_seconds
        return self.config.stop_grace_seconds

    def _hurry(self, run: Run) -> None:
        """A stop under way waits out a longer grace than the run now asks for (`--force`
        after a plain cancel): let it go, so that the next one uses the shorter grace."""
        task = self.inflight.stopping.get(run.id)
        if task is not None and self._grace(run) < self.inflight.stop_graces.get(run.id, 0):
            task.cancel()
            del self.inflight.stopping[run.id]

    def _stop(self, run: Run) -> None:
        assert run.container_id is not None
        grace = self._grace(run)
        self.inflight.stop_graces[run.id] = grace
        self.inflight.stopping[run.id] = asyncio.create_task(
            self._stop_container(run.id, run.container_id, grace), name=f"stop-{run.id}"
        )

    async def _stop_container(self, run_id: str, container_id: Handle, grace: int) -> None:
        try:
            await self.runtime.stop(container_id, grace)
        except RuntimeFailure as e:
            log.error("stopping %s failed (retrying in %ss): %s", run_id, STOP_RETRY_SECONDS, e)
            self.inflight.stop_failed[run_id] = time.monotonic()
            return
        finally:
            # a stop let go by _hurry has been replaced already: leave its successor be
            if self.inflight.stopping.get(run_id) is asyncio.current_task():
                del self.inflight.stopping[run_id]
                self.inflight.stop_graces.pop(run_id, None)
        self.inflight.reap_later(run_id, container_id)
        self.inflight.wake()
