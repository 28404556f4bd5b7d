"""Runs as the edge asks for them: read one (with where it stands in the queue) and its state
changes, cancel it, stop it cleanly. Writes intent to the store and wakes the supervisor,
which does the stopping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobd.domain.records import now, rfc3339
from jobd.domain.runs import Run
from jobd.domain.states import Failure, FailureType, RunStatus, StopReason
from jobd.errors import Conflict
from jobd.store import Store


class Runs:
    def __init__(
        self,
        store: Store,
        wake: Callable[[], None],
        waiting: Callable[[], Mapping[str, str]],
    ) -> None:
        self.store = store
        self.wake = wake  # the supervisor: runs to stop
        self.waiting = waiting  # why queued runs wait, as placement last saw

    async def get(self, run_id: str) -> Run:
        return await self.store.get_run(run_id)

    async def queue_doc(self, run: Run) -> dict[str, Any]:
        """Where a queued run stands: how many runs are ahead of it, and why it waits."""
        ahead = await self.store.queue_position(run)
        reason = self.waiting().get(run.id)
        if run.not_before is not None and run.not_before > now():
            reason = f"waiting out its retry backoff until {rfc3339(run.not_before)}"
        elif reason is None:
            reason = f"queued behind {ahead} runs" if ahead else "next to be placed"
        return {"position": ahead + 1, "ahead": ahead, "reason": reason}

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's state changes, oldest first, as the store keeps them."""
        run = await self.store.get_run(run_id)
        return await self.store.run_events(run.id)

    async def stop(self, run_id: str) -> Run:
        """Stop a run cleanly: SIGTERM, the grace period, SIGKILL. It ends succeeded when its
        container exits 0, cancelled otherwise. A run that has not started is cancelled."""
        run = await self.store.get_run(run_id)
        if run.status is not RunStatus.RUNNING:
            return await self.cancel(run_id)
        if run.stop_reason is not None:
            return run  # a stop (or a deadline's) is already under way
        recorded = await self.store.update_run(
            run_id, detail="stop requested", expect={RunStatus.RUNNING}, stop_reason=StopReason.STOP
        )
        if not recorded:  # it ended, or was cancelled, meanwhile
            return await self.cancel(run_id)
        self.wake()
        return await self.store.get_run(run_id)

    async def cancel(self, run_id: str) -> Run:
        """A pending run ends cancelled at once; an assigned or running one becomes cancelling
        and the supervisor stops it. A run that already ended is a conflict."""
        run = await self.store.get_run(run_id)
        if run.status is RunStatus.PENDING:
            cancelled = await self.store.transition(
                run_id,
                RunStatus.CANCELLED,
                expect={RunStatus.PENDING},
                detail="cancelled before it started",
                finished_at=now(),
                failure=Failure(type=FailureType.CANCELLED, message="cancelled before it started"),
            )
            if cancelled is not None:
                return cancelled
        cancelling = await self.store.transition(
            run_id,
            RunStatus.CANCELLING,
            expect={RunStatus.ASSIGNED, RunStatus.RUNNING},
            detail="cancel requested",
        )
        if cancelling is not None:
            self.wake()
            return cancelling
        run = await self.store.get_run(run_id)
        if run.status.is_terminal:
            raise Conflict(f"run {run_id} already ended ({run.status.value}); nothing to cancel")
        return run  # already cancelling
