"""Runs: one execution of a job, from the queue to its outcome. How a run ends once its
container has exited (`outcome`), and how new runs are made (`pending_run`, `next_attempt`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from jobd.domain.jobs import JobSpec, Kind
from jobd.domain.metrics import RunUsage
from jobd.domain.outputs import OutputSummary, size_text
from jobd.domain.progress import Progress
from jobd.domain.records import Row, from_epoch, maybe_epoch, new_id, rfc3339
from jobd.domain.resources import MIB, SECONDS_PER_MONTH, Allocation, Limits, Plan
from jobd.domain.ssh import SshEndpoint
from jobd.domain.states import (
    COMMAND_EXIT_CODES,
    Failure,
    FailureType,
    RunStatus,
    StopReason,
    Trigger,
)
from jobd.domain.workflows import Dependency, Held


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    id: str
    job_id: str
    status: RunStatus
    plan: Plan
    created_at: datetime
    timeout_seconds: int
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    exit_code: int | None = None
    failure: Failure | None = None
    limits: Limits | None = None
    stop_reason: StopReason | None = None
    container_id: str | None = None
    # what the run executes, as its job was when the run was created (a later update of the
    # job changes the runs after it, never this one); None for runs recorded before runs
    # kept it, which run their job's spec
    spec: JobSpec | None = None
    trigger: Trigger = Trigger.API
    attempt: int = 1  # 2 and up: a retry of the run before
    scheduled_for: datetime | None = None  # the cron tick it stands for (trigger schedule)
    not_before: datetime | None = None  # a retry waits in the queue until its backoff ends
    retried_by: str | None = None  # the next attempt, once this one failed and was retried
    # where its published ports listen on the host: container port -> "address:port"
    endpoints: Mapping[int, str] | None = None
    priority: int = 0  # its place in the queue: higher first, then oldest first
    pending_until: datetime | None = None  # still queued then: it fails unschedulable
    allocation: Allocation | None = None  # its GPUs and cores, once placed
    gpu_peak_bytes: int | None = None  # the most GPU memory its processes were seen using
    usage: RunUsage | None = None  # CPU and memory, as its samples saw them
    # SIGTERM, then SIGKILL after this many seconds, when a cancel or a stop asked for its own
    # grace (0: at once); None: the configured default
    stop_grace_seconds: int | None = None
    outputs: OutputSummary | None = None  # what its /outputs held when last counted
    owner_uid: int | None = None  # its job's owner's, as stored (quotas, fair share)
    project: str | None = None  # its job's project, as stored
    # pending but not to be placed yet: its dependencies are unmet, or its array is at its
    # parallelism (None: it may be placed)
    held: Held | None = None
    after: tuple[Dependency, ...] = ()  # what it waited (or waits) on, as resolved
    array_id: str | None = None  # the array it is a run of: the array's first run's id
    array_index: int | None = None  # its index there (JOBD_ARRAY_INDEX)
    # where the SSH gateway reaches it: set as it starts, when its job has keys
    ssh: SshEndpoint | None = None
    progress: Progress | None = None  # what its marker lines said (None: no marker yet)

    @classmethod
    def from_row(cls, row: Row) -> Run:
        failure = None
        if row["failure_type"]:
            failure = Failure(
                type=FailureType(row["failure_type"]), message=row["failure_message"] or ""
            )
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            status=RunStatus(row["status"]),
            plan=_stored_plan(row["plan"]),
            created_at=from_epoch(row["created_at"]),
            timeout_seconds=row["timeout_seconds"],
            started_at=maybe_epoch(row["started_at"]),
            finished_at=maybe_epoch(row["finished_at"]),
            deadline_at=maybe_epoch(row["deadline_at"]),
            exit_code=row["exit_code"],
            failure=failure,
            limits=Limits.from_api(orjson.loads(row["limits"])) if row["limits"] else None,
            stop_reason=StopReason(row["stop_reason"]) if row["stop_reason"] else None,
            container_id=row["container_id"],
            spec=JobSpec.from_record(orjson.loads(row["spec"])) if row["spec"] else None,
            trigger=Trigger(row["trigger"]),
            attempt=row["attempt"],
            scheduled_for=maybe_epoch(row["scheduled_for"]),
            not_before=maybe_epoch(row["not_before"]),
            retried_by=row["retried_by"],
            endpoints=_endpoints(row["endpoints"]),
            priority=row["priority"],
            pending_until=maybe_epoch(row["pending_until"]),
            allocation=Allocation.from_api(orjson.loads(row["allocation"]))
            if row["allocation"]
            else None,
            gpu_peak_bytes=row["gpu_peak_bytes"],
            usage=RunUsage.from_record(row["usage"]),
            stop_grace_seconds=row["stop_grace_seconds"],
            outputs=OutputSummary.from_record(orjson.loads(row["outputs"]))
            if row["outputs"]
            else None,
            owner_uid=row["owner_uid"],
            project=row["project"],
            held=Held(row["held"]) if row["held"] else None,
            after=_dependencies(row["after"]),
            array_id=row["array_id"],
            array_index=row["array_index"],
            ssh=SshEndpoint.from_record(orjson.loads(row["ssh"])) if row["ssh"] else None,
            progress=Progress.from_record(orjson.loads(row["progress"]))
            if row["progress"]
            else None,
        )

    @property
    def running_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def cost(self) -> float | None:
        """The plan's monthly price prorated to the second of running time."""
        seconds = self.running_seconds
        if self.plan.price_per_month is None:
            return None
        if seconds is None:
            return 0.0
        return round(self.plan.price_per_month * int(seconds) / SECONDS_PER_MONTH, 6)

    def gpu_usage(self) -> dict[str, Any] | None:
        """GPU-seconds, and normalizedSeconds: running seconds times each GPU's model
        performance factor (as render farms bill), with the peak memory seen in use."""
        gpus = self.allocation.gpus if self.allocation else ()
        if not gpus:
            return None
        seconds = self.running_seconds or 0.0
        return {
            "gpuSeconds": round(seconds * len(gpus), 3),
            "normalizedSeconds": round(seconds * sum(g.factor for g in gpus), 3),
            "peakMemoryBytes": self.gpu_peak_bytes,
        }

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "jobId": self.job_id,
            "status": self.status.value,
            "createdAt": rfc3339(self.created_at),
            "startedAt": rfc3339(self.started_at),
            "finishedAt": rfc3339(self.finished_at),
            "deadlineAt": rfc3339(self.deadline_at),
            "timeoutSeconds": self.timeout_seconds,
            "exitCode": self.exit_code,
            "failureReason": self.failure.to_api() if self.failure else None,
            "plan": self.plan.to_api(),
            "limits": self.limits.to_api() if self.limits else None,
            "cost": {"amount": self.cost, "currency": "USD"} if self.cost is not None else None,
            "runningSeconds": self.running_seconds,
            "trigger": self.trigger.value,
            "attempt": self.attempt,
            "scheduledFor": rfc3339(self.scheduled_for),
            "notBefore": rfc3339(self.not_before),
            "retriedBy": self.retried_by,
            "stopReason": self.stop_reason.value if self.stop_reason else None,
            "endpoints": [
                {"containerPort": port, "address": address}
                for port, address in (self.endpoints or {}).items()
            ],
            "priority": self.priority,
            "pendingUntil": rfc3339(self.pending_until),
            "stopGraceSeconds": self.stop_grace_seconds,
            "output": self.outputs.to_api(self.id) if self.outputs else None,
            "allocation": self.allocation.to_api() if self.allocation else None,
            "gpuUsage": self.gpu_usage(),
            "usage": self.usage.to_api() if self.usage else None,
            "after": [d.to_api() for d in self.after],
            "arrayId": self.array_id,
            "arrayIndex": self.array_index,
            "ssh": self.ssh.for_run(self.id) if self.ssh else None,
            "progress": self.progress.to_api() if self.progress else None,
            "phases": self._phases(),
            "finalConfig": self._final_config(),
        }

    def _phases(self) -> list[dict[str, Any]]:
        """The phase timeline, each phase with how long it lasted: until the next began, the
        last until the run ended (or until now, while it runs)."""
        phases = self.progress.phases if self.progress else ()
        if not phases:
            return []
        end = (self.finished_at or datetime.now(UTC)).timestamp()
        ends = [p.started_at for p in phases[1:]] + [end]
        return [
            {**p.to_api(), "seconds": round(max(0.0, until - p.started_at), 3)}
            for p, until in zip(phases, ends, strict=True)
        ]

    def _final_config(self) -> dict[str, Any] | None:
        """What the run executes and exactly what it was given: its resources, its devices
        (UUIDs) and CPU set once placed, and who its process is on the host once created."""
        if self.spec is None:
            return None
        identity = self.limits.identity if self.limits else None
        return {
            **self.spec.public_record(),
            "granted": self.plan.to_api(),
            "allocation": self.allocation.to_api() if self.allocation else None,
            "runAs": identity.to_api() if identity else None,
        }

    def with_changes(self, **changes: Any) -> Run:
        return dataclasses.replace(self, **changes)


