"""The supervisor's races against a fake runtime (pure scheduling logic; real podman is
exercised by the integration and acceptance tests): cancel while launching, an exit that
arrives while the launch is still in flight, create failures, deadlines, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from jobd.config import Config, GpuSettings
from jobd.errors import (
    ContainerGone,
    Forbidden,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    RuntimeFailure,
)
from jobd.inventory import Inventory
from jobd.jobs import Jobs
from jobd.logs import LogPump
from jobd.models import GIB, FailureType, Owner, RunStatus, now
from jobd.node import Gpu, GpuInventory, NodeInventory
from jobd.runtime.types import ContainerExit, ContainerSpec, ContainerState, RuntimeInfo
from jobd.store import Store
from jobd.supervisor import Supervisor

OWNER = Owner(uid=0, user="root", via="unix")
INFO = RuntimeInfo(
    version="4.3.1",
    api_version="1.41",
    rootless=False,
    cgroup_version="v1",
    cgroup_manager="cgroupfs",
    cgroup_controllers=("memory", "cpu", "pids"),
    oci_runtime="runc",
)


class FakeRuntime:
    """Containers in memory. `gate` holds create() until released; exits are pushed
    to the stream as podman's died events would be."""

    def __init__(self) -> None:
        self.instance = "fake"
        self.containers: dict[str, ContainerState] = {}
        self.specs: dict[str, ContainerSpec] = {}  # by run id, as created
        self.gate = asyncio.Event()
        self.gate.set()
        self.create_error: Exception | None = None
        self.exit_on_start: int | None = None
        self.list_delay = 0.0
        self.stopped: list[str] = []
        self.removed: list[str] = []
        self.image_checks = 0
        self.inspect_failures = 0
        self._exits: asyncio.Queue[ContainerExit] = asyncio.Queue()

    async def info(self, *, max_age: float = 0.0) -> RuntimeInfo:
        return INFO

    async def image_exists(self, reference: str) -> bool:
        self.image_checks += 1
        return reference != "missing"

    async def image_digest(self, reference: str) -> str | None:
        return None if reference == "missing" else f"{reference}@sha256:{'0' * 64}"

    async def pull(self, reference: str) -> None:
        raise ImageNotFound(f"{reference} can't be pulled")

    async def build_image(self, context: Path, tag: str) -> None:
        return None

    async def create(self, spec: ContainerSpec) -> str:
        await self.gate.wait()
        self.specs[spec.run_id] = spec
        if self.create_error is not None:
            raise self.create_error
        container_id = secrets.token_hex(8)
        self.containers[container_id] = ContainerState(
            container_id=container_id,
            run_id=spec.run_id,
            status="initialized",
            exit_code=None,
            started_at=None,
            finished_at=None,
            oom_killed=False,
            pid=None,
        )
        return container_id

    async def start(self, container_id: str) -> None:
        state = self.containers[container_id]
        self.containers[container_id] = replace(state, status="running", started_at=now())
        if self.exit_on_start is not None:
            self.exit(container_id, self.exit_on_start)

    def exit(self, container_id: str, code: int) -> None:
        state = self.containers[container_id]
        self.containers[container_id] = replace(
            state, status="exited", exit_code=code, finished_at=now()
        )
        assert state.run_id is not None
        self._exits.put_nowait(
            ContainerExit(container_id=container_id, run_id=state.run_id, exit_code=code)
        )

    async def inspect(self, container_id: str) -> ContainerState:
        if self.inspect_failures:
            self.inspect_failures -= 1
            raise RuntimeFailure("inspect: read /proc/3181/cgroup: no such process")
        if container_id not in self.containers:
            raise ContainerGone(container_id)
        return self.containers[container_id]

    async def stop(self, container_id: str, grace_seconds: int) -> None:
        self.stopped.append(container_id)
        if container_id in self.containers and self.containers[container_id].running:
            self.exit(container_id, 143)

    async def remove(self, container_id: str) -> None:
        self.removed.append(container_id)
        self.containers.pop(container_id, None)

    async def list_managed(self) -> list[ContainerState]:
        listed = list(self.containers.values())
        await asyncio.sleep(self.list_delay)  # the answer ages while launches go on
        return listed

    async def exits(self, since: float) -> AsyncIterator[ContainerExit]:
        while True:
            yield await self._exits.get()


