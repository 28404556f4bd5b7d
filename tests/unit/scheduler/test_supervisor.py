"""The supervisor's races against a fake runtime (pure scheduling logic; real podman is
exercised by the integration and acceptance tests): cancel while launching, an exit that
arrives while the launch is still in flight, create failures, deadlines, recovery, a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobd.config import Config
from jobd.config.tables import GpuSettings
from jobd.domain.node import Gpu, GpuInventory, NodeInventory
from jobd.domain.owners import EVERYONE, Caller, Owner
from jobd.domain.records import now
from jobd.domain.resources import GIB
from jobd.domain.states import FailureType, RunStatus
from jobd.errors import Forbidden, ImageNotFound, InvalidRequest, NoSpace, NotFound, RuntimeFailure
from jobd.logs.pump import LogPump
from jobd.node.inventory import Inventory
from jobd.scheduler import endings
from jobd.scheduler.supervisor import Supervisor
from jobd.services.jobs import Jobs
from jobd.services.runs import Runs
from jobd.store import Store
from tests.unit.scheduler.fake_runtime import INFO, FakeRuntime

OWNER = Owner(uid=0, user="root", via="unix")
ROOT = Caller(owner=OWNER, admin=True)


SMALL_NODE = NodeInventory(
    cpus=2, memory_bytes=8 * GIB, disk_total_bytes=100 * GIB, disk_free_bytes=50 * GIB
)


class Harness:
    def __init__(
        self,
        store: Store,
        runtime: FakeRuntime,
        tmp_path: Path,
        *,
        node: NodeInventory = SMALL_NODE,
        gpus: GpuSettings | None = None,
    ) -> None:
        config = Config(
            data_dir=tmp_path,
            socket=tmp_path / "jobd.sock",
            stop_grace_seconds=0,
            gpus=gpus or GpuSettings(),
        )
        capacity = Inventory.fixed(node)
        self.store = store
        self.runtime = runtime
        self.pump = LogPump(tmp_path / "logs", config.logs)
        self.supervisor = self.new_supervisor(config, capacity)
        self.jobs = Jobs(
            store,
            config,
            capacity,
            self.supervisor.wake,
            self.supervisor.purge_soon,
            runtime.image_digest,
            rootless=False,
        )
        self.runs = Runs(
            store,
            self.supervisor.wake,
            self.supervisor.reason,
            default_grace=config.stop_grace_seconds,
        )

    def new_supervisor(self, config: Config, capacity: Inventory) -> Supervisor:
        """A supervisor on this store, runtime and logs: the first, or one after a restart."""
        return Supervisor(
            store=self.store,
            runtime=self.runtime,
            pump=self.pump,
            config=config,
            inventory=capacity,
            info=INFO,
        )

    async def submit(self, image: str = "img", **body: object) -> str:
        _, run = await self.jobs.create({"image": image, "command": ["x"], **body}, ROOT)
        return run.id

    async def status(self, run_id: str) -> RunStatus:
        return (await self.store.get_run(run_id, reach=EVERYONE)).status

    async def until(self, run_id: str, *statuses: RunStatus) -> None:
        async with asyncio.timeout(5):
            while await self.status(run_id) not in statuses:
                await asyncio.sleep(0.01)

    async def removed(self, container_id: str | None) -> bool:
        """Whether the container is removed within a moment: an ended run's container goes
        in the background."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while container_id not in self.runtime.removed:
                    await asyncio.sleep(0.01)
        return container_id in self.runtime.removed


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, *, node: NodeInventory = SMALL_NODE, gpus: GpuSettings | None = None
) -> AsyncIterator[Harness]:
    """A harness whose supervisor runs its loop and watches exits."""
    store = await Store.open(tmp_path / "jobd.db")
    h = Harness(store, FakeRuntime(), tmp_path, node=node, gpus=gpus)
    tasks = [
        asyncio.create_task(h.supervisor.run()),
        asyncio.create_task(h.supervisor.watch_exits()),
    ]
    try:
        yield h
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(tmp_path) as h:
        yield h


