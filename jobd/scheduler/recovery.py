"""Reaping and reconciling: exits from the runtime's stream end their runs; every so often (and
at startup, as recovery) the active runs are checked against the containers the runtime lists:
running ones are adopted after a restart, exited ones finished, runs that never got a
container requeued, the rest ended as lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from jobd.domain.records import now
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES, FailureType, RunStatus
from jobd.errors import ContainerGone, JobdError
from jobd.logs.pump import LogPump
from jobd.runtime.contract import ContainerRuntime, ContainerState, Handle
from jobd.scheduler.endings import Endings
from jobd.scheduler.inflight import InFlight
from jobd.scheduler.launch import stream_fields
from jobd.store import Store

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        *,
        store: Store,
        runtime: ContainerRuntime,
        pump: LogPump,
        inflight: InFlight,
        endings: Endings,
        closing: Callable[[], bool],
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.pump = pump
        self.inflight = inflight
        self.endings = endings
        self.closing = closing  # shutdown has begun: leave the rest for the next start
        self.last_reconcile = 0.0

    # -- reaping ------------------------------------------------------------------------------

    async def reap_exits(self) -> None:
        seen: set[str] = set()
        while not self.inflight.exits.empty():
            exit_ = self.inflight.exits.get_nowait()
            if exit_.run_id in seen:
                continue
            seen.add(exit_.run_id)
            await self._reap(exit_.run_id, exit_.container_id)

    async def _reap(self, run_id: str, container_id: Handle) -> None:
        if run_id in self.inflight.launching:
            self.inflight.deferred[run_id] = container_id  # reaped once the launch has finished
            return
        run = (await self.store.get_runs([run_id])).get(run_id)
        if run is None or run.status.is_terminal:
            await self.runtime.remove(container_id)
            return
        try:
            state = await self.runtime.inspect(container_id)
        except ContainerGone:
            return  # reconcile decides: adopted elsewhere, or lost
        if state.exited:
            await self.endings.finish(run.id, state)

    # -- reconciling --------------------------------------------------------------------------

    async def recover(self) -> None:
        """At startup: adopt running containers, finish those that exited while jobd was
        down, requeue runs that never got a container, end the rest as lost."""
        await self.reconcile(recovering=True)

    async def reconcile(self, *, recovering: bool = False) -> None:
        self.last_reconcile = time.monotonic()
        # the runs first, then the containers: a container listed is never older than the
        # snapshot of its run, so a run launched meanwhile is not judged by a stale list
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        containers = {c.run_id: c for c in await self.runtime.list_managed() if c.run_id}
        for run in active:
            if self.closing():  # a launch cancelled by shutdown left its run for the next start
                return
            state = containers.pop(run.id, None)
            if run.id in self.inflight.launching or run.id in self.inflight.stopping:
                continue
            await self._isolated(run.id, self._reconcile_run(run, state, recovering))
        for run_id, state in containers.items():
            await self._isolated(run_id, self._reap(run_id, state.container_id))

    async def _isolated(self, run_id: str, work: Coroutine[Any, Any, None]) -> None:
        """One run's trouble (a podman error, a full disk) must not stop the others."""
        try:
            await work
        except (JobdError, OSError) as e:
            log.error("reconciling %s failed: %s", run_id, e)

    async def _reconcile_run(
        self, run: Run, state: ContainerState | None, recovering: bool
    ) -> None:
        if state is None and run.container_id is not None:
            state = await self._inspect_or_none(run.container_id)  # the list may predate it
        if state is None:
            await self._end_lost(run)
        elif state.exited:
            await self.endings.finish(run.id, state)
        elif state.running:
            if recovering:
                await self._adopt(run, state)
        elif recovering:  # created but never started: start over
            await self.runtime.remove(state.container_id)
            await self._end_lost(run)

    async def _inspect_or_none(self, container_id: Handle) -> ContainerState | None:
        try:
            return await self.runtime.inspect(container_id)
        except ContainerGone:
            return None

    async def _end_lost(self, run: Run) -> None:
        """No container (or one that never started): an assigned run goes back to the queue,
        a cancelling one is cancelled, a running one is lost. Each only from the status it
        had in the snapshot: if it moved on since, nothing happens."""
        if run.status is RunStatus.ASSIGNED:
            limit = run.spec.max_pending_seconds if run.spec else None
            await self.store.transition(
                run.id,
                RunStatus.PENDING,
                expect={RunStatus.ASSIGNED},
                detail="requeued: jobd stopped before its container ran",
                # it was placed in time: its wait for a place starts again
                pending_until=now() + timedelta(seconds=limit) if limit else None,
                allocation=None,
            )
        elif run.status is RunStatus.CANCELLING:
            await self.endings.end_cancelled(run, "cancelled; its container was gone")
        else:
            await self.pump.finish(run.id)
            message = "its container vanished (removed outside jobd, or a reboot)"
            await self.endings.end(
                run.id,
                RunStatus.FAILED,
                FailureType.LOST,
                message,
                expect=frozenset({RunStatus.RUNNING}),
            )

    async def _adopt(self, run: Run, state: ContainerState) -> None:
        self.pump.track(run.id, stream_fields(run), run.progress)
        self.runtime.adopt(state)
        if run.status is RunStatus.ASSIGNED:
            started = state.started_at or now()
            await self.store.transition(
                run.id,
                RunStatus.RUNNING,
                expect={RunStatus.ASSIGNED},
                detail="adopted after restart",
                started_at=started,
                deadline_at=started + timedelta(seconds=run.timeout_seconds),
            )
        log.info("adopted running container of %s", run.id)