class Harness:
    def __init__(self, store: Store, runtime: FakeRuntime, tmp_path: Path) -> None:
        config = Config(data_dir=tmp_path, socket=tmp_path / "jobd.sock", stop_grace_seconds=0)
        capacity = Inventory.fixed(
            NodeInventory(
                cpus=2, memory_bytes=8 * GIB, disk_total_bytes=100 * GIB, disk_free_bytes=50 * GIB
            )
        )
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
            instance="fake",
        )

    async def submit(self, image: str = "img", **body: object) -> str:
        _, run = await self.jobs.create({"image": image, "command": ["x"], **body}, OWNER)
        return run.id

    async def status(self, run_id: str) -> RunStatus:
        return (await self.store.get_run(run_id)).status

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


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = await Store.open(tmp_path / "jobd.db")
    h = Harness(store, FakeRuntime(), tmp_path)
    tasks = [
        asyncio.create_task(h.supervisor.run()),
        asyncio.create_task(h.supervisor.watch_exits()),
    ]
    yield h
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()


async def terminal_events(h: Harness, run_id: str) -> list[str]:
    events = await h.store.run_events(run_id)
    return [e["to_status"] for e in events if RunStatus(e["to_status"]).is_terminal]


async def test_a_run_goes_through_its_states_to_its_exit_code(harness: Harness) -> None:
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.RUNNING)
    container_id = (await harness.store.get_run(run_id)).container_id
    assert container_id is not None
    harness.runtime.exit(container_id, 5)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id)
    assert run.exit_code == 5 and run.failure is not None
    assert await harness.removed(container_id)


async def test_cancel_while_the_container_is_created_ends_cancelled_once(
    harness: Harness,
) -> None:
    harness.runtime.gate.clear()
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    cancelled = await harness.jobs.cancel(run_id)
    assert cancelled.status is RunStatus.CANCELLING
    harness.runtime.gate.set()
    await harness.until(run_id, RunStatus.CANCELLED)
    run = await harness.store.get_run(run_id)
    assert len(harness.runtime.removed) == 1, "its container was created, then removed"
    assert harness.runtime.stopped == [], "and never started, so never stopped"
    assert run.started_at is None
    assert await terminal_events(harness, run_id) == ["cancelled"]


async def test_cancel_while_a_failing_create_ends_cancelled_not_failed(harness: Harness) -> None:
    harness.runtime.gate.clear()
    harness.runtime.create_error = RuntimeFailure("boom")
    run_id = await harness.submit()
    await harness.until(run_id, RunStatus.ASSIGNED)
    await harness.jobs.cancel(run_id)
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
    run = await harness.store.get_run(run_id)
    assert run.failure is not None and run.failure.type.value == failure


async def test_an_image_seen_present_is_not_asked_about_again_unless_it_vanishes(
    harness: Harness,
) -> None:
    async def run_once() -> None:
        run_id = await harness.submit()
        await harness.until(run_id, RunStatus.RUNNING)
        container_id = (await harness.store.get_run(run_id)).container_id
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
    run = await harness.store.get_run(run_id)
    assert run.exit_code == 0 and run.started_at is not None
    assert await harness.removed(run.container_id)


async def test_a_deadline_stops_the_run_and_fails_it_as_timeout(harness: Harness) -> None:
    run_id = await harness.submit(timeoutSeconds=1)
    await harness.until(run_id, RunStatus.RUNNING)
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id)
    assert run.failure is not None and run.failure.type.value == "timeout"
    assert run.container_id in harness.runtime.stopped


