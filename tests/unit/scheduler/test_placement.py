"""Placement: GPUs exclusive and shared, memory promised, foreign processes, priority order,
and backfill that never starves the head of the queue."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from jobd.domain.capacity import Free, free_on, never_fits
from jobd.domain.node import Gpu, GpuInventory, GpuProcess, NodeInventory
from jobd.domain.records import new_id
from jobd.domain.resources import DEFAULT_PLANS, GB, GIB, Allocation, GpuGrant, Plan
from jobd.domain.runs import Run
from jobd.domain.states import RunStatus
from jobd.scheduler.placement import Slack, place

MOMENT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOUR = 3600
_ids = itertools.count()


def gpu(index: int, *, total_gb: float = 24, free_gb: float | None = None, **more: object) -> Gpu:
    total = round(total_gb * GB)
    free = total if free_gb is None else round(free_gb * GB)
    return Gpu(
        index=str(index),
        uuid=f"GPU-{index:04d}",
        name="NVIDIA L4",
        memory_total=total,
        memory_free=free,
        **more,  # type: ignore[arg-type]
    )


def node(*gpus: Gpu, cpus: int = 16, memory_gb: int = 64) -> NodeInventory:
    return NodeInventory(
        cpus=cpus,
        memory_bytes=memory_gb * GIB,
        disk_total_bytes=1000 * GB,
        disk_free_bytes=500 * GB,
        gpus=GpuInventory(gpus=gpus),
    )


def plan(cpus: float = 1, memory_gb: int = 1, **more: object) -> Plan:
    return Plan(id="p", cpus=cpus, memory_bytes=memory_gb * GIB, **more)  # type: ignore[arg-type]


def queued(the_plan: Plan, *, timeout: int = 30 * 24 * HOUR, priority: int = 0) -> Run:
    n = next(_ids)
    return Run(
        id=f"run-{n:04d}",
        job_id=f"job-{n:04d}",
        status=RunStatus.PENDING,
        plan=the_plan,
        created_at=MOMENT + timedelta(milliseconds=n),
        timeout_seconds=timeout,
        priority=priority,
    )


def running(
    the_plan: Plan, *, ends_in: float, allocation: Allocation | None = None, container: str = ""
) -> Run:
    run = queued(the_plan)
    return run.with_changes(
        status=RunStatus.RUNNING,
        started_at=MOMENT,
        deadline_at=MOMENT + timedelta(seconds=ends_in),
        allocation=allocation or Allocation(),
        container_id=container or None,
    )


def decide(the_node: NodeInventory, queue: list[Run], active: list[Run] | None = None):  # type: ignore[no-untyped-def]
    active = active or []
    return place(queue, active, free_on(the_node, active), MOMENT)


def gpus_of(decision, run: Run) -> list[str]:  # type: ignore[no-untyped-def]
    given = dict((r.id, a) for r, a in decision.start)
    return [g.uuid for g in given[run.id].gpus]


# -- GPUs ---------------------------------------------------------------------------------


def test_two_exclusive_gpu_runs_side_by_side_and_a_third_waits() -> None:
    one_gpu = plan(gpus=1)
    a, b, c = queued(one_gpu), queued(one_gpu), queued(one_gpu)
    decision = decide(node(gpu(0), gpu(1)), [a, b, c])
    assert [r.id for r, _ in decision.start] == [a.id, b.id]
    assert {gpus_of(decision, a)[0], gpus_of(decision, b)[0]} == {"GPU-0000", "GPU-0001"}
    assert decision.waiting[c.id] == "waiting for 1 GPU"


def test_the_third_starts_once_a_gpu_run_ends() -> None:
    one_gpu = plan(gpus=1)
    holder = running(one_gpu, ends_in=HOUR, allocation=_exclusive(0))
    c = queued(one_gpu)
    decision = decide(node(gpu(0), gpu(1)), [c], [holder])
    assert gpus_of(decision, c) == ["GPU-0001"]  # never the GPU a run holds


def test_vram_packing_admits_two_10gb_runs_on_a_24gb_gpu_and_queues_a_third() -> None:
    shared = plan(gpus=1, min_vram_bytes=10 * GB, gpu_share=True)
    a, b, c = queued(shared), queued(shared), queued(shared)
    decision = decide(node(gpu(0, total_gb=24)), [a, b, c])
    assert [r.id for r, _ in decision.start] == [a.id, b.id]
    assert decision.waiting[c.id] == "waiting for 1 GPU with 9.3 GiB free (shared)"


def test_memory_promised_to_placed_runs_counts_until_they_allocate_it() -> None:
    shared = plan(gpus=1, min_vram_bytes=10 * GB, gpu_share=True)
    placed = running(shared, ends_in=HOUR, allocation=_shared(0, 10), container="c" * 64)
    # nothing allocated yet: NVML says 24 GB free, but 10 are promised
    assert free_on(node(gpu(0)), [placed]).gpus[0].available == 14 * GB
    # it allocated 6 GB: NVML says 18 free, and 4 more are still promised
    busy = gpu(0, free_gb=18, processes=(GpuProcess(pid=42, used_bytes=6 * GB),))
    the_node = _with_containers(node(busy), {42: "c" * 64})
    assert free_on(the_node, [placed]).gpus[0].available == 14 * GB


def test_a_gpu_used_by_someone_else_is_busy_for_exclusive_use() -> None:
    notebook = gpu(0, free_gb=20, processes=(GpuProcess(pid=777, used_bytes=4 * GB),))
    exclusive, shared = plan(gpus=1), plan(gpus=1, min_vram_bytes=16 * GB, gpu_share=True)
    a, b = queued(exclusive), queued(shared)
    decision = decide(node(notebook), [a, b])
    assert decision.waiting[a.id] == "waiting for 1 GPU"
    assert gpus_of(decision, b) == ["GPU-0000"]  # shared: its 20 GB free are enough
    state = free_on(node(notebook), []).gpus[0]
    assert (state.foreign_pids, state.foreign_bytes) == ((777,), 4 * GB)


def test_min_vram_needs_that_much_free_on_each_gpu() -> None:
    half_full = gpu(0, total_gb=80, free_gb=30)
    decision = decide(
        node(half_full, gpu(1, total_gb=80)), [queued(plan(gpus=1, min_vram_bytes=40 * GB))]
    )
    assert [g.uuid for _, a in decision.start for g in a.gpus] == ["GPU-0001"]


# -- CPUs -------------------------------------------------------------------------------


def test_whole_cpus_are_pinned_to_cores_of_their_own_and_fractions_float() -> None:
    two, half = queued(plan(cpus=2)), queued(plan(cpus=0.5))
    holder = running(plan(cpus=2), ends_in=HOUR, allocation=Allocation(cores=(0, 1)))
    decision = decide(node(cpus=8), [two, half], [holder])
    given = {r.id: a for r, a in decision.start}
    assert given[two.id].cores == (2, 3)
    assert given[half.id].cores == ()


def test_waits_for_cpus_and_memory_say_what_is_short() -> None:
    big = queued(plan(cpus=8, memory_gb=48))
    holder = running(plan(cpus=12, memory_gb=32), ends_in=HOUR)
    decision = decide(node(cpus=16, memory_gb=64), [big], [holder])
    assert decision.waiting[big.id] == (
        "waiting for 8 CPUs (4 free) and 48 GiB of memory (32 GiB free)"
    )


# -- queue order, reservation and backfill -------------------------------------------------


def test_a_large_run_at_the_head_is_not_starved_by_a_stream_of_small_ones() -> None:
    holder = running(plan(cpus=2), ends_in=HOUR)
    head = queued(plan(cpus=4))
    small = [queued(plan(cpus=1)) for _ in range(5)]  # long: they would outlast the holder
    decision = decide(node(cpus=4), [head, *small], [holder])
    assert decision.start == []
    assert decision.waiting[head.id].startswith("waiting for 4 CPUs")
    assert all("would delay " + head.id in decision.waiting[s.id] for s in small)


def test_a_small_run_that_ends_before_the_head_can_start_backfills() -> None:
    holder = running(plan(cpus=2), ends_in=HOUR)
    head = queued(plan(cpus=4))
    short = queued(plan(cpus=1), timeout=HOUR // 2)  # gone before the holder frees its CPUs
    decision = decide(node(cpus=4), [head, short], [holder])
    assert [r.id for r, _ in decision.start] == [short.id]


def test_cpu_only_runs_do_not_wait_behind_gpu_capacity() -> None:
    gpu_holder = running(plan(cpus=4, gpus=1), ends_in=HOUR, allocation=_exclusive(0))
    gpu_head = queued(plan(cpus=8, gpus=1))  # waits for the only GPU
    cpu_runs = [queued(plan(cpus=2)) for _ in range(3)]
    decision = decide(node(gpu(0), cpus=16), [gpu_head, *cpu_runs], [gpu_holder])
    # 12 CPUs free now, and 8 will be the head's once the GPU frees: all three start
    assert [r.id for r, _ in decision.start] == [r.id for r in cpu_runs]
    assert decision.waiting[gpu_head.id] == "waiting for 1 GPU"


def test_cpu_runs_take_no_cpus_the_gpu_head_needs_once_its_gpu_frees() -> None:
    gpu_holder = running(plan(cpus=4, gpus=1), ends_in=HOUR, allocation=_exclusive(0))
    long_cpu = running(plan(cpus=6), ends_in=10 * HOUR)
    gpu_head = queued(plan(cpus=8, gpus=1))
    cpu_runs = [queued(plan(cpus=2)) for _ in range(3)]
    decision = decide(node(gpu(0), cpus=16), [gpu_head, *cpu_runs], [gpu_holder, long_cpu])
    # 6 CPUs free now; in an hour 10, 8 of them the head's: one CPU run may start
    assert [r.id for r, _ in decision.start] == [cpu_runs[0].id]
    assert all("would delay " + gpu_head.id in decision.waiting[r.id] for r in cpu_runs[1:])


def test_a_head_that_can_never_fit_while_others_use_the_gpu_holds_nothing_back() -> None:
    notebook = gpu(0, free_gb=2, processes=(GpuProcess(pid=9, used_bytes=22 * GB),))
    head = queued(plan(gpus=1))
    after = queued(plan(cpus=2))
    decision = decide(node(notebook), [head, after])
    assert [r.id for r, _ in decision.start] == [after.id]


def test_placement_stops_looking_once_no_cpu_is_left() -> None:
    runs = [queued(plan(cpus=1)) for _ in range(6)]

    def queue():  # type: ignore[no-untyped-def]
        for run in runs:
            seen.append(run.id)
            yield run

    seen: list[str] = []
    decision = place(queue(), [], free_on(node(cpus=2), []), MOMENT)
    assert len(decision.start) == 2
    assert len(seen) == 2


# -- what can never run -------------------------------------------------------------------


def test_requests_that_can_never_fit_this_node_are_named() -> None:
    two_gpus = node(gpu(0), gpu(1), cpus=8, memory_gb=16)
    assert never_fits(plan(gpus=2), two_gpus) is None
    assert never_fits(plan(gpus=3), two_gpus) == "3 GPUs (it has 2 GPUs)"
    assert "of memory" in (never_fits(plan(memory_gb=32), two_gpus) or "")
    assert never_fits(plan(gpus=1, min_vram_bytes=40 * GB), two_gpus) == (
        "1 GPU with 37.3 GiB free (it has 2 GPUs, 0 with 37.3 GiB)"
    )
    assert never_fits(plan(gpus=1), node(cpus=8)) == "1 GPU (it has 0 GPUs)"


def test_free_adds_up_after_take_and_release() -> None:
    start = free_on(node(gpu(0), gpu(1)), [])
    the_plan = plan(cpus=2, gpus=1)
    run = queued(the_plan)
    fit = start.fit(run, pin=True)
    assert isinstance(fit, Allocation)
    taken = start.take(run.id, the_plan, fit)
    assert isinstance(taken, Free) and taken.cpus == 14 and not taken.gpus[0].idle
    assert taken.release(run.id, the_plan, fit) == start


def _exclusive(index: int) -> Allocation:
    return Allocation(gpus=(GpuGrant(uuid=f"GPU-{index:04d}", index=str(index), name="NVIDIA L4"),))


def _shared(index: int, gb: int) -> Allocation:
    grant = GpuGrant(
        uuid=f"GPU-{index:04d}", index=str(index), name="NVIDIA L4", shared=True, vram_bytes=gb * GB
    )
    return Allocation(gpus=(grant,))


def _with_containers(the_node: NodeInventory, containers: dict[int, str]) -> NodeInventory:
    return replace(the_node, process_containers=containers)


# -- what the review of this module found ------------------------------------------------


def test_releasing_a_shared_run_gives_back_exactly_what_it_held() -> None:
    shared = plan(gpus=1, min_vram_bytes=40 * GB, gpu_share=True)
    crowded = gpu(0, total_gb=80, free_gb=10)
    placed = running(shared, ends_in=HOUR, allocation=_shared(0, 40))
    free = free_on(node(crowded), [placed])
    assert free.gpus[0].available == -30 * GB  # promised more than NVML calls free
    after = free.release(placed.id, shared, placed.allocation or Allocation())
    assert after.gpus[0].available == 10 * GB


def test_what_runs_wrote_to_disk_is_not_counted_twice() -> None:
    the_node = node()  # 1000 GB disk, 500 GB free
    writer = running(plan(storage_bytes=400 * GB), ends_in=HOUR)
    assert free_on(the_node, [writer]).storage_bytes == 500 * GB
    bigger = running(plan(storage_bytes=700 * GB), ends_in=HOUR)
    assert free_on(the_node, [bigger]).storage_bytes == 300 * GB


def test_an_idle_gpu_counts_whole_though_the_driver_keeps_a_little() -> None:
    idle = gpu(0, total_gb=80, free_gb=79.4)
    run = queued(plan(gpus=1, min_vram_bytes=80 * GB))
    assert never_fits(run.plan, node(idle)) is None
    assert gpus_of(decide(node(idle), [run]), run) == ["GPU-0000"]


def test_memory_used_by_processes_nvml_does_not_show_makes_a_gpu_busy() -> None:
    hidden = gpu(0, total_gb=24, free_gb=14)  # 10 GB in use, no process listed
    state = free_on(node(hidden), []).gpus[0]
    assert state.busy_outside and state.foreign_bytes == 10 * GB


def test_a_run_backfills_only_if_it_ends_before_the_head_counting_launch_and_grace() -> None:
    holder = running(plan(cpus=2), ends_in=HOUR)
    head = queued(plan(cpus=4))
    nearly = queued(plan(cpus=1), timeout=HOUR - 60)
    free = free_on(node(cpus=4), [holder])
    assert [r.id for r, _ in place([head, nearly], [holder], free, MOMENT).start] == [nearly.id]
    # with 5 minutes to launch it could outlast the holder (grace is the same for both)
    slack = Slack(launch_seconds=300, grace_seconds=10)
    tight = place([head, nearly], [holder], free, MOMENT, slack=slack)
    assert tight.start == [] and "would delay" in tight.waiting[nearly.id]


def test_gpus_that_could_not_be_read_just_now_refuse_nothing() -> None:
    failing = NodeInventory(
        cpus=8,
        memory_bytes=64 * GIB,
        disk_total_bytes=GB,
        disk_free_bytes=GB,
        gpus=GpuInventory(error="NVML: GPU is lost"),
    )
    assert never_fits(plan(gpus=1), failing) is None
    no_driver = replace(failing, gpus=GpuInventory(error="no driver", no_driver=True))
    assert never_fits(plan(gpus=1), no_driver) == "1 GPU (it has 0 GPUs)"


def test_a_quick_pass_looks_only_so_far_and_says_a_deeper_look_is_due() -> None:
    holder = running(plan(cpus=2), ends_in=HOUR)
    head = queued(plan(cpus=4))
    held = [queued(plan(cpus=1)) for _ in range(3)]
    short = queued(plan(cpus=1), timeout=60)  # fifth in the queue: could backfill
    queue = [head, *held, short]
    free = free_on(node(cpus=4), [holder])
    quick = place(queue, [holder], free, MOMENT, depth=3)
    assert quick.start == [] and quick.truncated
    deep = place(queue, [holder], free, MOMENT)
    assert [r.id for r, _ in deep.start] == [short.id] and not deep.truncated


# -- plans from the default table, on a node without GPUs ---------------------------------


def table_run(plan_id: str) -> Run:
    return Run(
        id=new_id("run"),
        job_id="job-x",
        status=RunStatus.RUNNING,
        plan=DEFAULT_PLANS[plan_id],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        timeout_seconds=60,
    )


def cpu_node(cpus: int, memory_gib: int) -> NodeInventory:
    return NodeInventory(
        cpus=cpus, memory_bytes=memory_gib * GIB, disk_total_bytes=GIB, disk_free_bytes=GIB
    )


def started(queue: list[Run], running: list[Run], node: NodeInventory) -> list[str]:
    now_ = datetime.now(UTC)
    soon = timedelta(seconds=10)  # the running end before a queued run could (60 s timeouts)
    active = [
        r.with_changes(status=RunStatus.RUNNING, started_at=now_, deadline_at=now_ + soon)
        for r in running
    ]
    decision = place(queue, active, free_on(node, active), now_)
    return [r.id for r, _ in decision.start]


def test_placement_is_fifo_and_never_starves_the_head() -> None:
    node = cpu_node(4, 8)
    running = [table_run("pro")]  # 2 CPUs, 4 GiB
    big, small = table_run("pro-plus"), table_run("starter")  # 4 CPUs waits; starter would fit
    assert started([big, small], running, node) == []
    assert started([small, big], running, node) == [small.id]
    second = small.with_changes(id="run-2")
    assert started([small, second], [], node) == [small.id, "run-2"]


def test_placement_fills_exactly_to_capacity() -> None:
    queue = [table_run("standard").with_changes(id=f"run-{i}") for i in range(3)]
    assert started(queue, [], cpu_node(2, 4)) == ["run-0", "run-1"]


def test_only_plans_that_fit_the_node_can_ever_run() -> None:
    node = cpu_node(2, 24)
    assert never_fits(DEFAULT_PLANS["pro"], node) is None
    assert never_fits(DEFAULT_PLANS["pro-plus"], node) == "4 CPUs (the machine has 2)"
    assert never_fits(DEFAULT_PLANS["gpu-1"], node) == (
        "8 CPUs (the machine has 2); 32 GiB of memory (it has 24 GiB); 1 GPU (it has 0 GPUs)"
    )