async def terminal_events(h: Harness, run_id: str) -> list[str]:
    """The transitions into an end (facts recorded after it, such as its outputs, are not)."""
    events = await h.store.run_events(run_id)
    return [
        e["to_status"]
        for e in events
        if RunStatus(e["to_status"]).is_terminal and e["from_status"] != e["to_status"]
    ]


async def test_a_run_goes_through_its_states_to_its_exit_code(harness: Harness) -> None:
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    container_id = (await harness.store.get_run(run_id, reach=EVERYONE)).container_id
    assert container_id is not None
    harness.runtime.exit(container_id, 5)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert run.exit_code == 5 and run.failure is not None
    assert await harness.removed(container_id)


async def test_cancel_while_the_container_is_created_ends_cancelled_once(
    harness: Harness,
) -> None:
    harness.runtime.gate.clear()
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    cancelled = await harness.runs.cancel(run_id, EVERYONE)
    assert cancelled.status is RunStatus.CANCELLING
    harness.runtime.gate.set()
    await harness.until(run_id, RunStatus.CANCELLED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert len(harness.runtime.removed) == 1, "its container was created, then removed"
    assert harness.runtime.stopped == [], "and never started, so never stopped"
    assert run.started_at is None
    assert await terminal_events(harness, run_id) == ["cancelled"]


async def test_cancel_while_a_failing_create_ends_cancelled_not_failed(harness: Harness) -> None:
    harness.runtime.gate.clear()
    harness.runtime.create_error = RuntimeFailure("boom")
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    await harness.runs.cancel(run_id, EVERYONE)
    harness.runtime.gate.set()
    await harness.until(run_id, RunStatus.CANCELLED)
    assert await terminal_events(harness, run_id) == ["cancelled"]


async def test_an_exit_during_the_launch_is_reaped_without_waiting_for_reconcile(
    harness: Harness,
) -> None:
    harness.runtime.exit_on_start = 0
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.SUCCEEDED)  # within 5 s; reconcile runs every 30 s
    assert await terminal_events(harness, run_id) == ["succeeded"]


@pytest.mark.parametrize(
    ("image", "error", "failure"),
    [("missing", None, "image_not_found"), ("img", RuntimeFailure("no"), "runtime_error")],
)
async def test_create_failures_end_the_run_failed_with_a_reason(
    harness: Harness, image: str, error: Exception | None, failure: str
) -> None:
    harness.runtime.create_error = error
    run_id = await harness.submit(image=image)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert run.failure is not None and run.failure.type.value == failure


async def test_an_image_seen_present_is_not_asked_about_again_unless_it_vanishes(
    harness: Harness,
) -> None:
    async def run_once() -> None:
        run_id = await harness.submit()
        await harness.until(run_id, RunStatus.RUNNING)
        container_id = (await harness.store.get_run(run_id, reach=EVERYONE)).container_id
        assert container_id is not None
        harness.runtime.exit(container_id, 0)
        await harness.until(run_id, RunStatus.SUCCEEDED)

    for _ in range(3):
        await run_once()
    assert harness.runtime.image_checks == 1
    harness.runtime.create_error = ImageNotFound("removed behind jobd's back")
    original = harness.runtime.image_exists

    async def exists_and_heal(reference: str) -> bool:  # as a pull would bring it back
        harness.runtime.create_error = None
        return await original(reference)

    harness.runtime.image_exists = exists_and_heal  # type: ignore[method-assign]
    await run_once()
    assert harness.runtime.image_checks == 2, "asked again once create said it was gone"


async def test_an_inspect_racing_an_instant_exit_does_not_fail_a_started_run(
    harness: Harness,
) -> None:
    original = harness.runtime.start

    async def start_then_inspect_fails(container_id: str) -> None:
        await original(container_id)
        harness.runtime.inspect_failures = 1  # as podman 4.3 does while the process exits

    harness.runtime.start = start_then_inspect_fails  # type: ignore[method-assign]
    harness.runtime.exit_on_start = 0
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.SUCCEEDED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert run.exit_code == 0 and run.started_at is not None
    assert await harness.removed(run.container_id)