@functools.lru_cache(maxsize=512)
def _stored_plan(column: str) -> Plan:
    """A run's plan as stored: runs share a handful of plans, and placement reads many runs
    a pass. Plans are frozen, so one object serves them all."""
    return Plan.from_api(orjson.loads(column))


def _dependencies(column: str | None) -> tuple[Dependency, ...]:
    return tuple(Dependency.from_api(d) for d in orjson.loads(column)) if column else ()


def _endpoints(column: str | None) -> dict[int, str] | None:
    if not column:
        return None
    return {int(port): address for port, address in orjson.loads(column).items()}


def outcome(
    run: Run,
    *,
    exit_code: int | None,
    oom_killed: bool,
    command_failure: Failure | None = None,
) -> tuple[RunStatus, Failure | None]:
    """How a run ends once its container has exited. A cancel the user asked for wins over the
    exit code (the API said `cancelling`); a clean stop succeeds on exit 0 and is cancelled
    otherwise; a deadline stop is a timeout; an OOM kill inside the run explains a non-zero
    exit; a command the runtime could not start (`command_failure`, in its own words), or a
    shell's 127 or 126, is a command that was not found or not executable; otherwise the exit
    code decides. A stopped run says which signal ended it."""
    if run.status is RunStatus.CANCELLING or run.stop_reason is StopReason.CANCEL:
        message = "cancelled by request"
        if exit_code is not None:
            message += f"; {ended_by(exit_code)}"
        return RunStatus.CANCELLED, Failure(type=FailureType.CANCELLED, message=message)
    if run.stop_reason is StopReason.STOP:
        return _stopped(exit_code)
    if run.stop_reason is StopReason.TIMEOUT:
        return RunStatus.FAILED, Failure(
            type=FailureType.TIMEOUT,
            message=f"stopped at its deadline after {run.timeout_seconds}s; {ended_by(exit_code)}",
        )
    if run.stop_reason in (StopReason.OUTPUT_LIMIT, StopReason.DISK_FULL):
        return RunStatus.FAILED, Failure(
            type=FailureType.OUTPUT_LIMIT, message=f"{_why_outputs(run)}; {ended_by(exit_code)}"
        )
    return _exited(run, exit_code, oom_killed, command_failure)


