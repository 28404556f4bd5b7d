"""Retry and restart policies, clean stops: pure decisions (how long a retry waits, which
failures it covers, how a stopped run ends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobd.domain.jobs import JobSpec, Kind, RetryPolicy
from jobd.domain.resources import DEFAULT_PLANS
from jobd.domain.runs import Run, next_attempt, outcome
from jobd.domain.states import (
    TRANSITIONS,
    Failure,
    FailureCategory,
    FailureType,
    RunStatus,
    StopReason,
    Trigger,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def failed(
    kind: FailureType = FailureType.EXIT_CODE, exit_code: int | None = 1, attempt: int = 1
) -> Run:
    return Run(
        id="run-a",
        job_id="job-a",
        status=RunStatus.FAILED,
        plan=DEFAULT_PLANS["starter"],
        created_at=T0,
        timeout_seconds=60,
        exit_code=exit_code,
        failure=Failure(type=kind, message="x"),
        attempt=attempt,
    )


def test_failure_types_fall_into_categories() -> None:
    assert FailureType.EXIT_CODE.category is FailureCategory.APPLICATION
    assert FailureType.OOM_KILLED.category is FailureCategory.APPLICATION
    assert FailureType.LOST.category is FailureCategory.INFRASTRUCTURE
    assert FailureType.IMAGE_NOT_FOUND.category is FailureCategory.INFRASTRUCTURE
    assert FailureType.TIMEOUT.category is FailureCategory.TIMEOUT


def test_retries_back_off_exponentially_up_to_the_attempts_allowed() -> None:
    policy = RetryPolicy(max_attempts=4, backoff_seconds=2)
    assert [policy.delay_after(failed(attempt=n)) for n in (1, 2, 3, 4)] == [2, 4, 8, None]
    assert RetryPolicy(max_attempts=50, backoff_seconds=600).delay_after(failed(attempt=9)) == 3600


def test_what_a_retry_policy_covers() -> None:
    policy = RetryPolicy(max_attempts=3, on_exit_codes=frozenset({75}))
    assert policy.delay_after(failed(exit_code=75)) is not None
    assert policy.delay_after(failed(exit_code=1)) is None
    assert policy.delay_after(failed(FailureType.LOST, None)) is not None
    assert policy.delay_after(failed(FailureType.TIMEOUT, None)) is None
    assert policy.delay_after(failed(FailureType.CANCELLED, None)) is None
    strict = RetryPolicy(max_attempts=3, on_infrastructure=False, on_timeout=True)
    assert strict.delay_after(failed(FailureType.RUNTIME_ERROR, None)) is None
    assert strict.delay_after(failed(FailureType.TIMEOUT, None)) is not None
    assert strict.delay_after(failed(FailureType.OOM_KILLED, 137)) is not None


def test_a_command_that_could_not_run_is_never_retried_nor_restarted() -> None:
    policy = RetryPolicy(max_attempts=5, on_exit_codes=frozenset({126, 127}))
    for kind in (FailureType.COMMAND_NOT_FOUND, FailureType.COMMAND_NOT_EXECUTABLE):
        assert kind.category is FailureCategory.APPLICATION and not kind.retryable
        assert policy.delay_after(failed(kind, 127)) is None
        service = JobSpec(image="busybox", kind=Kind.PERSISTENT)
        assert next_attempt(failed(kind, 1), service, T0) is None


def test_the_next_attempt_waits_out_its_backoff_and_keeps_the_spec() -> None:
    spec = JobSpec(image="busybox", retry=RetryPolicy(max_attempts=2, backoff_seconds=5))
    retry = next_attempt(failed(), spec, T0)
    assert retry is not None
    assert retry.trigger is Trigger.RETRY and retry.attempt == 2 and retry.spec == spec
    assert retry.not_before == T0 + timedelta(seconds=5) and retry.status is RunStatus.PENDING
    assert next_attempt(failed(attempt=2), spec, T0) is None
    assert next_attempt(failed(), JobSpec(image="busybox"), T0) is None


def test_a_spec_record_round_trips_its_retry_policy_and_reads_older_records() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_seconds=1.5, on_exit_codes=frozenset({2, 3}))
    spec = JobSpec(image="busybox", retry=policy)
    assert JobSpec.from_record(spec.to_record()) == spec
    older = {k: v for k, v in spec.to_record().items() if k != "retry"}
    assert JobSpec.from_record(older).retry is None


def test_a_clean_stop_succeeds_on_exit_0_and_is_cancelled_otherwise() -> None:
    stopping = failed().with_changes(
        status=RunStatus.RUNNING, failure=None, stop_reason=StopReason.STOP
    )
    assert outcome(stopping, exit_code=0, oom_killed=False) == (RunStatus.SUCCEEDED, None)
    status, failure = outcome(stopping, exit_code=143, oom_killed=False)
    assert status is RunStatus.CANCELLED and failure is not None
    assert failure.type.category is FailureCategory.CANCELLED
    assert RunStatus.CANCELLED in TRANSITIONS[RunStatus.RUNNING]


def test_a_persistent_job_restarts_on_a_crash_by_default_never_on_a_timeout() -> None:
    service = JobSpec(image="busybox", kind=Kind.PERSISTENT)
    restart = next_attempt(failed(), service, T0)
    assert restart is not None and restart.trigger is Trigger.RESTART
    assert restart.not_before == T0 + timedelta(seconds=5)
    assert next_attempt(failed(FailureType.TIMEOUT, None), service, T0) is None
    assert next_attempt(failed(attempt=11), service, T0) is None
    assert JobSpec.from_record(service.to_record()).kind is Kind.PERSISTENT
