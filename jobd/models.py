"""jobd's domain: jobs, runs, plans and the run state machine. Pure: imports nothing of jobd.

A *job* is what the user asked for; a *run* is one container execution of it. The run state
machine (drawn in docs/state-machine.md):

    pending -> assigned -> running -> succeeded | failed | cancelled
    with cancelling while a stop requested by the user is in progress.

The outcome (why a run failed) is kept apart from the state, as `Failure`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import orjson

SECONDS_PER_MONTH = 30 * 24 * 3600  # plan prices are prorated over a 30-day month
DEFAULT_TIMEOUT_SECONDS = 30 * 24 * 3600
DEFAULT_PLAN = "standard"
MIB = 1024 * 1024
GIB = 1024 * MIB


class Row(Protocol):
    """A database row: sqlite3.Row, or a plain mapping in tests."""

    def __getitem__(self, key: str) -> Any: ...


class RunStatus(StrEnum):
    PENDING = "pending"  # queued: waits until its plan fits on the node
    ASSIGNED = "assigned"  # placed: its resources are reserved, its container is being created
    RUNNING = "running"  # its container has started
    CANCELLING = "cancelling"  # the user cancelled it and its container is being stopped
    SUCCEEDED = "succeeded"  # the container exited 0
    FAILED = "failed"  # ended for any other reason than a cancel; see Failure
    CANCELLED = "cancelled"  # the user cancelled it

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def holds_resources(self) -> bool:
        return self in ACTIVE_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({RunStatus.ASSIGNED, RunStatus.RUNNING, RunStatus.CANCELLING})

# The one table of legal transitions. The store refuses anything else.
TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.ASSIGNED, RunStatus.CANCELLED}),
    RunStatus.ASSIGNED: frozenset(
        {
            RunStatus.PENDING,
            RunStatus.RUNNING,
            RunStatus.CANCELLING,
            RunStatus.FAILED,
            RunStatus.SUCCEEDED,
            RunStatus.CANCELLED,
        }
    ),
    RunStatus.RUNNING: frozenset({RunStatus.CANCELLING, RunStatus.SUCCEEDED, RunStatus.FAILED}),
    RunStatus.CANCELLING: frozenset({RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses a run may move to `target` from."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


class FailureType(StrEnum):
    EXIT_CODE = "exit_code"  # the container exited non-zero
    OOM_KILLED = "oom_killed"  # the kernel killed a process of the run for exceeding its memory
    TIMEOUT = "timeout"  # the run reached its deadline and was stopped
    CANCELLED = "cancelled"  # the user cancelled the run
    IMAGE_NOT_FOUND = "image_not_found"  # the image is not in local storage and can't be pulled
    RUNTIME_ERROR = "runtime_error"  # podman could not create or start the container
    LOST = "lost"  # the container vanished (e.g. a reboot) while jobd was not watching


class StopReason(StrEnum):
    CANCEL = "cancel"  # the user cancelled the run
    TIMEOUT = "timeout"  # the run's deadline passed


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    type: FailureType
    message: str

    def to_api(self) -> dict[str, str]:
        return {"type": self.type.value, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    id: str
    memory_bytes: int
    cpus: float
    pids_limit: int = 4096
    price_per_month: float | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memoryBytes": self.memory_bytes,
            "memoryMb": self.memory_bytes // MIB,
            "cpus": self.cpus,
            "pidsLimit": self.pids_limit,
            "pricePerMonth": self.price_per_month,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=data["id"],
            memory_bytes=int(data["memoryBytes"]),
            cpus=float(data["cpus"]),
            pids_limit=int(data["pidsLimit"]),
            price_per_month=data.get("pricePerMonth"),
        )


def _plan(pid: str, memory_mb: int, cpus: float, price: float | None) -> Plan:
    return Plan(id=pid, memory_bytes=memory_mb * MIB, cpus=cpus, price_per_month=price)


# Render's instance types for one-off jobs.
DEFAULT_PLANS: Mapping[str, Plan] = {
    p.id: p
    for p in (
        _plan("starter", 512, 0.5, 7.0),
        _plan("starter-plus", 1024, 1, 15.0),
        _plan("standard", 2048, 1, 25.0),
        _plan("standard-plus", 3072, 1.5, 50.0),
        _plan("pro", 4096, 2, 85.0),
        _plan("pro-plus", 8192, 4, 175.0),
        _plan("pro-max", 16384, 8, None),
        _plan("pro-ultra", 32768, 16, None),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeCapacity:
    """What the machine can give to runs at once."""

    cpus: float
    memory_bytes: int

    def admits(self, plan: Plan) -> bool:
        return plan.cpus <= self.cpus and plan.memory_bytes <= self.memory_bytes


def place(queue: list[Run], running: list[Run], capacity: NodeCapacity) -> list[Run]:
    """The pending runs to start now: oldest first, stopping at the first that does not fit, so a
    large run waiting at the head of the queue is never starved by smaller ones behind it."""
    cpus = capacity.cpus - sum(r.plan.cpus for r in running)
    memory = capacity.memory_bytes - sum(r.plan.memory_bytes for r in running)
    chosen: list[Run] = []
    for run in queue:
        if run.plan.cpus > cpus + 1e-9 or run.plan.memory_bytes > memory:
            break
        cpus -= run.plan.cpus
        memory -= run.plan.memory_bytes
        chosen.append(run)
    return chosen


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    uid: int | None
    user: str
    via: str  # "unix" (peer credentials) or "tcp" (bearer token)

    def to_api(self) -> dict[str, Any]:
        return {"uid": self.uid, "user": self.user, "via": self.via}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a run executes: everything a container needs, fixed when the job is created."""

    image: str
    command: tuple[str, ...] = ()  # empty: the image's own entrypoint/cmd
    env: Mapping[str, str] = field(default_factory=dict)
    plan: str = DEFAULT_PLAN
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    network: str = "default"  # "default" (podman's network) or "none" (no network, faster start)

    @classmethod
    def from_request(cls, body: Mapping[str, Any], *, default_timeout: int) -> JobSpec:
        """From an already schema-validated request body."""
        if "startCommand" in body:
            command: tuple[str, ...] = ("/bin/sh", "-c", body["startCommand"])
        else:
            command = tuple(body.get("command", ()))
        return cls(
            image=body["image"],
            command=command,
            env=dict(body.get("env", {})),
            plan=body.get("plan", DEFAULT_PLAN),
            timeout_seconds=int(body.get("timeoutSeconds", default_timeout)),
            network=body.get("network", "default"),
        )

    def updated(self, body: Mapping[str, Any]) -> JobSpec:
        """This spec with the fields an already schema-validated update gives; each replaces
        its value whole (env too)."""
        changes: dict[str, Any] = {}
        if "startCommand" in body:
            changes["command"] = ("/bin/sh", "-c", body["startCommand"])
        if "command" in body:
            changes["command"] = tuple(body["command"])
        for key, name in (("image", "image"), ("plan", "plan"), ("network", "network")):
            if key in body:
                changes[name] = body[key]
        if "env" in body:
            changes["env"] = dict(body["env"])
        if "timeoutSeconds" in body:
            changes["timeout_seconds"] = int(body["timeoutSeconds"])
        return dataclasses.replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "plan": self.plan,
            "timeoutSeconds": self.timeout_seconds,
            "network": self.network,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(
            image=data["image"],
            command=tuple(data["command"]),
            env=dict(data["env"]),
            plan=data["plan"],
            timeout_seconds=int(data["timeoutSeconds"]),
            network=data["network"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    id: str
    name: str | None
    spec: JobSpec
    labels: Mapping[str, str]
    owner: Owner
    created_at: datetime
    latest_run_id: str | None = None
    status: RunStatus | None = None  # the latest run's status

    @classmethod
    def from_row(cls, row: Row) -> Job:
        owner = orjson.loads(row["owner"])
        return cls(
            id=row["id"],
            name=row["name"],
            spec=JobSpec(
                image=row["image"],
                command=tuple(orjson.loads(row["command"])),
                env=orjson.loads(row["env"]),
                plan=row["plan"],
                timeout_seconds=row["timeout_seconds"],
                network=row["network"],
            ),
            labels=orjson.loads(row["labels"]),
            owner=Owner(uid=owner["uid"], user=owner["user"], via=owner["via"]),
            created_at=from_epoch(row["created_at"]),
            latest_run_id=row["latest_run_id"],
            status=RunStatus(row["status"]) if row["status"] else None,
        )

    def to_api(self, latest_run: Run | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "image": self.spec.image,
            "command": list(self.spec.command),
            "env": dict(self.spec.env),
            "plan": self.spec.plan,
            "timeoutSeconds": self.spec.timeout_seconds,
            "network": self.spec.network,
            "labels": dict(self.labels),
            "owner": self.owner.to_api(),
            "createdAt": rfc3339(self.created_at),
            "status": self.status.value if self.status else None,
            "latestRunId": self.latest_run_id,
        }
        if latest_run is not None:
            doc["latestRun"] = latest_run.to_api()
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The limits a run's container was given, and whether the kernel enforces them."""

    memory_bytes: int
    cpus: float
    pids_limit: int
    nofile: int
    nproc: int
    enforced: bool
    note: str | None = None  # why they are not enforced, when they are not

    def to_api(self) -> dict[str, Any]:
        return {
            "memoryBytes": self.memory_bytes,
            "cpus": self.cpus,
            "pidsLimit": self.pids_limit,
            "nofile": self.nofile,
            "nproc": self.nproc,
            "enforced": self.enforced,
            "note": self.note,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Limits:
        return cls(
            memory_bytes=data["memoryBytes"],
            cpus=data["cpus"],
            pids_limit=data["pidsLimit"],
            nofile=data["nofile"],
            nproc=data["nproc"],
            enforced=data["enforced"],
            note=data.get("note"),
        )


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
            plan=Plan.from_api(orjson.loads(row["plan"])),
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
        }

    def with_changes(self, **changes: Any) -> Run:
        return dataclasses.replace(self, **changes)


class _RandomBytes:
    """os.urandom read in blocks. The call releases the GIL, and under load taking it back
    costs far more than the call itself: one call serves a few hundred ids."""

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._buffer = b""
        self._offset = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer, self._offset = os.urandom(self._block), 0
            start, self._offset = self._offset, self._offset + count
            return self._buffer[start : self._offset]


_random_bytes = _RandomBytes()


def new_id(prefix: str) -> str:
    """The prefix and 32 hex digits: the time in milliseconds (48 bits), then 80 random bits.
    Unguessable, and ordered by creation, so new rows land at the end of the store's id
    indexes (random ids dirtied a different page per row, a third of a submission's writing)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}-{millis:012x}{_random_bytes.take(10).hex()}"


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment else None


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def maybe_epoch(seconds: float | None) -> datetime | None:
    return from_epoch(seconds) if seconds is not None else None


def outcome(
    run: Run, *, exit_code: int | None, oom_killed: bool
) -> tuple[RunStatus, Failure | None]:
    """How a run ends once its container has exited. A stop the user asked for wins over the
    exit code (the API said `cancelling`); a deadline stop is a timeout; an OOM kill inside the
    run explains a non-zero exit; otherwise the exit code decides."""
    if run.status is RunStatus.CANCELLING or run.stop_reason is StopReason.CANCEL:
        return RunStatus.CANCELLED, Failure(
            type=FailureType.CANCELLED, message="cancelled by request"
        )
    if run.stop_reason is StopReason.TIMEOUT:
        return RunStatus.FAILED, Failure(
            type=FailureType.TIMEOUT,
            message=f"stopped at its deadline after {run.timeout_seconds}s",
        )
    if exit_code == 0:
        return RunStatus.SUCCEEDED, None
    if oom_killed:
        return RunStatus.FAILED, Failure(
            type=FailureType.OOM_KILLED,
            message=f"out of memory: a process exceeded the plan's {run.plan.memory_bytes // MIB}"
            f" MiB and was killed (exit code {exit_code})",
        )
    if exit_code is None:
        return RunStatus.FAILED, Failure(
            type=FailureType.LOST, message="the container's exit code could not be read"
        )
    return RunStatus.FAILED, Failure(
        type=FailureType.EXIT_CODE, message=f"exited with code {exit_code}"
    )


RECENT_PASSES = 1000


class PassTimes:
    """How long scheduling passes take (reading the active runs and the queue's head,
    deciding, recording what was placed): the last, the slowest, and percentiles over the
    recent ones. Served by /v1/health; the benchmark reads it."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.slowest = 0.0
        self.recent: deque[float] = deque(maxlen=RECENT_PASSES)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.last = seconds
        self.slowest = max(self.slowest, seconds)
        self.recent.append(seconds)

    def percentile(self, pct: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