def _why_outputs(run: Run) -> str:
    written = f" ({size_text(run.outputs.bytes)} written)" if run.outputs else ""
    if run.stop_reason is StopReason.DISK_FULL:
        return f"stopped: the disk holding its outputs was nearly full{written}"
    limit = run.spec.output_limit_bytes if run.spec else None
    of = f" of {size_text(limit)}" if limit else ""
    return f"stopped: its outputs grew past their limit{of}{written}"


def ended_by(exit_code: int | None) -> str:
    """What a stopped process's exit code says of its end: a code above 128 is the signal that
    killed it (128 + its number, as shells report it)."""
    if exit_code is None:
        return "its exit code could not be read"
    if exit_code > 128:
        with contextlib.suppress(ValueError):
            return f"{signal.Signals(exit_code - 128).name} ended it (exit code {exit_code})"
    return f"it exited {exit_code}"


def _exited(
    run: Run, exit_code: int | None, oom_killed: bool, command_failure: Failure | None
) -> tuple[RunStatus, Failure | None]:
    if exit_code == 0:
        return RunStatus.SUCCEEDED, None
    if oom_killed:
        return RunStatus.FAILED, Failure(
            type=FailureType.OOM_KILLED,
            message=f"out of memory: a process exceeded the plan's {run.plan.memory_bytes // MIB}"
            f" MiB and was killed (exit code {exit_code})",
        )
    if command_failure is not None:
        return RunStatus.FAILED, command_failure
    if exit_code is None:
        return RunStatus.FAILED, Failure(
            type=FailureType.LOST, message="the container's exit code could not be read"
        )
    if exit_code in COMMAND_EXIT_CODES:
        kind = COMMAND_EXIT_CODES[exit_code]
        what = "not found" if kind is FailureType.COMMAND_NOT_FOUND else "not executable"
        return RunStatus.FAILED, Failure(
            type=kind, message=f"exited with code {exit_code}: a command was {what}"
        )
    return RunStatus.FAILED, Failure(
        type=FailureType.EXIT_CODE, message=f"exited with code {exit_code}"
    )