async def test_a_shorter_grace_asked_during_a_stop_replaces_it(harness: Harness) -> None:
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    harness.runtime.stop_gate.clear()  # the first stop waits out its 60 s grace
    await harness.runs.cancel(run_id, EVERYONE, grace=60)
    async with asyncio.timeout(5):
        while harness.runtime.graces != [60]:
            await asyncio.sleep(0.01)
    forced = await harness.runs.cancel(run_id, EVERYONE, grace=0)
    assert forced.stop_grace_seconds == 0
    await harness.until(run_id, RunStatus.CANCELLED)
    assert harness.runtime.graces == [60, 0], "the force did not wait for the first stop"
    assert await terminal_events(harness, run_id) == ["cancelled"]


async def test_a_longer_grace_asked_during_a_stop_changes_nothing(harness: Harness) -> None:
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    harness.runtime.stop_gate.clear()
    await harness.runs.stop(run_id, EVERYONE, grace=5)
    async with asyncio.timeout(5):
        while harness.runtime.graces != [5]:
            await asyncio.sleep(0.01)
    later = await harness.runs.cancel(run_id, EVERYONE, grace=30)
    assert later.stop_grace_seconds == 5
    harness.runtime.stop_gate.set()
    await harness.until(run_id, RunStatus.CANCELLED)
    assert harness.runtime.graces == [5]


async def test_a_run_whose_outputs_pass_their_limit_is_killed(harness: Harness) -> None:
    run_id = await harness.submit(outputLimitBytes=1000)
    await harness.until(run_id, RunStatus.RUNNING)
    outputs = harness.supervisor.config.outputs_dir / run_id
    assert outputs.is_dir(), "its /outputs was made at launch"
    (outputs / "big").write_bytes(b"x" * 2000)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert run.failure is not None and run.failure.type is FailureType.OUTPUT_LIMIT
    assert "grew past their limit of 1000 B (2.0 KiB written)" in run.failure.message
    assert harness.runtime.graces == [0], "killed, no grace"
    manifest = harness.supervisor.config.outputs_dir / f"{run_id}.manifest.json"
    async with asyncio.timeout(5):
        while not manifest.exists():
            await asyncio.sleep(0.01)  # sealed once ended
    sealed = (await harness.store.get_run(run_id, reach=EVERYONE)).outputs
    assert sealed is not None and (sealed.files, sealed.bytes) == (1, 2000)


async def test_a_deadline_stops_the_run_and_fails_it_as_timeout(harness: Harness) -> None:
    run_id = await harness.submit(timeoutSeconds=1)
    await harness.until(run_id, RunStatus.RUNNING)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id, reach=EVERYONE)
    assert run.failure is not None and run.failure.type.value == "timeout"
    assert run.container_id in harness.runtime.stopped


async def test_runs_wait_for_room_in_fifo_order(harness: Harness) -> None:
    first = await harness.submit(plan="pro")  # 2 CPUs: the whole fake node
    second = await harness.submit(plan="starter")
    await harness.until(first, RunStatus.RUNNING)
    await asyncio.sleep(0.1)
    assert await harness.status(second) is RunStatus.PENDING
    container_id = (await harness.store.get_run(first, reach=EVERYONE)).container_id
    assert container_id is not None
    harness.runtime.exit(container_id, 0)
    await harness.until(second, RunStatus.RUNNING)


async def test_recovery_requeues_assigned_runs_without_a_container(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "jobd.db")
    try:
        h = Harness(store, FakeRuntime(), tmp_path)
        run_id = await h.submit()
        await store.transition(run_id, RunStatus.ASSIGNED)  # the crash came right after this
        await h.supervisor.recover()
        assert await h.status(run_id) is RunStatus.PENDING
    finally:
        await store.close()


async def test_a_cancel_decided_on_pending_does_not_end_an_assigned_run(
    harness: Harness,
) -> None:
    harness.runtime.gate.clear()
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    # what a cancel that read `pending` just before the placement would try
    refused = await harness.store.transition(
        run_id, RunStatus.CANCELLED, expect={RunStatus.PENDING}
    )
    assert refused is None
    assert (await harness.runs.cancel(run_id, EVERYONE)).status is RunStatus.CANCELLING
    harness.runtime.gate.set()
    await harness.until(run_id, RunStatus.CANCELLED)