async def test_runs_wait_for_room_in_fifo_order(harness: Harness) -> None:
    first = await harness.submit(plan="pro")  # 2 CPUs: the whole fake node
    second = await harness.submit(plan="starter")
    await harness.until(first, RunStatus.RUNNING)
    await asyncio.sleep(0.1)
    assert await harness.status(second) is RunStatus.PENDING
    container_id = (await harness.store.get_run(first)).container_id
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
    assert (await harness.jobs.cancel(run_id)).status is RunStatus.CANCELLING
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
    job_id = (await harness.store.get_run(first)).job_id
    second = await harness.jobs.rerun(job_id)  # created before the update: keeps "old"
    updated = await harness.jobs.update(job_id, {"command": ["new"], "labels": {"v": "2"}}, OWNER)
    assert updated.spec.command == ("new",) and updated.spec.env == {"A": "0"}
    assert updated.labels == {"v": "2"}
    third = await harness.jobs.rerun(job_id)
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
    job_id = (await harness.store.get_run(run_id)).job_id
    container_id = (await harness.store.get_run(run_id)).container_id
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
        await harness.store.get_run(run_id)
    assert container_id in harness.runtime.removed and not log_dir.exists()


async def test_other_users_may_not_raise_a_priority_past_their_limit(harness: Harness) -> None:
    guest = Owner(uid=4242, user="guest", via="unix")
    with pytest.raises(Forbidden, match="guest may give a job priority 0 at most"):
        await harness.jobs.create({"image": "img", "priority": 5}, guest)
    job, run = await harness.jobs.create({"image": "img", "priority": -5}, guest)
    assert run is not None and run.priority == -5  # lowering is always allowed
    with pytest.raises(Forbidden):
        await harness.jobs.update(job.id, {"priority": 1}, guest)
    _, mine = await harness.jobs.create({"image": "img", "priority": 900}, OWNER)
    assert mine is not None and mine.priority == 900  # root: any


async def test_gpu_runs_fail_gpu_unavailable_when_no_cdi_spec_names_their_gpu(
    harness: Harness, tmp_path: Path
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
    harness.supervisor.inventory = Inventory.fixed(node)
    harness.supervisor.config = replace(harness.supervisor.config, gpus=settings)
    harness.jobs.inventory = harness.supervisor.inventory
    run_id = await harness.submit(resources={"gpuCount": 1, "cpuCount": 1, "minRamGb": 1})
    await harness.until(run_id, RunStatus.FAILED)
    run = await harness.store.get_run(run_id)
    assert run.failure is not None and run.failure.type is FailureType.GPU_UNAVAILABLE
    assert "no CDI device nvidia.com/gpu=GPU-abc or nvidia.com/gpu=0" in run.failure.message
    assert run.allocation is not None and run.allocation.gpus[0].uuid == "GPU-abc"
    assert harness.runtime.containers == {}  # nothing was created, nothing ran


async def test_a_schedule_with_its_own_resources_fires_with_them(harness: Harness) -> None:
    job, _ = await harness.jobs.create(
        {
            "image": "img",
            "schedule": "* * * * *",
            "resources": {"cpuCount": 1, "minRamGb": 1},
        },
        OWNER,
    )
    assert job.spec.plan == "custom"
    due = (job.next_fire_at or now()) + timedelta(seconds=1)
    fired = await harness.store.fire_schedules(due, harness.supervisor._plan_for)
    (run,) = fired.started
    assert (run.plan.id, run.plan.cpus, run.plan.memory_bytes) == ("custom", 1, 10**9)


async def test_gpu_sharing_without_memory_to_promise_is_refused(harness: Harness) -> None:
    with pytest.raises(InvalidRequest, match="gpuShare needs gpuCount and minVramGb"):
        await harness.jobs.create(
            {"image": "img", "resources": {"gpuCount": 1, "minVramGb": 0, "gpuShare": True}},
            OWNER,
        )
