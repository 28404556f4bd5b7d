"""The embedded store: jobs, runs and run events in one SQLite file (WAL mode).

Every run state change goes through `transition`: a guarded `UPDATE ... WHERE status IN (...)`
plus an event row, in one transaction. Zero rows changed means the transition was illegal
(another writer got there first), which is what makes cancel-vs-exit races and restarts safe.
Writes go to one connection, each a function of it that runs whole, committed in groups on the
event loop (jobd/store/writer.py says why); reads use a second connection on a thread
(aiosqlite; WAL lets them run beside a write).

`Store` is the one handle the rest of jobd holds. The queries live beside it, by what they
read and write: jobs.py, runs.py (runs, their events), queue.py (placement), lookup.py (ids
by prefix, jobs by name), run_listing.py (runs across jobs) and the rest; schema.py migrates.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from jobd.domain.audit import AuditEntry
from jobd.domain.jobs import Job, JobFilter
from jobd.domain.metrics import MetricsQuery, RunUsage, Sample, Series, known
from jobd.domain.outputs import OutputSummary
from jobd.domain.owners import Reach
from jobd.domain.progress import Progress
from jobd.domain.recipes import Recipe
from jobd.domain.records import now
from jobd.domain.references import Kind
from jobd.domain.retention import FinishedRun, Retention
from jobd.domain.run_filter import RunFilter
from jobd.domain.runs import Run
from jobd.domain.sharing import FairShare, QueueLimit
from jobd.domain.states import RunStatus, sources_of
from jobd.domain.tokens import Token
from jobd.domain.uploads import Upload
from jobd.domain.volumes import Volume
from jobd.domain.workflows import Dependency
from jobd.store import (
    audit,
    changes,
    jobs,
    lookup,
    metrics,
    queue,
    recipes,
    retention,
    run_listing,
    runs,
    schedules,
    tokens,
    uploads,
    use,
    volumes,
    workflows,
)
from jobd.store.queue import Choose, Placement
from jobd.store.rows import Page
from jobd.store.schedules import Firings, PlanLookup
from jobd.store.schema import connect_reader, prepare
from jobd.store.writer import Writer

T = TypeVar("T")


class Store:
    def __init__(
        self, writer: Writer, reader: aiosqlite.Connection, path: Path | None = None
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.path = path  # the database file
        self._past_use = use.PastUse()  # fair share's use before today, summed hourly

    @classmethod
    async def open(cls, path: Path) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await Writer.open(path, prepare)
        try:
            reader = await connect_reader(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, path)

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(
        self,
        job: Job,
        submission: Sequence[Run],
        limits: Iterable[QueueLimit] = (),
        after: Sequence[Dependency] = (),
    ) -> None:
        """Record a new job and its first runs (one, or an array's; none for a scheduled job:
        its ticks make them), held by `after` as things stand when they are written;
        TooManyRequests, writing nothing, when they would break a max_queued quota."""

        def create(db: sqlite3.Connection) -> None:
            if submission:
                queue.check_queue_room(db, limits, len(submission))
            jobs.create_job(db, job, submission)
            if submission and after:
                workflows.hold(db, submission, after)

        await self._writer.write(create)

    async def update_job(self, job: Job, *, reschedule: bool) -> Job:
        """Replace the job's name, spec, labels and schedule with `job`'s, and with
        `reschedule` its next fire time too; the job as written."""
        return await self._writer.write(lambda db: jobs.update_job(db, job, reschedule))

    async def delete_job(self, job_id: str) -> list[Run]:
        """Mark the job deleted (it is hidden from now on) and end or cancel its runs: the
        pending ones end cancelled, the active ones become cancelling. Returns the runs that
        are cancelling, for the supervisor to stop. The rows go with purge_job."""
        return await self._writer.write(lambda db: jobs.delete_job(db, job_id))

    async def cancel_job(self, job_id: str, grace: int | None) -> list[str]:
        """Cancel the job's pending and active runs (jobs.cancel_job): the ids it changed."""
        return await self._writer.write(lambda db: jobs.cancel_job(db, job_id, grace))

    async def purge_job(self, job_id: str) -> bool:
        """Remove a deleted job's rows (runs, events, labels) if no run is active: if it did."""
        return await self._writer.write(lambda db: jobs.purge_job(db, job_id))

    async def get_job(self, job_id: str, *, reach: Reach) -> Job:
        return await jobs.get_job(self._reader, job_id, reach)

    async def list_jobs(self, where: JobFilter, *, limit: int, cursor: str | None) -> Page[Job]:
        return await jobs.list_jobs(self._reader, where, limit=limit, cursor=cursor)

    async def deleted_jobs(self) -> dict[str, list[Run]]:
        """The deleted jobs not purged yet, each with its runs."""
        return await jobs.deleted_jobs(self._reader)

    async def job_named(self, name: str, *, reach: Reach, uid: int | None) -> str | None:
        """The newest job called `name` within reach, the caller's own (`uid`) first."""
        return await lookup.job_named(self._reader, name, reach, uid)

    async def ids_in_range(
        self, kind: Kind, ids: tuple[str, str], *, reach: Reach, limit: int
    ) -> list[tuple[str, str | None]]:
        """Up to `limit` ids of jobs (with their names) or runs in [low, high), newest first."""
        query = lookup.jobs_in_range if kind == "job" else lookup.runs_in_range
        return await query(self._reader, ids, reach, limit)

    async def array_counts(self, array_id: str) -> dict[str, int]:
        """How many of the array's runs are in each status (an index's latest attempt)."""
        return await workflows.array_counts(self._reader, array_id)

    async def waits_on(self, key: str) -> list[Dependency]:
        """What a held run (or an array, by its id) still waits on."""
        return await workflows.waits_on(self._reader, key)

    async def run_counts(self, job_id: str) -> dict[str, int]:
        """How many of the job's runs are in each status."""
        return await jobs.run_counts(self._reader, job_id)

    # -- schedules --------------------------------------------------------------------------

    async def fire_schedules(self, moment: datetime, plans: PlanLookup) -> Firings:
        """Fire every schedule due: one run per job however many were missed, written with its
        job's next fire time. `plans`: a job's plan now (None: gone from the configuration)."""
        return await self._writer.write(lambda db: schedules.fire_schedules(db, moment, plans))

    async def next_timer(self, moment: datetime) -> datetime | None:
        """The soonest moment after `moment` when something time-driven is due: a schedule's
        tick, the end of a retry's backoff, or a queued run's pending limit."""
        return await schedules.next_timer(self._reader, moment)

    # -- recipes ----------------------------------------------------------------------------

    async def put_recipe(
        self, recipe: Recipe, *, replace: bool, reach: Reach
    ) -> tuple[Recipe, bool]:
        """Create the recipe, or with `replace` create or replace it (keeping its creation
        time and owner). A new one whose name is taken is a Conflict, and so is a name taken
        by a recipe beyond `reach`. The recipe as written, and whether it was created."""
        return await self._writer.write(lambda db: recipes.put_recipe(db, recipe, replace, reach))

    async def update_recipe(self, recipe: Recipe) -> Recipe:
        return await self._writer.write(lambda db: recipes.update_recipe(db, recipe))

    async def delete_recipe(self, name: str) -> None:
        await self._writer.write(lambda db: recipes.delete_recipe(db, name))

    async def get_recipe(self, name: str, *, reach: Reach) -> Recipe:
        return await recipes.get_recipe(self._reader, name, reach)

    async def list_recipes(self, *, reach: Reach) -> list[Recipe]:
        return await recipes.list_recipes(self._reader, reach)

    # -- volumes ----------------------------------------------------------------------------

    async def create_volume(self, volume: Volume) -> None:
        """Record a new named volume; a Conflict if the name is taken."""
        await self._writer.write(lambda db: volumes.create_volume(db, volume))

    async def ensure_volume(self, volume: Volume) -> None:
        """Record the volume unless one of that name exists (a job's first use of it)."""
        await self._writer.write(lambda db: volumes.ensure_volume(db, volume))

    async def delete_volume(self, name: str) -> None:
        """Forget the volume; a Conflict while a queued or active run uses it."""
        await self._writer.write(lambda db: volumes.delete_volume(db, name))

    async def get_volume(self, name: str, *, reach: Reach) -> Volume:
        return await volumes.get_volume(self._reader, name, reach)

    async def list_volumes(self, *, reach: Reach) -> list[Volume]:
        return await volumes.list_volumes(self._reader, reach)

    async def volume_users(self, names: list[str]) -> dict[str, list[str]]:
        """The queued and active runs using each of these volumes."""
        return await volumes.volume_users(self._reader, names)

    # -- uploads ----------------------------------------------------------------------------

    async def create_upload(self, upload: Upload) -> None:
        await self._writer.write(lambda db: uploads.create_upload(db, upload))

    async def delete_upload(self, slug: str) -> Upload:
        """Forget the upload (it is returned); a Conflict while a job names it."""
        return await self._writer.write(lambda db: uploads.delete_upload(db, slug))

    async def expire_uploads(self, used_before: float) -> list[Upload]:
        """Forget the uploads no job names, last used before `used_before`; those forgotten."""
        return await self._writer.write(lambda db: uploads.expire_uploads(db, used_before))

    async def get_upload(self, slug: str, *, reach: Reach) -> Upload:
        return await uploads.get_upload(self._reader, slug, reach)

    async def get_uploads(self, slugs: list[str], *, reach: Reach) -> dict[str, Upload]:
        """Those of these uploads that exist within `reach`, by slug."""
        return await uploads.get_uploads(self._reader, slugs, reach)

    async def list_uploads(self, *, sha256: str | None = None, reach: Reach) -> list[Upload]:
        return await uploads.list_uploads(self._reader, sha256, reach)

    async def upload_users(self, slugs: list[str]) -> dict[str, list[str]]:
        """The jobs naming each of these uploads as an input."""
        return await uploads.upload_users(self._reader, slugs)

    async def upload_keys(self) -> list[tuple[str, str]]:
        return await uploads.upload_keys(self._reader)

    # -- tokens -----------------------------------------------------------------------------

    async def create_token(self, token: Token) -> None:
        """Record a new token; a Conflict if its owner has an unrevoked one of that name."""
        await self._writer.write(lambda db: tokens.create_token(db, token))

    async def revoke_token(self, token_id: str) -> Token:
        return await self._writer.write(
            lambda db: tokens.revoke_token(db, token_id, now().timestamp())
        )

    async def touch_token(self, token_id: str, moment: datetime) -> None:
        """Note when the token was last used (a sample: not every use is written)."""
        await self._writer.write(lambda db: tokens.touch_token(db, token_id, moment.timestamp()))

    async def get_token(self, key: str, *, reach: Reach) -> Token:
        """A token by id, or by its owner's name for it."""
        return await tokens.get_token(self._reader, key, reach)

    async def list_tokens(self, *, reach: Reach) -> list[Token]:
        return await tokens.list_tokens(self._reader, reach)

    async def all_tokens(self) -> list[Token]:
        return await tokens.all_tokens(self._reader)

    # -- the audit log ----------------------------------------------------------------------

    async def audit(self, entries: list[AuditEntry]) -> None:
        """Append entries to the audit log, in one write."""
        await self._writer.write(lambda db: audit.record(db, entries))

    async def prune_audit(self, before: datetime) -> int:
        """Entries older than `before` deleted, a batch a write; how many."""
        total = 0
        while True:
            gone = await self._writer.write(lambda db: audit.prune(db, before.timestamp()))
            total += gone
            if gone < audit.PRUNE_BATCH:
                return total

    async def audit_entries(
        self, *, user: str | None, before_id: int | None, limit: int
    ) -> list[AuditEntry]:
        return await audit.entries(self._reader, user=user, before_id=before_id, limit=limit)

    # -- runs: state changes ----------------------------------------------------------------

    async def add_runs(self, submission: Sequence[Run], limits: Iterable[QueueLimit] = ()) -> None:
        """Record a new submission of a job (one run, or an array's); TooManyRequests,
        writing nothing, when it would break a max_queued quota."""

        def add(db: sqlite3.Connection) -> None:
            queue.check_queue_room(db, limits, len(submission))
            runs.add_runs(db, submission)

        await self._writer.write(add)

    async def transition(
        self,
        run_id: str,
        to: RunStatus,
        *,
        expect: Iterable[RunStatus] | None = None,
        detail: str | None = None,
        **changes: Any,
    ) -> Run | None:
        """Move a run to `to` if it is now in a status the state machine allows it to leave
        for `to` and, when given, in `expect` (the status the caller decided from), setting
        `changes` (run columns; `failure` as a Failure) in the same transaction. Returns the
        updated run, or None when the run was elsewhere: someone else moved it first."""
        allowed = sources_of(to)
        if expect is not None:
            allowed = allowed & frozenset(expect)
        if not allowed:
            return None
        sources = sorted(s.value for s in allowed)
        assignments, values = runs.column_changes(changes)
        return await self._writer.write(
            lambda db: runs.transition(db, run_id, to, sources, assignments, values, detail)
        )

    async def update_run(
        self,
        run_id: str,
        *,
        detail: str,
        expect: Iterable[RunStatus] | None = None,
        **changes: Any,
    ) -> bool:
        """Record facts about a run without changing its status (the container id, the stop
        reason), only while it is in `expect` when given. Returns whether it was recorded."""
        assignments, values = runs.column_changes(changes)
        statuses = None if expect is None else [s.value for s in expect]
        return await self._writer.write(
            lambda db: runs.update_run(db, run_id, statuses, assignments, values, detail)
        )

    async def record_outputs(self, run_id: str, summary: OutputSummary) -> None:
        """What the ended run's outputs hold, counted once they are sealed: not an event."""
        await self._writer.write(lambda db: runs.record_outputs(db, run_id, summary))

    async def record_progress(self, progress: dict[str, Progress]) -> None:
        """What runs' marker lines said, each run's latest: one write, not an event."""
        await self._writer.write(lambda db: runs.record_progress(db, progress))

    async def record_gpu_peak(self, run_id: str, peak: int) -> None:
        """The most GPU memory the run was seen using: a sample, not an event."""
        await self._writer.write(lambda db: runs.record_gpu_peak(db, run_id, peak))

    async def record_metrics(self, samples: list[Sample], usage: dict[str, RunUsage]) -> None:
        """A round of samples, and what the sampled runs have used so far: one write."""
        await self._writer.write(lambda db: metrics.record(db, samples, usage))

    async def prune_metrics(self, points_before: datetime, minutes_before: datetime) -> int:
        """Delete the metric points past their keep, a batch per write; how many went."""
        gone = 0
        while True:
            batch = await self._writer.write(
                lambda db: metrics.prune(db, points_before.timestamp(), minutes_before.timestamp())
            )
            gone += batch
            if batch < metrics.PRUNE_BATCH:
                return gone

    async def metric_series(
        self, run_ids: list[str], query: MetricsQuery, resolution: int
    ) -> dict[str, list[Series]]:
        return await metrics.series(
            self._reader,
            run_ids,
            known(query.names),
            start=query.start,
            end=query.end,
            step=query.step,
            resolution=resolution,
        )

    # -- retention --------------------------------------------------------------------------

    async def jobs_to_prune(
        self, policy: Retention, moment: datetime, *, reach: Reach, after: str, limit: int
    ) -> list[str]:
        """Jobs within `reach` that may have finished runs `policy` prunes: `limit` at most,
        by id, after `after`."""

        def read(db: sqlite3.Connection) -> list[str]:
            at = moment.timestamp()
            return retention.jobs_to_prune(db, policy, at, reach, after=after, limit=limit)

        return await self._read_aside(read, [])

    async def finished_runs(
        self, job_ids: list[str]
    ) -> dict[str, tuple[str | None, list[FinishedRun]]]:
        """Each job's latest run id and its finished runs."""
        return await retention.finished_runs(self._reader, job_ids)

    async def remove_runs(self, run_ids: list[str]) -> list[str]:
        """Delete these finished runs' metric points, a batch per write, then their rows in
        one write; the ids deleted (a run that is its job's latest, or not finished, stays)."""
        while await self._writer.write(lambda db: retention.forget_points(db, run_ids)) >= (
            retention.POINTS_BATCH
        ):
            pass
        return await self._writer.write(lambda db: retention.remove_runs(db, run_ids))

    async def metric_bytes(self) -> tuple[int, str]:
        """The metric points' share of the database and how it was reckoned (a thread)."""
        return await self._read_aside(retention.metric_bytes, (0, "none"))

    async def _read_aside(self, read: Callable[[sqlite3.Connection], T], default: T) -> T:
        """A long read on a connection of its own, in a thread (`default` without a file)."""
        if self.path is None:
            return default
        return await asyncio.to_thread(retention.on_own_connection, self.path, read)

    # -- runs: reads ------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, reach: Reach) -> Run:
        """The run, if its job is within `reach` (NotFound otherwise)."""
        return await runs.get_run(self._reader, run_id, reach)

    async def get_runs(self, run_ids: Iterable[str]) -> dict[str, Run]:
        return await runs.get_runs(self._reader, run_ids)

    async def runs_across(self, where: RunFilter, *, limit: int, cursor: str | None) -> Page[Run]:
        """Runs of every job `where` reaches, newest first (run_listing.py)."""
        return await run_listing.list_runs(self._reader, where, limit=limit, cursor=cursor)

    async def runs_with_status(self, statuses: Iterable[RunStatus]) -> list[Run]:
        return await runs.runs_with_status(self._reader, statuses)

    async def list_runs(
        self, job_id: str, *, limit: int, cursor: str | None, reach: Reach
    ) -> Page[Run]:
        await self.get_job(job_id, reach=reach)
        return await runs.list_runs(self._reader, job_id, limit=limit, cursor=cursor)

    async def runs_in_window(
        self, job_id: str, *, since: datetime | None, until: datetime | None
    ) -> list[Run]:
        """The job's runs that may have written between `since` and `until`, oldest first."""
        return await runs.runs_in_window(self._reader, job_id, since=since, until=until)

    async def run_events(self, run_id: str) -> list[dict[str, Any]]:
        return await runs.run_events(self._reader, run_id)

    # -- the queue --------------------------------------------------------------------------

    async def assign_what_fits(self, choose: Choose, *, share: FairShare) -> Placement:
        """One placement pass, as one write: read the active runs, let `choose(queues, active
        runs)` walk each owner's queue (priority, then oldest first) and decide what starts on
        what, and move those runs to assigned with their allocations. The decision and its
        record share one transaction, so nothing changes between them; the queues are read
        only as far as `choose` walks them, so a pass costs the same with 10 or 10,000 runs
        queued. What ended runs used, decayed as `share` says, is read in it too."""
        past = self._past_use
        return await self._writer.write(
            lambda db: queue.assign_what_fits(db, choose, now(), share, past)
        )

    async def expire_pending(self, moment: datetime, reasons: queue.Reasons) -> list[Run]:
        """Fail the queued runs whose pending limit has passed (unschedulable), saying why
        they waited: `reasons(run id, owner uid)`, from the last placement pass."""
        return await self._writer.write(lambda db: queue.expire_pending(db, moment, reasons))

    async def count_pending(self) -> int:
        return await queue.count_pending(self._reader)

    async def queued(self, owner_uid: int | None, limit: int) -> list[Run]:
        return await queue.queued(self._reader, owner_uid, limit)

    async def oldest_pending(self) -> float | None:
        return await queue.oldest_pending(self._reader)

    async def latest_change(self) -> tuple[int, float]:
        return await changes.latest_change(self._reader)

    async def count_by_status(self) -> dict[str, int]:
        return await runs.count_by_status(self._reader)

    async def queue_position(self, run: Run) -> int:
        """How many queued runs are ahead of this pending one (0: it is next)."""
        return await queue.queue_position(self._reader, run)