async def test_a_reconcile_racing_a_launch_does_not_lose_the_run(harness: Harness) -> None:
    harness.runtime.list_delay = 0.3
    run_id = await harness.submit()
    await asyncio.sleep(0)  # placed and launching while the slow list is taken
    await harness.supervisor.reconcile()
    await harness.until(run_id, RunStatus.RUNNING)
    await asyncio.sleep(0.5)
    assert await harness.status(run_id) is RunStatus.RUNNING


async def test_shutdown_leaves_launching_runs_assigned_for_the_next_start(
    harness: Harness,
) -> None:
    harness.runtime.gate.clear()
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    await harness.supervisor.shutdown()
    assert await harness.status(run_id) is RunStatus.ASSIGNED
    assert await terminal_events(harness, run_id) == []


async def test_an_update_changes_only_the_runs_created_after_it(harness: Harness) -> None:
    harness.runtime.gate.clear()  # the first launch waits in create; the others queue
    harness.runtime.exit_on_start = 0  # each run ends at once and frees its place
    first = await harness.submit(command=["old"], env={"A": "0"})
    job_id = (await harness.store.get_run(first, reach=EVERYONE)).job_id
    second = await harness.jobs.rerun(job_id, EVERYONE)  # created before the update: keeps "old"
    updated = await harness.jobs.update(job_id, {"command": ["new"], "labels": {"v": "2"}}, ROOT)
    assert updated.spec.command == ("new",) and updated.spec.env == {"A": "0"}
    assert updated.labels == {"v": "2"}
    third = await harness.jobs.rerun(job_id, EVERYONE)
    harness.runtime.gate.set()
    async with asyncio.timeout(5):
        while len(harness.runtime.specs) < 3:
            await asyncio.sleep(0.01)
    commands = {run_id: spec.command for run_id, spec in harness.runtime.specs.items()}
    assert commands == {first: ("old",), second.id: ("old",), third.id: ("new",)}
    assert harness.runtime.specs[third.id].env == {"A": "0"}, "omitted fields stay"


async def test_a_deleted_job_is_purged_once_stopped_and_after_a_restart(harness: Harness) -> None:
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    job_id = (await harness.store.get_run(run_id, reach=EVERYONE)).job_id
    container_id = (await harness.store.get_run(run_id, reach=EVERYONE)).container_id
    log_dir = harness.supervisor.pump.directory(run_id)
    assert log_dir.exists()
    # the deletion is recorded, then the daemon "dies" before the purge is signalled
    stopping = await harness.store.delete_job(job_id)
    assert [r.id for r in stopping] == [run_id]
    harness.supervisor.wake()  # the old daemon still stops the run it was told to cancel
    await harness.until(run_id, RunStatus.CANCELLED)
    assert (await harness.store.deleted_jobs()).keys() == {job_id}
    restarted = harness.new_supervisor(harness.supervisor.config, harness.supervisor.inventory)
    assert await restarted.purge_deleted_jobs() is False  # nothing left waiting
    assert await harness.store.deleted_jobs() == {}
    with pytest.raises(NotFound):
        await harness.store.get_run(run_id, reach=EVERYONE)
    assert container_id in harness.runtime.removed and not log_dir.exists()


async def test_other_users_may_not_raise_a_priority_past_their_limit(harness: Harness) -> None:
    guest = Caller(owner=Owner(uid=65534, user="nobody", via="unix"), admin=False)
    with pytest.raises(Forbidden, match="nobody may give a job priority 0 at most"):
        await harness.jobs.create({"image": "img", "priority": 5}, guest)
    job, run = await harness.jobs.create({"image": "img", "priority": -5}, guest)
    assert run is not None and run.priority == -5  # lowering is always allowed
    with pytest.raises(Forbidden):
        await harness.jobs.update(job.id, {"priority": 1}, guest)
    _, mine = await harness.jobs.create({"image": "img", "priority": 900}, ROOT)
    assert mine is not None and mine.priority == 900  # root: any


