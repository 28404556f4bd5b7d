"""The supervisor: the only part of jobd that talks to the container runtime.

Its loop reads like its own description — reap what exited, fire due schedules, apply
cancellations, enforce deadlines, start what fits — woken by an event (a new run, a cancel, a
container's death) or by a timeout (the next deadline, schedule tick or retry, the periodic
reconcile). Each run's launch and each stop are named
tasks of their own, so a slow `podman create` or a 10-second stop grace never stalls the loop.

Every state change is a guarded transition through the store that names the status it was
decided from (`expect=`): when another writer (a cancel, a reconcile) got there first, the
change is refused and the decision is made again from the run as it is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from jobd.cdi import load_registry, max_cdi_version
from jobd.config import Config
from jobd.errors import ContainerGone, ImageNotFound, JobdError, RuntimeFailure
from jobd.inventory import Inventory
from jobd.logs import LogPump
from jobd.models import (
    ACTIVE_STATUSES,
    Allocation,
    Failure,
    FailureType,
    Job,
    JobSpec,
    Limits,
    PassTimes,
    Plan,
    Run,
    RunStatus,
    StopReason,
    now,
    outcome,
)
from jobd.passthrough import Passthrough, mentions_devices, passthrough
from jobd.placement import (
    DEEP_DEPTH,
    QUICK_DEPTH,
    Decision,
    Free,
    Slack,
    free_on,
    never_fits,
    place,
)
from jobd.runtime.image import DEFAULT_IMAGE, prepare_context, temporary_context
from jobd.runtime.oom import OomWatch
from jobd.runtime.types import (
    ContainerExit,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    RuntimeInfo,
)
from jobd.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
RECONCILE_SECONDS = 30.0
GPU_SAMPLE_SECONDS = 2.0  # while GPU runs are active: how often their GPU memory is sampled
LAUNCH_ALLOWANCE_SECONDS = 300.0  # an image pull and a container's creation, at most
DEEP_PASS_SECONDS = 5.0  # how often a placement pass may look far down the queue
STOP_RETRY_SECONDS = 5.0  # after a failed stop, before trying again
FINISH_ATTEMPTS = 5
NOFILE = 4096
STEP_GAP = 0.02  # seconds; see _pace
RUNNING_OR_ASSIGNED = frozenset({RunStatus.ASSIGNED, RunStatus.RUNNING})


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
        instance: str,
    ) -> None:
        self.instance = instance
        self.store = store
        self.runtime = runtime
        self.pump = pump
        self.config = config
        self.inventory = inventory
        self.info = info
        self.waiting: dict[str, str] = {}  # why queued runs wait, as the last pass saw
        self._gpu_peaks: dict[str, int] = {}  # run -> the most GPU memory recorded
        self._peaks_changed: set[str] = set()
        self._wake = asyncio.Event()
        self._exits: asyncio.Queue[ContainerExit] = asyncio.Queue()
        self._launching: dict[str, asyncio.Task[None]] = {}
        self._deferred: dict[str, str] = {}  # exits seen while their launch was in flight
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._stop_failed: dict[str, float] = {}  # run id -> when its last stop failed
        self._removing: set[asyncio.Task[None]] = set()
        self._watches: dict[str, OomWatch] = {}
        self._image_lock = asyncio.Lock()
        self._images: set[str] = set()  # seen present in podman's storage
        self._last_reconcile = 0.0
        self._last_step = 0.0
        self._deadlines: list[datetime] = []  # of running runs, as the last step saw them
        self._next_timer: datetime | None = None  # the next tick or retry, as the last step saw
        self._closing = False  # no new steps once shutdown began
        self._sampling = False  # GPU runs are active: step often enough to sample their use
        self._placed_gpus = False  # the last pass placed a GPU run
        self._last_deep = 0.0  # when a pass last looked far down the queue
        self._look_further = False  # the last pass stopped short: a deep one is due
        self._purge_due = True  # deleted jobs may wait (since before a restart, too)
        self.passes = PassTimes()  # placement passes, their own time
        self.pass_waits = PassTimes()  # the same passes as the supervisor waited for them
        self.started_at = time.time()

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
            except Exception:  # podman, the disk or the store hiccuped: the daemon goes on
                log.exception("supervisor step failed; trying again")
                await asyncio.sleep(0.5)

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
        await self.reap_exits()
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        if await self.fire_schedules():
            active = await self.store.runs_with_status(ACTIVE_STATUSES)  # a replace cancelled
        await self.apply_cancellations(active)
        await self.enforce_deadlines(active)
        await self.expire_pending()
        await self.start_what_fits()
        if self._purge_due:
            self._purge_due = await self.purge_deleted_jobs()
        self._deadlines = [
            r.deadline_at
            for r in active
            if r.status is RunStatus.RUNNING and r.deadline_at and not r.stop_reason
        ]
        self._sampling = self._placed_gpus or any(
            r.allocation and r.allocation.gpus for r in active
        )
        self._next_timer = await self.store.next_timer(now())
        if time.monotonic() - self._last_reconcile > RECONCILE_SECONDS:
            await self.reconcile()

    async def shutdown(self) -> None:
        """Before the runtime and the store close: cancel launches and stops and wait for
        them. What they leave (an assigned run, a cancelling one) the next start recovers."""
        self._closing = True
        tasks = [*self._launching.values(), *self._stopping.values(), *self._removing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()

    async def watch_exits(self) -> None:
        """Feed container deaths from podman's event stream into the loop."""
        async for exit_ in self.runtime.exits(since=self.started_at):
            self._exits.put_nowait(exit_)
            self.wake()

    def _sleep_seconds(self) -> float:
        """Until the soonest deadline, schedule tick or retry seen by the last step, or the
        next reconcile (or GPU sample, while GPU runs are active). A run that starts
        meanwhile (a job created or updated) wakes the loop, so what it brings is seen by
        the step after."""
        moments = [*self._deadlines, *([self._next_timer] if self._next_timer else [])]
        longest = GPU_SAMPLE_SECONDS if self._sampling else RECONCILE_SECONDS
        if self._look_further:
            longest = min(longest, DEEP_PASS_SECONDS)
        if not moments:
            return longest
        soonest = (min(moments) - now()).total_seconds()
        return max(0.05, min(longest, soonest))

    # -- step 1: reap -----------------------------------------------------------------

    async def reap_exits(self) -> None:
        seen: set[str] = set()
        while not self._exits.empty():
            exit_ = self._exits.get_nowait()
            if exit_.run_id in seen:
                continue
            seen.add(exit_.run_id)
            await self._reap(exit_.run_id, exit_.container_id)

    async def _reap(self, run_id: str, container_id: str) -> None:
        if run_id in self._launching:
            self._deferred[run_id] = container_id  # reaped once the launch has finished
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
            await self.finish(run.id, state)

    async def finish(self, run_id: str, state: ContainerState) -> None:
        """The container exited: record the outcome, keep the logs, remove the container.
        The outcome is decided from the run as it is now; if a cancel lands meanwhile, it is
        decided again. The container goes only once the run has ended."""
        self._stop_failed.pop(run_id, None)
        oom = self._close_watch(run_id) or state.oom_killed
        await self.pump.finish(run_id)
        for _ in range(FINISH_ATTEMPTS):
            run = await self.store.get_run(run_id)
            if run.status.is_terminal or await self._record_exit(run, state, oom):
                self._remove_later(state.container_id)
                return
        log.error("run %s kept changing while it finished; reconcile will retry", run_id)

    def _remove_later(self, container_id: str) -> None:
        """The run has ended: its container goes in the background, so the slot it freed is
        placed now, not after `podman rm`. A removal cut short by shutdown is done by the next
        start's reconcile (a container of an ended run is removed)."""
        task = asyncio.create_task(self._remove(container_id), name=f"remove-{container_id}")
        self._removing.add(task)
        task.add_done_callback(self._removing.discard)

    async def _remove(self, container_id: str) -> None:
        try:
            await self.runtime.remove(container_id)
        except RuntimeFailure as e:
            log.error("removing container %s failed; reconcile retries: %s", container_id, e)

    async def _record_exit(self, run: Run, state: ContainerState, oom: bool) -> bool:
        status, failure = outcome(run, exit_code=state.exit_code, oom_killed=oom)
        finished = max(state.finished_at or now(), run.started_at or state.started_at or now())
        ended = await self._shielded(
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

    def _close_watch(self, run_id: str) -> bool:
        """Stop watching the run's cgroup; whether it saw an OOM kill."""
        watch = self._watches.pop(run_id, None)
        if watch is None:
            return False
        oom = watch.check()
        watch.close()
        return oom

    # -- step 2: fire schedules -------------------------------------------------------

    async def fire_schedules(self) -> bool:
        """Start the runs of the schedules due now. Whether a replace cancelled runs."""
        if self._next_timer is None or self._next_timer > now():
            return False
        firings = await self.store.fire_schedules(now(), self._plan_for)
        for run in firings.started:
            log.info("schedule of %s fired: %s", run.job_id, run.id)
        return bool(firings.stopping)

    def _plan_for(self, spec: JobSpec) -> Plan | None:
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

    # -- step 3: cancellations --------------------------------------------------------

    async def apply_cancellations(self, active: list[Run]) -> None:
        """Stop the runs being cancelled, and the running ones asked to stop cleanly."""
        for run in active:
            if self._busy(run.id):
                continue
            if run.status is RunStatus.RUNNING and run.stop_reason is StopReason.STOP:
                self._stop(run)
                continue
            if run.status is not RunStatus.CANCELLING:
                continue
            if run.container_id is None:
                await self._end_cancelled(run, "cancelled before its container existed")
                continue
            self._stop(run)

    def _busy(self, run_id: str) -> bool:
        """A launch or a stop is in flight, or the last stop failed a moment ago."""
        if run_id in self._launching or run_id in self._stopping:
            return True
        failed_at = self._stop_failed.get(run_id)
        return failed_at is not None and time.monotonic() - failed_at < STOP_RETRY_SECONDS

    async def _end(
        self,
        run_id: str,
        status: RunStatus,
        kind: FailureType,
        message: str,
        *,
        expect: frozenset[RunStatus],
    ) -> Run | None:
        """End a run that has no exit code to tell: cancelled, failed to launch, or lost."""
        return await self._shielded(
            self.store.transition(
                run_id,
                status,
                expect=expect,
                detail=message,
                finished_at=now(),
                failure=Failure(type=kind, message=message),
            )
        )

    async def _end_cancelled(self, run: Run, message: str) -> None:
        cancelling = frozenset({RunStatus.CANCELLING})
        await self._end(
            run.id, RunStatus.CANCELLED, FailureType.CANCELLED, message, expect=cancelling
        )

    def _stop(self, run: Run) -> None:
        assert run.container_id is not None
        self._stopping[run.id] = asyncio.create_task(
            self._stop_container(run.id, run.container_id), name=f"stop-{run.id}"
        )

    async def _stop_container(self, run_id: str, container_id: str) -> None:
        try:
            await self.runtime.stop(container_id, self.config.stop_grace_seconds)
        except RuntimeFailure as e:
            log.error("stopping %s failed (retrying in %ss): %s", run_id, STOP_RETRY_SECONDS, e)
            self._stop_failed[run_id] = time.monotonic()
            return
        finally:
            self._stopping.pop(run_id, None)
        self._exits.put_nowait(
            ContainerExit(container_id=container_id, run_id=run_id, exit_code=None)
        )
        self.wake()

    # -- step 4: deadlines --------------------------------------------------------------

    async def enforce_deadlines(self, active: list[Run]) -> None:
        moment = now()
        for run in active:
            if run.status is not RunStatus.RUNNING:
                continue
            if run.deadline_at is None or run.deadline_at > moment or self._busy(run.id):
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

    # -- step 5: pending limits ---------------------------------------------------------

    async def expire_pending(self) -> None:
        """Fail the queued runs that waited past their maxPendingSeconds (unschedulable)."""
        if self._next_timer is None or self._next_timer > now():
            return
        for run in await self.store.expire_pending(now(), self.waiting):
            log.info("%s: %s", run.id, run.failure.message if run.failure else "unschedulable")

    # -- step 6: start what fits ------------------------------------------------------

    async def start_what_fits(self) -> None:
        """Place runs down the queue — priority, then oldest first — each where it fits now,
        with backfill around a blocked head (jobd/placement.py), and launch them. The pass
        (reads, decision, record) is one write in the store. Both its own time and the time
        the supervisor waited for it (the writer busy with other writes, the event loop with
        other work) are kept for /v1/health."""
        began = time.perf_counter()
        node = await self.inventory.read()
        pin = self.config.cpu_pinning and "cpuset" in self.info.cgroup_controllers

        depth = self._depth()

        def choose(queue: Iterator[Run], active: list[Run]) -> Decision:
            free = free_on(node, active)
            self._record_gpu_use(free, active)
            decision = place(
                queue,
                active,
                free,
                now(),
                pin=pin,
                slack=self._slack,
                depth=depth,
            )
            start = [(run, self._with_factors(a)) for run, a in decision.start]
            return dataclasses.replace(decision, start=start)

        placement = await self.store.assign_what_fits(choose)
        self.waiting = placement.waiting
        self._look_further = placement.truncated  # a deep pass then, without waiting a wake
        # a GPU run placed now is not in this step's snapshot: sample its memory soon anyway
        self._placed_gpus = any(r.allocation and r.allocation.gpus for r in placement.assigned)
        self.passes.add(placement.seconds)
        self.pass_waits.add(time.perf_counter() - began)
        for run in placement.assigned:
            self._launching[run.id] = asyncio.create_task(
                self._launch(run), name=f"launch-{run.id}"
            )
        await self._save_gpu_peaks()

    def _depth(self) -> int:
        """How far down the queue this pass looks: a little on every wake (passes stay
        cheap with thousands queued), far every DEEP_PASS_SECONDS at most, for backfill
        (Slurm's own backfill runs every 30 s)."""
        if time.monotonic() - self._last_deep < DEEP_PASS_SECONDS:
            return QUICK_DEPTH
        self._last_deep = time.monotonic()
        return DEEP_DEPTH

    def _with_factors(self, allocation: Allocation) -> Allocation:
        factor = self.config.gpus.factor
        gpus = tuple(dataclasses.replace(g, factor=factor(g.name)) for g in allocation.gpus)
        return dataclasses.replace(allocation, gpus=gpus)

    def _record_gpu_use(self, free: Free, active: list[Run]) -> None:
        """Note the GPU memory each run's processes use now (as this pass reckons it), when
        more than seen before."""
        if self._gpu_peaks:
            live = {r.id for r in active}
            self._gpu_peaks = {k: v for k, v in self._gpu_peaks.items() if k in live}
        use: dict[str, int] = {}
        for state in free.gpus:
            for run_id, used in state.used.items():
                use[run_id] = use.get(run_id, 0) + used
        for run_id, used in use.items():
            if used > self._gpu_peaks.get(run_id, 0):
                self._gpu_peaks[run_id] = used
                self._peaks_changed.add(run_id)

    async def _save_gpu_peaks(self) -> None:
        changed, self._peaks_changed = self._peaks_changed, set()
        for run_id in changed:
            await self.store.record_gpu_peak(run_id, self._gpu_peaks.get(run_id, 0))

    async def _launch(self, run: Run) -> None:
        try:
            await self._launch_steps(run)
        except asyncio.CancelledError:
            raise  # shutdown: the run stays assigned; the next start requeues or adopts it
        except Exception as e:  # never leave a run stuck in assigned, nor its container behind
            log.exception("launching %s failed", run.id)
            await self._abandon(run.id)
            await self._fail(run, FailureType.RUNTIME_ERROR, f"launch failed: {e}")
        finally:
            self._launching.pop(run.id, None)
            container_id = self._deferred.pop(run.id, None)
            if container_id is not None:
                self._exits.put_nowait(
                    ContainerExit(container_id=container_id, run_id=run.id, exit_code=None)
                )
            self.wake()

    async def _launch_steps(self, run: Run) -> None:
        job = await self.store.get_job(run.job_id)
        devices = await self._passthrough(run)
        if devices is None:
            return
        spec = self._container_spec(run, job, devices)
        try:
            container_id = await self._create(spec)
        except ImageNotFound as e:
            await self._fail(run, FailureType.IMAGE_NOT_FOUND, str(e))
            return
        except RuntimeFailure as e:
            gpus = devices.names and mentions_devices(str(e))
            kind = FailureType.GPU_UNAVAILABLE if gpus else FailureType.RUNTIME_ERROR
            await self._fail(run, kind, str(e))
            return
        recorded = await self.store.update_run(
            run.id,
            detail="container created",
            expect={RunStatus.ASSIGNED},
            container_id=container_id,
            limits=self._limits(run),
        )
        if not recorded:
            await self._drop_unstarted(run, container_id)
            return
        pid = await self._arm_oom_watch(run.id, container_id)
        if not await self._verify_devices(run, container_id, pid, devices):
            return
        self.pump.track(run.id)
        await self._start(run, container_id)

    async def _passthrough(self, run: Run) -> Passthrough | None:
        """The run's GPUs as CDI devices; None when they can't be given (the run failed
        gpu_unavailable)."""
        if run.allocation is None or not run.allocation.gpus:
            return Passthrough()
        settings = self.config.gpus
        registry = await asyncio.to_thread(
            load_registry, settings.cdi_spec_dirs, max_cdi_version(self.info.version)
        )
        found = passthrough(run.allocation, registry, settings)
        if isinstance(found, str):
            await self._fail(run, FailureType.GPU_UNAVAILABLE, found)
            return None
        return found

    async def _verify_devices(
        self, run: Run, container_id: str, pid: int | None, devices: Passthrough
    ) -> bool:
        """Before the container's process starts (it is created, its namespaces exist):
        its GPUs' device nodes are there, and no other GPU's. Otherwise it fails
        gpu_unavailable and never runs."""
        if not devices.devices:
            return True
        root = Path(f"/proc/{pid}/root")
        try:
            problem = (
                await asyncio.to_thread(devices.check, root)
                if pid
                else "podman gave no process to look into"
            )
        except PermissionError as e:  # can't look inside: podman's CDI injection is trusted
            log.warning("%s: could not check its GPU devices (%s)", run.id, e)
            return True
        if problem is None:
            return True
        await self._abandon(run.id, container_id)
        await self._fail(run, FailureType.GPU_UNAVAILABLE, f"{problem}; it was not started")
        return False

    async def _drop_unstarted(self, run: Run, container_id: str) -> None:
        """Cancelled while its container was created: the container never starts."""
        await self._abandon(run.id, container_id)
        await self._end_cancelled(run, "cancelled before its container started")

    async def _start(self, run: Run, container_id: str) -> None:
        if (await self.store.get_run(run.id)).status is not RunStatus.ASSIGNED:
            await self._drop_unstarted(run, container_id)
            return
        try:
            await self.runtime.start(container_id)
        except RuntimeFailure as e:
            await self._abandon(run.id, container_id)
            await self._fail(run, FailureType.RUNTIME_ERROR, f"start failed: {e}")
            return
        state = await self._state_after_start(container_id)
        started = (state.started_at if state else None) or now()
        await self._shielded(
            self.store.transition(
                run.id,
                RunStatus.RUNNING,
                expect={RunStatus.ASSIGNED},
                detail="container started",
                started_at=started,
                deadline_at=started + timedelta(seconds=run.timeout_seconds),
                endpoints=dict(state.endpoints) if state and state.endpoints else None,
            )
        )  # refused when cancelled meanwhile: apply_cancellations stops it once we are done
        if state is None or state.exited:  # reaped from what podman says then
            self._exits.put_nowait(
                ContainerExit(container_id=container_id, run_id=run.id, exit_code=None)
            )

    async def _state_after_start(self, container_id: str) -> ContainerState | None:
        """The container's state once started, or None when podman could not tell: an
        inspect racing a process that exits at once can fail (podman 4.3: "read
        /proc/N/cgroup: no such process"). The start worked; the reap finds out the rest."""
        try:
            return await self.runtime.inspect(container_id)
        except RuntimeFailure as e:
            log.info("inspecting %s right after its start failed (%s); reaping it", container_id, e)
            return None

    async def _abandon(self, run_id: str, container_id: str | None = None) -> None:
        """A launch that will not go on: let go of its cgroup watch and logs, remove its
        container (if it got one)."""
        self._close_watch(run_id)
        await self.pump.finish(run_id)
        if container_id is None:
            container_id = (await self.store.get_run(run_id)).container_id
        if container_id is not None:
            await self.runtime.remove(container_id)

    async def _fail(self, run: Run, kind: FailureType, message: str) -> None:
        failed = await self._end(
            run.id, RunStatus.FAILED, kind, message, expect=RUNNING_OR_ASSIGNED
        )
        if failed is None:  # cancelled while launching: it ends cancelled, not failed
            current = await self.store.get_run(run.id)
            await self._end_cancelled(current, "cancelled while its container was created")

    async def _arm_oom_watch(self, run_id: str, container_id: str) -> int | None:
        """Watch the created container's cgroup; its process id."""
        state = await self.runtime.inspect(container_id)
        if state.pid:
            watch = OomWatch.start(state.pid)
            if watch is not None:
                self._watches[run_id] = watch
        return state.pid

    async def _create(self, spec: ContainerSpec) -> str:
        """Create the container, getting its image first where needed. Images seen present
        are not asked about again; one removed behind jobd's back is fetched again once."""
        try:
            await self._ensure_image(spec.image)
            return await self.runtime.create(spec)
        except ImageNotFound:
            if spec.image not in self._images:
                raise
            self._images.discard(spec.image)
            await self._ensure_image(spec.image)
            return await self.runtime.create(spec)

    async def _ensure_image(self, image: str) -> None:
        if image not in self._images:
            await self._fetch_image(image)
            self._images.add(image)

    async def _fetch_image(self, image: str) -> None:
        if await self.runtime.image_exists(image):
            return
        async with self._image_lock:
            if await self.runtime.image_exists(image):
                return
            if image == DEFAULT_IMAGE:
                with temporary_context() as directory:
                    context = await asyncio.to_thread(prepare_context, Path(directory))
                    await self.runtime.build_image(context, DEFAULT_IMAGE)
                return
            await self.runtime.pull(image)

    def _container_spec(self, run: Run, job: Job, devices: Passthrough) -> ContainerSpec:
        spec = run.spec or job.spec  # what the run was created to execute
        return ContainerSpec(
            name=run.id,
            run_id=run.id,
            job_id=run.job_id,
            image=spec.image_to_run,
            command=spec.command,
            env={**spec.env, **Passthrough.env(run.allocation, self._node_has_gpus)},
            devices=devices.names,
            cpu_set=run.allocation.cpu_set if run.allocation else None,
            memory_bytes=run.plan.memory_bytes,
            cpus=run.plan.cpus,
            pids_limit=run.plan.pids_limit,
            nofile=NOFILE,
            nproc=run.plan.pids_limit,
            network=spec.network,
            log_path=self.pump.prepare(run.id),
            instance=self.instance,
            stop_grace_seconds=self.config.stop_grace_seconds,
            ports=spec.ports,
            publish_address=self.config.publish_address,
        )

    @property
    def _slack(self) -> Slack:
        return Slack(
            launch_seconds=LAUNCH_ALLOWANCE_SECONDS, grace_seconds=self.config.stop_grace_seconds
        )

    @property
    def _node_has_gpus(self) -> bool:
        node = self.inventory.last
        return node is not None and bool(node.gpus.gpus)

    def _limits(self, run: Run) -> Limits:
        return Limits(
            memory_bytes=run.plan.memory_bytes,
            cpus=run.plan.cpus,
            pids_limit=run.plan.pids_limit,
            nofile=NOFILE,
            nproc=run.plan.pids_limit,
            enforced=self.info.limits_enforced,
            note=self.info.limits_note,
        )

    # -- step 6: purge deleted jobs ---------------------------------------------------

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
                await self.store.purge_job(job_id)
        return len(ready) < len(deleted)

    # -- recovery and reconcile -------------------------------------------------------

    async def recover(self) -> None:
        """At startup: adopt running containers, finish those that exited while jobd was
        down, requeue runs that never got a container, end the rest as lost."""
        await self.reconcile(recovering=True)

    async def reconcile(self, *, recovering: bool = False) -> None:
        self._last_reconcile = time.monotonic()
        # the runs first, then the containers: a container listed is never older than the
        # snapshot of its run, so a run launched meanwhile is not judged by a stale list
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        containers = {c.run_id: c for c in await self.runtime.list_managed() if c.run_id}
        for run in active:
            if self._closing:  # a launch cancelled by shutdown left its run for the next start
                return
            state = containers.pop(run.id, None)
            if run.id in self._launching or run.id in self._stopping:
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
            await self.finish(run.id, state)
        elif state.running:
            if recovering:
                await self._adopt(run, state)
        elif recovering:  # created but never started: start over
            await self.runtime.remove(state.container_id)
            await self._end_lost(run)

    async def _inspect_or_none(self, container_id: str) -> ContainerState | None:
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
            await self._end_cancelled(run, "cancelled; its container was gone")
        else:
            await self.pump.finish(run.id)
            message = "its container vanished (removed outside jobd, or a reboot)"
            await self._end(
                run.id,
                RunStatus.FAILED,
                FailureType.LOST,
                message,
                expect=frozenset({RunStatus.RUNNING}),
            )

    async def _adopt(self, run: Run, state: ContainerState) -> None:
        self.pump.track(run.id)
        if state.pid:
            watch = OomWatch.start(state.pid)
            if watch is not None:
                self._watches[run.id] = watch
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

    @staticmethod
    async def _shielded(operation: Coroutine[Any, Any, T]) -> T:
        """Final status writes finish even if the daemon is shutting down."""
        return await asyncio.shield(operation)
