"""How runs end: a container's exit recorded as the run's outcome, or an end without an exit
code to tell (cancelled, failed to launch, lost); and the container removed once its run has
ended. Every final status write is shielded from cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from jobd.config import Config
from jobd.domain.owners import EVERYONE
from jobd.domain.records import now
from jobd.domain.runs import Run, outcome
from jobd.domain.states import Failure, FailureType, RunStatus
from jobd.errors import JobdError, NoSpace, RuntimeFailure
from jobd.logs.pump import LogPump
from jobd.runtime.contract import ContainerRuntime, ContainerState, Handle
from jobd.scheduler.inflight import InFlight
from jobd.scheduler.outputs import seal
from jobd.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
FINISH_ATTEMPTS = 5
REAP_AGAIN_SECONDS = 1.0  # after an end the database had no room for
RUNNING_OR_ASSIGNED = frozenset({RunStatus.ASSIGNED, RunStatus.RUNNING})


async def shielded(operation: Coroutine[Any, Any, T]) -> T:
    """Final status writes finish even if the daemon is shutting down."""
    return await asyncio.shield(operation)


class Endings:
    def __init__(
        self,
        *,
        store: Store,
        runtime: ContainerRuntime,
        pump: LogPump,
        inflight: InFlight,
        config: Config,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.pump = pump
        self.inflight = inflight
        self.config = config
        self._unrecorded: set[str] = set()  # runs whose end a full disk kept out, so far
        self._again: set[str] = set()  # runs to be reaped again in a moment

    async def finish(self, run_id: str, state: ContainerState) -> None:
        """The container exited: record the outcome, keep the logs, remove the container.
        The outcome is decided from the run as it is now; if a cancel lands meanwhile, it is
        decided again. The container goes only once the run has ended.

        The log's last lines are taken in first (followers read to the end once the run is
        terminal), but nothing about the log stands in the record's way: a log that cannot
        be written (a full disk) is finished in memory and written by the pump later. An end
        the database has no room for is tried again a moment later."""
        self.inflight.stop_failed.pop(run_id, None)
        await self._finish_log(run_id)
        for _ in range(FINISH_ATTEMPTS):
            run = await self.store.get_run(run_id, reach=EVERYONE)
            try:
                ended = run.status.is_terminal or await self._record_exit(run, state)
            except NoSpace as e:
                if run_id not in self._unrecorded:  # said once, not at every try
                    self._unrecorded.add(run_id)
                    log.error("run %s exited (%s) but %s", run_id, state.exit_code, e)
                self._reap_again(run_id, state.container_id)
                return
            if ended:
                if run_id in self._unrecorded:
                    self._unrecorded.discard(run_id)
                    log.info("run %s: its end is recorded, now that there is room", run_id)
                self.remove_later(state.container_id)
                self._in_background(seal(run_id, self.store, self.config), f"seal-{run_id}")
                return
        log.error("run %s kept changing while it finished; reconcile will retry", run_id)

    def _reap_again(self, run_id: str, container_id: Handle) -> None:
        """The end could not be written: reaped again in a moment (the container stays). One
        moment for each run, however many times it was reaped meanwhile (its exit event and
        a reconcile both)."""
        if run_id in self._again:
            return
        self._again.add(run_id)

        def again() -> None:
            self._again.discard(run_id)
            self.inflight.reap_later(run_id, container_id)
            self.inflight.wake()

        asyncio.get_running_loop().call_later(REAP_AGAIN_SECONDS, again)

    async def _finish_log(self, run_id: str) -> None:
        markers = self.pump.markers
        if markers is not None and not self.pump.following(run_id):
            # it ended while jobd was down: the markers it printed since go on its record
            found = (await self.store.get_runs([run_id])).get(run_id)
            if found is not None:
                markers.track(run_id, found.progress)
        try:
            await self.pump.finish(run_id)
        except (JobdError, OSError) as e:  # the run's end is recorded all the same
            log.error("finishing the log of %s failed: %s", run_id, e)

    async def _record_exit(self, run: Run, state: ContainerState) -> bool:
        status, failure = outcome(
            run,
            exit_code=state.exit_code,
            oom_killed=state.oom_killed,
            command_failure=state.command_failure,
        )
        finished = max(state.finished_at or now(), run.started_at or state.started_at or now())
        ended = await shielded(
            self.store.transition(
                run.id,
                status,
                expect={run.status},
                detail=f"container exited ({state.exit_code})",
                finished_at=finished,
                started_at=run.started_at or state.started_at,
                exit_code=state.exit_code,
                failure=failure,
            )
        )
        return ended is not None

    def remove_later(self, container_id: Handle) -> None:
        """The run has ended: its container goes in the background, so the slot it freed is
        placed now, not after `podman rm`. A removal cut short by shutdown is done by the next
        start's reconcile (a container of an ended run is removed)."""
        self._in_background(self._remove(container_id), f"remove-{container_id}")

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """After a run ended: its container's removal, its outputs' seal. Shutdown cancels
        them; a seal cut short is made when the outputs are first listed."""
        task = asyncio.create_task(self._logged(work, name), name=name)
        self.inflight.removing.add(task)
        task.add_done_callback(self.inflight.removing.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except (JobdError, OSError) as e:
            log.error("%s failed: %s", name, e)

    async def _remove(self, container_id: Handle) -> None:
        try:
            await self.runtime.remove(container_id)
        except RuntimeFailure as e:
            log.error("removing container %s failed; reconcile retries: %s", container_id, e)

    async def end(
        self,
        run_id: str,
        status: RunStatus,
        kind: FailureType,
        message: str,
        *,
        expect: frozenset[RunStatus],
    ) -> Run | None:
        """End a run that has no exit code to tell: cancelled, failed to launch, or lost."""
        return await shielded(
            self.store.transition(
                run_id,
                status,
                expect=expect,
                detail=message,
                finished_at=now(),
                failure=Failure(type=kind, message=message),
            )
        )

    async def end_cancelled(self, run: Run, message: str) -> None:
        cancelling = frozenset({RunStatus.CANCELLING})
        await self.end(
            run.id, RunStatus.CANCELLED, FailureType.CANCELLED, message, expect=cancelling
        )

    async def fail(self, run: Run, kind: FailureType, message: str) -> None:
        """End a run whose launch failed. Without room to record it, the run is left as it
        is for reconcile (requeued, or adopted if its container was made)."""
        try:
            failed = await self.end(
                run.id, RunStatus.FAILED, kind, message, expect=RUNNING_OR_ASSIGNED
            )
        except NoSpace as e:
            log.error("run %s failed (%s) but %s; reconcile takes it up", run.id, message, e)
            return
        if failed is None:  # cancelled while launching: it ends cancelled, not failed
            current = await self.store.get_run(run.id, reach=EVERYONE)
            await self.end_cancelled(current, "cancelled while its container was created")

    async def abandon(self, run_id: str, container_id: Handle | None = None) -> None:
        """A launch that will not go on: let go of its logs, remove its container (if it got
        one; its OOM watch goes with it)."""
        await self._finish_log(run_id)
        if container_id is None:
            container_id = (await self.store.get_run(run_id, reach=EVERYONE)).container_id
        if container_id is not None:
            await self.runtime.remove(container_id)