async def test_gpu_runs_fail_gpu_unavailable_when_no_cdi_spec_names_their_gpu(
    tmp_path: Path,
) -> None:
    gpu = Gpu(index="0", uuid="GPU-abc", name="NVIDIA L4", memory_total=GIB, memory_free=GIB)
    node = NodeInventory(
        cpus=2,
        memory_bytes=8 * GIB,
        disk_total_bytes=GIB,
        disk_free_bytes=GIB,
        gpus=GpuInventory(gpus=(gpu,)),
    )
    settings = GpuSettings(cdi_spec_dirs=(tmp_path / "no-cdi",))
    async with running(tmp_path, node=node, gpus=settings) as harness:
        run_id = await harness.submit(resources={"gpuCount": 1, "cpuCount": 1, "minRamGb": 1})
        await harness.until(run_id, RunStatus.FAILED)
        run = await harness.store.get_run(run_id, reach=EVERYONE)
        assert harness.runtime.containers == {}  # nothing was created, nothing ran
    assert run.failure is not None and run.failure.type is FailureType.GPU_UNAVAILABLE
    assert "no CDI device nvidia.com/gpu=GPU-abc or nvidia.com/gpu=0" in run.failure.message
    assert run.allocation is not None and run.allocation.gpus[0].uuid == "GPU-abc"


async def test_a_schedule_with_its_own_resources_fires_with_them(harness: Harness) -> None:
    job, _ = await harness.jobs.create(
        {
            "image": "img",
            "schedule": "* * * * *",
            "resources": {"cpuCount": 1, "minRamGb": 1},
        },
        ROOT,
    )
    assert job.spec.plan == "custom"
    due = (job.next_fire_at or now()) + timedelta(seconds=1)
    fired = await harness.store.fire_schedules(due, harness.supervisor.plan_for)
    (run,) = fired.started
    assert (run.plan.id, run.plan.cpus, run.plan.memory_bytes) == ("custom", 1, 10**9)


async def test_gpu_sharing_without_memory_to_promise_is_refused(harness: Harness) -> None:
    with pytest.raises(InvalidRequest, match="gpuShare needs gpuCount and minVramGb"):
        await harness.jobs.create(
            {"image": "img", "resources": {"gpuCount": 1, "minVramGb": 0, "gpuShare": True}},
            ROOT,
        )


async def test_a_step_that_meets_a_full_disk_is_said_once_a_minute_not_twice_a_second(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    full = NoSpace("no space left on the data directory's disk: could not write a run")
    for _ in range(5):
        harness.supervisor._tell_failure(full)
    harness.supervisor._tell_failure(OSError(5, "Input/output error"))
    told = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert told == [
        ("WARNING", f"supervisor step: {full}; trying again twice a second", False),
        ("ERROR", "supervisor step failed; trying again", True),  # others keep their traceback
    ]


async def test_an_end_the_disk_has_no_room_for_is_tried_again_on_one_timer_and_told_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(endings, "REAP_AGAIN_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger=endings.__name__)
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    container_id = (await harness.store.get_run(run_id, reach=EVERYONE)).container_id
    assert container_id is not None
    full = True
    tries = 0
    transition = harness.store.transition

    async def no_room(*args: Any, **kwargs: Any) -> Any:
        nonlocal tries
        if full:
            tries += 1
            raise NoSpace("no space left on the data directory's disk: could not write a run")
        return await transition(*args, **kwargs)

    monkeypatch.setattr(harness.store, "transition", no_room)
    harness.runtime.exit(container_id, 0)
    for _ in range(4):  # reaped again between the timer's turns, as a reconcile would
        await asyncio.sleep(0.03)
        harness.supervisor.inflight.reap_later(run_id, container_id)
        harness.supervisor.wake()
    await asyncio.sleep(0.2)
    before = tries
    await asyncio.sleep(0.5)
    assert tries - before <= 0.5 / 0.05 + 2, "one timer for the run, not one per reap"
    full = False
    await harness.until(run_id, RunStatus.SUCCEEDED)
    told = [r.getMessage() for r in caplog.records if run_id in r.getMessage()]
    assert len([m for m in told if "exited (0) but no space" in m]) == 1, told
    assert f"run {run_id}: its end is recorded, now that there is room" in told
