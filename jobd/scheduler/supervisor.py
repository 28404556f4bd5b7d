"""The supervisor: the only part of jobd that talks to the runtime, through its contract.

Its loop reads like its own description — reap what exited, fire due schedules, apply
cancellations, enforce deadlines, keep outputs within bounds, sample running runs' CPU,
memory and GPUs, expire queued runs past their limit, start what fits, purge deleted jobs,
prune finished runs past [retention] —
woken by an event (a new run, a cancel, a container's death) or by a timeout (the next
deadline, schedule tick or retry, the periodic reconcile). Each step lives in a module of
its own: recovery.py (reap, reconcile), stops.py (cancellations, deadlines), outputs.py
(output limits, sealing), sampling.py (run metrics), passes.py (placement passes), launch.py
(each launch a task of its own), endings.py (how a run ends), uploads.py (expiring uploads),
retention.py (pruning finished runs),
all sharing what is in flight (inflight.py).

Every state change is a guarded transition through the store that names the status it was
decided from (`expect=`): when another writer (a cancel, a reconcile) got there first, the
change is refused and the decision is made again from the run as it is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from jobd.config import Config
from jobd.domain.capacity import never_fits
from jobd.domain.engine import RuntimeInfo
from jobd.domain.jobs import JobSpec
from jobd.domain.records import now
from jobd.domain.resources import Plan
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES, RunStatus
from jobd.errors import lacks_space
from jobd.logs.pump import LogPump
from jobd.node.inventory import Inventory
from jobd.node.outputs import remove_outputs
from jobd.runtime.contract import ContainerRuntime
from jobd.scheduler.endings import Endings
from jobd.scheduler.inflight import InFlight
from jobd.scheduler.launch import Launcher
from jobd.scheduler.outputs import OutputWatch
from jobd.scheduler.passes import DEEP_PASS_SECONDS, PassTimes, Placer
from jobd.scheduler.recovery import Recovery
from jobd.scheduler.retention import Pruner
from jobd.scheduler.sampling import Sampler
from jobd.scheduler.stops import Stops
from jobd.scheduler.uploads import expire_uploads, tidy_uploads
from jobd.store import Store

log = logging.getLogger(__name__)
RECONCILE_SECONDS = 30.0
GPU_SAMPLE_SECONDS = 2.0  # while GPU runs are active: how often their GPU memory is sampled
STEP_GAP = 0.02  # seconds; see _pace
FULL_DISK_TELL_SECONDS = 60.0  # a step failing for a full disk is said at most this often


class Supervisor:
    def __init__(
        self,
        *,
        store: Store,
        runtime: ContainerRuntime,
        pump: LogPump,
        config: Config,
        inventory: Inventory,
        info: RuntimeInfo,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.pump = pump
        self.config = config
        self.inventory = inventory
        self.info = info  # what the runtime said of itself at startup
        self._wake = asyncio.Event()
        self.inflight = InFlight(self.wake)
        self.endings = Endings(
            store=store, runtime=runtime, pump=pump, inflight=self.inflight, config=config
        )
        self.recovery = Recovery(
            store=store,
            runtime=runtime,
            pump=pump,
            inflight=self.inflight,
            endings=self.endings,
            closing=lambda: self._closing,
        )
        self.stops = Stops(
            store=store,
            runtime=runtime,
            config=config,
            inflight=self.inflight,
            endings=self.endings,
        )
        self.placer = Placer(store=store, config=config, inventory=inventory, info=info)
        self.outputs = OutputWatch(store=store, config=config)
        self.sampler = Sampler(store=store, runtime=runtime, inventory=inventory, config=config)
        self.retention = Pruner(store=store, config=config)
        self.launcher = Launcher(
            store=store,
            runtime=runtime,
            pump=pump,
            config=config,
            inventory=inventory,
            info=info,
            inflight=self.inflight,
            endings=self.endings,
            started=self.sampler.found,
        )
        self._last_step = 0.0
        self._deadlines: list[datetime] = []  # of running runs, as the last step saw them
        self._next_timer: datetime | None = None  # the next tick or retry, as the last step saw
        self._closing = False  # no new steps once shutdown began
        self._sampling = False  # GPU runs are active: step often enough to sample their use
        self._measuring = False  # runs are running: step often enough to measure their outputs
        self._purge_due = True  # deleted jobs may wait (since before a restart, too)
        self._told_full_at: float | None = None  # when a step that met a full disk was logged
        self.started_at = time.time()

    def reason(self, run: Run) -> str | None:
        """Why this queued run waits, as the last placement pass saw."""
        return self.placer.reason(run)

    @property
    def passes(self) -> PassTimes:
        return self.placer.passes

    @property
    def pass_waits(self) -> PassTimes:
        return self.placer.pass_waits

    def report(self) -> dict[str, Any]:
        """How long placement passes take, for /v1/health."""
        return self.placer.report()

    def close(self) -> None:
        """Shutdown has begun: the loop takes no further step, even if its cancellation
        were lost."""
        self._closing = True
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def purge_soon(self) -> None:
        """A job was deleted: remove what it leaves once its runs have stopped."""
        self._purge_due = True
        self.wake()

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        self.wake()  # a first step at once: recovery may have left runs to place or stop
        while not self._closing:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the event fires, and the loop would run on
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sleep_seconds()):
                        await self._wake.wait()
                await self._pace()
                self._wake.clear()
                if not self._closing:
                    await self.step()
            except Exception as e:  # podman, the disk or the store hiccuped: the daemon goes on
                self._tell_failure(e)
                await asyncio.sleep(0.5)

    def _tell_failure(self, error: Exception) -> None:
        """A failed step in jobd's log, with its traceback; one that met a full disk (the
        same failure twice a second until there is room; health says so meanwhile) in a line,
        once a minute."""
        if not lacks_space(error):
            log.error("supervisor step failed; trying again", exc_info=error)
            return
        moment = time.monotonic()
        if self._told_full_at is None or moment - self._told_full_at >= FULL_DISK_TELL_SECONDS:
            self._told_full_at = moment
            log.warning("supervisor step: %s; trying again twice a second", error)

    async def _pace(self) -> None:
        """At most one step per STEP_GAP: a burst of wakes (a script submitting thousands
        of jobs) is served by a few steps, each seeing many changes. A wake after a quiet
        spell steps at once, so a lone submission is not delayed."""
        wait = self._last_step + STEP_GAP - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_step = time.monotonic()

    async def step(self) -> None:
        """One pass over what needs doing, from one read of the active runs."""
        await self.recovery.reap_exits()
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        if await self.fire_schedules():
            active = await self.store.runs_with_status(ACTIVE_STATUSES)  # a replace cancelled
        await self.stops.apply_cancellations(active)
        await self.stops.enforce_deadlines(active)
        await self.stops.apply_cancellations(await self.outputs.check(active))
        await self.sampler.sample(active)
        await self.launcher.ports.step(active)
        await self.expire_pending()
        await self.placer.start_what_fits(self.launcher.launch)
        if self._purge_due:
            self._purge_due = await self.purge_deleted_jobs()
        self.retention.step()  # prunes in a task of its own, every [retention] interval
        self._remember_timers(active)
        self._next_timer = await self.store.next_timer(now())
        if time.monotonic() - self.recovery.last_reconcile > RECONCILE_SECONDS:
            await self.reconcile()

    def _remember_timers(self, active: list[Run]) -> None:
        self._deadlines = [
            r.deadline_at
            for r in active
            if r.status is RunStatus.RUNNING and r.deadline_at and not r.stop_reason
        ]
        self._sampling = self.placer.placed_gpus or any(
            r.allocation and r.allocation.gpus for r in active
        )
        self._measuring = any(r.status is RunStatus.RUNNING for r in active)

    async def shutdown(self) -> None:
        """Before the runtime and the store close: cancel launches and stops and wait for
        them. What they leave (an assigned run, a cancelling one) the next start recovers."""
        self._closing = True
        tasks = [*self.inflight.tasks(), *self.retention.tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def watch_exits(self) -> None:
        """Feed container deaths from the runtime's exit stream into the loop."""
        async for exit_ in self.runtime.exits(since=self.started_at):
            self.inflight.exits.put_nowait(exit_)
            self.wake()

    def _sleep_seconds(self) -> float:
        """Until the soonest deadline, schedule tick or retry seen by the last step, or the
        next reconcile (or GPU sample, while GPU runs are active). A run that starts
        meanwhile (a job created or updated) wakes the loop, so what it brings is seen by
        the step after."""
        moments = [*self._deadlines, *([self._next_timer] if self._next_timer else [])]
        longest = GPU_SAMPLE_SECONDS if self._sampling else RECONCILE_SECONDS
        if self._measuring:
            due = min(self.outputs.due_in(), self.sampler.due_in())
            longest = min(longest, max(0.05, due))
        if self.placer.look_further:
            longest = min(longest, DEEP_PASS_SECONDS)
        longest = min(longest, self.retention.due_in())
        if not moments:
            return longest
        soonest = (min(moments) - now()).total_seconds()
        return max(0.05, min(longest, soonest))

    # -- recovery ---------------------------------------------------------------------

    async def recover(self) -> None:
        """At startup: adopt running containers, finish those that exited while jobd was
        down, requeue runs that never got a container, end the rest as lost; and delete
        what interrupted uploads left."""
        await self.recovery.recover()
        await tidy_uploads(self.store, self.config)

    async def reconcile(self) -> None:
        """Check the runs against the runtime; expire the uploads no job has named for a
        while, the audit log's old entries and old metric points (the same unhurried pace
        suits them all)."""
        await self.recovery.reconcile()
        await expire_uploads(self.store, self.config)
        await self.store.prune_audit(now() - timedelta(days=self.config.audit_keep_days))
        await self.sampler.prune()

    # -- schedules and pending limits -------------------------------------------------

    async def fire_schedules(self) -> bool:
        """Start the runs of the schedules due now. Whether a replace cancelled runs."""
        if self._next_timer is None or self._next_timer > now():
            return False
        firings = await self.store.fire_schedules(now(), self.plan_for)
        for run in firings.started:
            log.info("schedule of %s fired: %s", run.job_id, run.id)
        return bool(firings.stopping)

    def plan_for(self, spec: JobSpec) -> Plan | None:
        """What a tick's run gets: the job's own requirements, or its plan as configured
        now; None when the plan is gone or could never run on this node."""
        if spec.resources:
            plan: Plan | None = Plan.from_requirements(spec.resources)
        else:
            plan = self.config.plans.get(spec.plan)
        node = self.inventory.last
        if plan is None or (node is not None and never_fits(plan, node)):
            return None
        return plan

    async def expire_pending(self) -> None:
        """Fail the queued runs that waited past their maxPendingSeconds (unschedulable)."""
        if self._next_timer is None or self._next_timer > now():
            return
        for run in await self.store.expire_pending(now(), self.placer.reason_of):
            log.info("%s: %s", run.id, run.failure.message if run.failure else "unschedulable")

    # -- deleted jobs -----------------------------------------------------------------

    async def purge_deleted_jobs(self) -> bool:
        """For each deleted job none of whose runs is active any more (apply_cancellations
        stops the ones its deletion cancelled): remove its containers, its logs, then its
        rows. The deletion is recorded first, so this resumes after a restart. Whether
        deleted jobs still wait for runs to stop."""
        deleted = await self.store.deleted_jobs()
        ready = {
            job_id: runs
            for job_id, runs in deleted.items()
            if not any(r.status in ACTIVE_STATUSES for r in runs)
        }
        if ready:
            run_ids = {r.id for runs in ready.values() for r in runs}
            containers = [c for c in await self.runtime.list_managed() if c.run_id in run_ids]
            for container in containers:
                await self.runtime.remove(container.container_id)
            for job_id, runs in ready.items():
                for run in runs:
                    await self.pump.remove(run.id)
                    await asyncio.to_thread(remove_outputs, run.id, self.config)
                await self.store.purge_job(job_id)
        return len(ready) < len(deleted)
