"""The state machine, ids, outcomes and cost: pure logic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from jobd.domain.records import new_id
from jobd.domain.resources import DEFAULT_PLANS, GIB, Plan
from jobd.domain.runs import Run, outcome
from jobd.domain.states import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Failure,
    FailureType,
    RunStatus,
    StopReason,
    sources_of,
)


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
        ({}, 127, False, RunStatus.FAILED, FailureType.COMMAND_NOT_FOUND),
        ({}, 126, False, RunStatus.FAILED, FailureType.COMMAND_NOT_EXECUTABLE),
        ({}, 127, True, RunStatus.FAILED, FailureType.OOM_KILLED),
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


def test_a_command_the_runtime_could_not_start_ends_in_its_words() -> None:
    said = Failure(type=FailureType.COMMAND_NOT_FOUND, message="its command was not found: ...")
    assert outcome(make_run(), exit_code=1, oom_killed=False, command_failure=said) == (
        RunStatus.FAILED,
        said,
    )
    cancelled = make_run(status=RunStatus.CANCELLING)
    status, _ = outcome(cancelled, exit_code=1, oom_killed=False, command_failure=said)
    assert status is RunStatus.CANCELLED, "a cancel the user asked for still wins"


@pytest.mark.parametrize(
    ("run_changes", "exit_code", "message"),
    [
        (
            {"status": RunStatus.CANCELLING},
            143,
            "cancelled by request; SIGTERM ended it (exit code 143)",
        ),
        (
            {"status": RunStatus.CANCELLING},
            137,
            "cancelled by request; SIGKILL ended it (exit code 137)",
        ),
        ({"status": RunStatus.CANCELLING}, None, "cancelled by request"),
        (
            {"stop_reason": StopReason.STOP},
            137,
            "stopped by request; SIGKILL ended it (exit code 137)",
        ),
        ({"stop_reason": StopReason.STOP}, 2, "stopped by request; it exited 2"),
        (
            {"stop_reason": StopReason.TIMEOUT},
            143,
            "stopped at its deadline after 60s; SIGTERM ended it (exit code 143)",
        ),
        ({"stop_reason": StopReason.STOP}, 255, "stopped by request; it exited 255"),
    ],
)
def test_a_stopped_run_says_which_signal_ended_it(
    run_changes: dict[str, object], exit_code: int | None, message: str
) -> None:
    _, failure = outcome(make_run(**run_changes), exit_code=exit_code, oom_killed=False)
    assert failure is not None and failure.message == message


def test_cost_is_the_monthly_price_prorated_to_the_second() -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    run = make_run("standard", started_at=started, finished_at=started + timedelta(hours=24))
    assert run.cost == pytest.approx(25.0 / 30)
    assert make_run("pro-max", started_at=started, finished_at=started).cost is None
    assert make_run("standard").cost == 0.0
    free = Plan(id="free", memory_bytes=GIB, cpus=1, price_per_month=None)
    assert make_run().with_changes(plan=free).to_api()["cost"] is None