def pending_run(job_id: str, spec: JobSpec, plan: Plan, moment: datetime, **origin: Any) -> Run:
    """A new run of `spec`, queued at `moment`; `origin` says what made it, when it was not a
    request (trigger, attempt, scheduled_for, not_before). With maxPendingSeconds, it may
    wait that long from when it may first start."""
    limit = spec.max_pending_seconds
    queued_from = origin.get("not_before") or moment
    return Run(
        priority=spec.priority,
        pending_until=queued_from + timedelta(seconds=limit) if limit else None,
        id=new_id("run"),
        job_id=job_id,
        status=RunStatus.PENDING,
        plan=plan,
        created_at=moment,
        timeout_seconds=spec.timeout_seconds,
        spec=spec,
        **origin,
    )


def submission(
    job_id: str, spec: JobSpec, plan: Plan, moment: datetime, **origin: Any
) -> list[Run]:
    """The runs one submission of `spec` makes (its creation, a rerun, a schedule's tick):
    one, or one per index of its array. An array's runs are created a microsecond apart, so
    the queue takes them in index order; the first one's id is the array's; past its
    parallelism they are held until a run of it ends."""
    if spec.array is None:
        return [pending_run(job_id, spec, plan, moment, **origin)]
    indices = spec.array.values
    first = pending_run(job_id, spec, plan, moment, array_index=indices[0], **origin)
    runs = [first.with_changes(array_id=first.id)]
    bound = spec.array.parallelism or len(indices)
    for n, index in enumerate(indices[1:], start=1):
        at = moment + timedelta(microseconds=n)
        held = Held.ARRAY if n >= bound else None
        run = pending_run(
            job_id, spec, plan, at, array_id=first.id, array_index=index, held=held, **origin
        )
        runs.append(run)
    return runs


def next_attempt(run: Run, spec: JobSpec, moment: datetime) -> Run | None:
    """The retry of a run that just failed, waiting out its backoff; None when the spec's
    retry policy asks for none."""
    policy = spec.restarts
    delay = policy.delay_after(run) if policy else None
    if delay is None:
        return None
    return pending_run(
        run.job_id,
        spec,
        run.plan,
        moment,
        trigger=Trigger.RESTART if spec.kind is Kind.PERSISTENT else Trigger.RETRY,
        attempt=run.attempt + 1,
        not_before=moment + timedelta(seconds=delay),
        array_id=run.array_id,  # an array's run is retried in its place: its slot, its index
        array_index=run.array_index,
    )


def _stopped(exit_code: int | None) -> tuple[RunStatus, Failure | None]:
    """A clean stop: a service that exits 0 on SIGTERM succeeded."""
    if exit_code == 0:
        return RunStatus.SUCCEEDED, None
    return RunStatus.CANCELLED, Failure(
        type=FailureType.CANCELLED, message=f"stopped by request; {ended_by(exit_code)}"
    )
