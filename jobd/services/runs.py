"""Runs as the edge asks for them: read one (with where it stands in the queue) and its state
changes, cancel it, stop it cleanly. Writes intent to the store and wakes the supervisor,
which does the stopping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobd.domain.owners import EVERYONE, Reach
from jobd.domain.records import now, rfc3339
from jobd.domain.references import Reference
from jobd.domain.run_filter import RunFilter
from jobd.domain.runs import Run
from jobd.domain.states import Failure, FailureType, RunStatus, StopReason
from jobd.domain.workflows import Held, waiting_reason
from jobd.errors import Conflict
from jobd.services import lookup
from jobd.store import Store
from jobd.store.rows import Page


class Runs:
    def __init__(
        self,
        store: Store,
        wake: Callable[[], None],
        waiting: Callable[[Run], str | None],
        *,
        default_grace: int,
    ) -> None:
        self.store = store
        self.wake = wake  # the supervisor: runs to stop
        self.waiting = waiting  # why queued runs wait, as placement last saw
        self.default_grace = default_grace  # a stop's grace unless the request gives one

    async def get(self, run_id: str, reach: Reach) -> Run:
        return await self.store.get_run(run_id, reach=reach)

    async def list_runs(self, where: RunFilter, *, limit: int, cursor: str | None) -> Page[Run]:
        """Runs of every job within `where`'s reach, newest first."""
        return await self.store.runs_across(where, limit=limit, cursor=cursor)

    async def resolve(self, text: str, reach: Reach) -> str:
        """The id of the run `text` names: its id or a unique prefix of it, within reach."""
        return await lookup.resolve(self.store, Reference("run", text), reach, reach.uid)

    async def queue_doc(self, run: Run) -> dict[str, Any]:
        """Where a queued run stands: how many runs are ahead of it, and why it waits."""
        ahead = await self.store.queue_position(run)
        reason = self.waiting(run)
        if run.held is Held.AFTER:
            reason = waiting_reason(await self.store.waits_on(run.array_id or run.id))
        elif run.held is Held.ARRAY:
            reason = f"waiting for a slot in array {run.array_id} (its parallelism is reached)"
        elif run.not_before is not None and run.not_before > now():
            reason = f"waiting out its retry backoff until {rfc3339(run.not_before)}"
        elif reason is None:
            reason = f"queued behind {ahead} runs" if ahead else "next to be placed"
        return {"position": ahead + 1, "ahead": ahead, "reason": reason}

    async def latest_change(self) -> tuple[int, float]:
        """What moves whenever any run changes, is created or writes its progress."""
        return await self.store.latest_change()

    async def queue(self, reach: Reach, limit: int) -> list[tuple[Run, str]]:
        """The queue's first runs within reach (an admin's: everyone's), each with why it
        waits."""
        runs = await self.store.queued(reach.uid, limit)
        return [(run, self.waiting(run) or "next in line when room frees") for run in runs]

    async def events(self, run_id: str, reach: Reach) -> list[dict[str, Any]]:
        """The run's state changes, oldest first, as the store keeps them."""
        run = await self.store.get_run(run_id, reach=reach)
        return await self.store.run_events(run.id)

    async def stop(self, run_id: str, reach: Reach, *, grace: int | None = None) -> Run:
        """Stop a run cleanly: SIGTERM, the grace period (`grace` seconds, or the configured
        default; 0: SIGKILL at once), SIGKILL. It ends succeeded when its container exits 0,
        cancelled otherwise. A run that has not started is cancelled."""
        run = await self.store.get_run(run_id, reach=reach)
        if run.status.is_terminal:
            raise Conflict(f"run {run_id} already ended ({run.status.value}); nothing to stop")
        if run.status is not RunStatus.RUNNING:
            return await self.cancel(run_id, reach, grace=grace)
        if run.stop_reason is not None:  # a stop (or a deadline's) is already under way
            return await self._hurry(run, grace)
        recorded = await self.store.update_run(
            run_id,
            detail=_asked("stop requested", grace),
            expect={RunStatus.RUNNING},
            stop_reason=StopReason.STOP,
            **_grace(grace),
        )
        if not recorded:  # it ended, or was cancelled, meanwhile
            return await self.cancel(run_id, reach, grace=grace)
        self.wake()
        return await self.store.get_run(run_id, reach=EVERYONE)

    async def cancel(self, run_id: str, reach: Reach, *, grace: int | None = None) -> Run:
        """A pending run ends cancelled at once; an assigned or running one becomes cancelling
        and the supervisor stops it, with `grace` as `stop` does. A run that already ended is a
        conflict; one already being stopped is stopped sooner when `grace` is shorter."""
        run = await self.store.get_run(run_id, reach=reach)
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
        stopping = run.stop_reason is not None  # a stop is under way: its grace can only shorten
        cancelling = await self.store.transition(
            run_id,
            RunStatus.CANCELLING,
            expect={RunStatus.ASSIGNED, RunStatus.RUNNING},
            detail=_asked("cancel requested", grace),
            **({} if stopping else _grace(grace)),
        )
        if cancelling is not None:
            self.wake()
            return await self._hurry(cancelling, grace) if stopping else cancelling
        run = await self.store.get_run(run_id, reach=EVERYONE)
        if run.status.is_terminal:
            raise Conflict(f"run {run_id} already ended ({run.status.value}); nothing to cancel")
        return await self._hurry(run, grace)  # already cancelling

    async def _hurry(self, run: Run, grace: int | None) -> Run:
        """A stop is under way: a shorter grace asked now (or --force) replaces its own."""
        if grace is None or (
            run.stop_grace_seconds is not None and run.stop_grace_seconds <= grace
        ):
            return run
        recorded = await self.store.update_run(
            run.id,
            detail=_asked("asked to stop sooner", grace),
            expect={RunStatus.CANCELLING, RunStatus.RUNNING},
            stop_grace_seconds=grace,
        )
        if recorded:
            self.wake()
        return await self.store.get_run(run.id, reach=EVERYONE)


def _grace(grace: int | None) -> dict[str, int]:
    return {} if grace is None else {"stop_grace_seconds": grace}


def _asked(what: str, grace: int | None) -> str:
    if grace is None:
        return what
    return f"{what}: SIGKILL at once" if grace == 0 else f"{what}: {grace}s grace"
