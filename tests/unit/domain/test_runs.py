"""The state machine, placement, outcomes and cost: pure logic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from jobd.domain.capacity import free_on, never_fits
from jobd.domain.node import NodeInventory
from jobd.domain.records import new_id
from jobd.domain.resources import DEFAULT_PLANS, GIB, Plan
from jobd.domain.runs import Run, outcome
from jobd.domain.states import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    FailureType,
    RunStatus,
    StopReason,
    sources_of,
)
from jobd.scheduler.placement import place


def make_run(plan: str = "standard", **changes: object) -> Run:
    run = Run(
        id=new_id("run"),
        job_id="job-x",
        status=RunStatus.RUNNING,
        plan=DEFAULT_PLANS[plan],
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        timeout_seconds=60,
    )
    return run.with_changes(**changes)


def test_terminal_statuses_have_no_way_out() -> None:
    for status in TERMINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
        assert status.is_terminal


def test_a_pending_run_can_only_be_placed_cancelled_or_given_up_as_unschedulable() -> None:
    assert TRANSITIONS[RunStatus.PENDING] == {
        RunStatus.ASSIGNED,
        RunStatus.CANCELLED,
        RunStatus.FAILED,
    }
    assert sources_of(RunStatus.CANCELLING) == {RunStatus.ASSIGNED, RunStatus.RUNNING}
    assert RunStatus.PENDING not in sources_of(RunStatus.RUNNING)


def test_cancelling_ends_only_as_cancelled() -> None:
    assert TRANSITIONS[RunStatus.CANCELLING] == {RunStatus.CANCELLED}


def test_ids_are_prefixed_unguessable_and_ordered_by_creation() -> None:
    ids = [new_id("run") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch("run-[0-9a-f]{32}", i) for i in ids)
    stamps = [i[4:16] for i in ids]  # creation order, to the millisecond
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("run_changes", "exit_code", "oom", "status", "failure"),
    [
        ({}, 0, False, RunStatus.SUCCEEDED, None),
        ({}, 3, False, RunStatus.FAILED, FailureType.EXIT_CODE),
        ({}, 137, True, RunStatus.FAILED, FailureType.OOM_KILLED),
        ({}, 0, True, RunStatus.SUCCEEDED, None),  # the job survived an OOM in a child
        ({"stop_reason": StopReason.TIMEOUT}, 143, False, RunStatus.FAILED, FailureType.TIMEOUT),
        ({"status": RunStatus.CANCELLING}, 0, False, RunStatus.CANCELLED, FailureType.CANCELLED),
        (
            {"status": RunStatus.CANCELLING, "stop_reason": StopReason.TIMEOUT},
            137,
            False,
            RunStatus.CANCELLED,
            FailureType.CANCELLED,
        ),
        ({}, None, False, RunStatus.FAILED, FailureType.LOST),
    ],
)
def test_outcome(
    run_changes: dict[str, object],
    exit_code: int | None,
    oom: bool,
    status: RunStatus,
    failure: FailureType | None,
) -> None:
    got_status, got_failure = outcome(make_run(**run_changes), exit_code=exit_code, oom_killed=oom)
    assert got_status is status
    assert (got_failure.type if got_failure else None) is failure


def _node(cpus: int, memory_gib: int) -> NodeInventory:
    return NodeInventory(
        cpus=cpus, memory_bytes=memory_gib * GIB, disk_total_bytes=GIB, disk_free_bytes=GIB
    )


def _started(queue: list[Run], running: list[Run], node: NodeInventory) -> list[str]:
    now_ = datetime.now(UTC)
    soon = timedelta(seconds=10)  # the running end before a queued run could (60 s timeouts)
    active = [
        r.with_changes(status=RunStatus.RUNNING, started_at=now_, deadline_at=now_ + soon)
        for r in running
    ]
    decision = place(queue, active, free_on(node, active), now_)
    return [r.id for r, _ in decision.start]


def test_placement_is_fifo_and_never_starves_the_head() -> None:
    node = _node(4, 8)
    running = [make_run("pro")]  # 2 CPUs, 4 GiB
    big, small = make_run("pro-plus"), make_run("starter")  # 4 CPUs waits; starter would fit
    assert _started([big, small], running, node) == []
    assert _started([small, big], running, node) == [small.id]
    second = small.with_changes(id="run-2")
    assert _started([small, second], [], node) == [small.id, "run-2"]


def test_placement_fills_exactly_to_capacity() -> None:
    queue = [make_run("standard").with_changes(id=f"run-{i}") for i in range(3)]
    assert _started(queue, [], _node(2, 4)) == ["run-0", "run-1"]


def test_only_plans_that_fit_the_node_can_ever_run() -> None:
    node = _node(2, 24)
    assert never_fits(DEFAULT_PLANS["pro"], node) is None
    assert never_fits(DEFAULT_PLANS["pro-plus"], node) == "4 CPUs (the machine has 2)"
    assert never_fits(DEFAULT_PLANS["gpu-1"], node) == (
        "8 CPUs (the machine has 2); 34.36 GB of memory (it has 25.77 GB); 1 GPU (it has 0 GPUs)"
    )


def test_cost_is_the_monthly_price_prorated_to_the_second() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    run = make_run("standard", started_at=started, finished_at=started + timedelta(hours=24))
    assert run.cost == pytest.approx(25.0 / 30)
    assert make_run("pro-max", started_at=started, finished_at=started).cost is None
    assert make_run("standard").cost == 0.0
    free = Plan(id="free", memory_bytes=GIB, cpus=1, price_per_month=None)
    assert make_run().with_changes(plan=free).to_api()["cost"] is None
