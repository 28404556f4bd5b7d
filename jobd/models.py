"""jobd's domain: jobs, runs, plans and the run state machine. Pure: imports nothing of jobd.

A *job* is what the user asked for; a *run* is one container execution of it. The run state
machine (drawn in docs/state-machine.md):

    pending -> assigned -> running -> succeeded | failed | cancelled
    with cancelling while a stop requested by the user is in progress.

The outcome (why a run failed) is kept apart from the state, as `Failure`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError

SECONDS_PER_MONTH = 30 * 24 * 3600  # plan prices are prorated over a 30-day month
DEFAULT_TIMEOUT_SECONDS = 30 * 24 * 3600
DEFAULT_PLAN = "standard"
MIB = 1024 * 1024
GIB = 1024 * MIB
GB = 1000**3  # the API's *Gb fields are decimal, as GPU makers count ("80 GB" H100s)
# a tick is on time when it fires within this of its moment (Quartz's misfire threshold): a
# daemon restart across a tick still fires it; a tick missed for longer is caught up or not
MISFIRE_GRACE = timedelta(seconds=60)
MAX_BACKOFF_SECONDS = 3600


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
    RunStatus.PENDING: frozenset(
        {RunStatus.ASSIGNED, RunStatus.CANCELLED, RunStatus.FAILED}  # failed: unschedulable
    ),
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
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.CANCELLING,
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,  # a clean stop the container did not exit 0 from
        }
    ),
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
    GPU_UNAVAILABLE = "gpu_unavailable"  # its GPUs did not reach the container: never run on CPU
    UNSCHEDULABLE = "unschedulable"  # it waited in the queue longer than its maxPendingSeconds

    @property
    def category(self) -> FailureCategory:
        return FAILURE_CATEGORIES[self]


class FailureCategory(StrEnum):
    APPLICATION = "application"  # the job's own code failed: a non-zero exit, an OOM kill
    TIMEOUT = "timeout"  # the job ran past its deadline
    INFRASTRUCTURE = "infrastructure"  # jobd, podman or the machine failed the run
    CANCELLED = "cancelled"  # someone stopped it
    UNSCHEDULABLE = "unschedulable"  # the node never had room for it in time: not retried


FAILURE_CATEGORIES: Mapping[FailureType, FailureCategory] = {
    FailureType.EXIT_CODE: FailureCategory.APPLICATION,
    FailureType.OOM_KILLED: FailureCategory.APPLICATION,
    FailureType.TIMEOUT: FailureCategory.TIMEOUT,
    FailureType.CANCELLED: FailureCategory.CANCELLED,
    FailureType.IMAGE_NOT_FOUND: FailureCategory.INFRASTRUCTURE,
    FailureType.RUNTIME_ERROR: FailureCategory.INFRASTRUCTURE,
    FailureType.LOST: FailureCategory.INFRASTRUCTURE,
    FailureType.GPU_UNAVAILABLE: FailureCategory.INFRASTRUCTURE,
    FailureType.UNSCHEDULABLE: FailureCategory.UNSCHEDULABLE,
}


class Trigger(StrEnum):
    API = "api"  # a request made it: the job's creation, or a rerun
    SCHEDULE = "schedule"  # the job's cron schedule fired
    RETRY = "retry"  # a failed run's retry policy asked for another attempt
    RESTART = "restart"  # a persistent job's run crashed and its restart policy started anew


class StopReason(StrEnum):
    CANCEL = "cancel"  # the user cancelled the run
    TIMEOUT = "timeout"  # the run's deadline passed
    STOP = "stop"  # the user asked for a clean stop: exit 0 on SIGTERM is a success


class Kind(StrEnum):
    BATCH = "batch"  # runs to completion (or its deadline)
    PERSISTENT = "persistent"  # a service: runs until stopped, restarted when it crashes


# a persistent job without a retry policy of its own is restarted on a crash this way
DEFAULT_RESTARTS = 10
DEFAULT_RESTART_BACKOFF = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    type: FailureType
    message: str

    def to_api(self) -> dict[str, str]:
        return {
            "type": self.type.value,
            "category": self.type.category.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a failed run gets another attempt: up to `max_attempts` runs in all, each after
    twice the previous wait (`backoff_seconds` first, at most an hour). Application failures
    are retried (only those exit codes, when `on_exit_codes` is given); infrastructure
    failures unless `on_infrastructure` is off; timeouts only when `on_timeout` is on;
    cancelled runs never."""

    max_attempts: int
    backoff_seconds: float = 10.0
    on_exit_codes: frozenset[int] | None = None
    on_timeout: bool = False
    on_infrastructure: bool = True

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> RetryPolicy:
        codes = data.get("onExitCodes")
        return cls(
            max_attempts=int(data["maxAttempts"]),
            backoff_seconds=float(data.get("backoffSeconds", 10.0)),
            on_exit_codes=frozenset(codes) if codes is not None else None,
            on_timeout=bool(data.get("onTimeout", False)),
            on_infrastructure=bool(data.get("onInfrastructure", True)),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "maxAttempts": self.max_attempts,
            "backoffSeconds": self.backoff_seconds,
            "onExitCodes": sorted(self.on_exit_codes) if self.on_exit_codes is not None else None,
            "onTimeout": self.on_timeout,
            "onInfrastructure": self.on_infrastructure,
        }

    def delay_after(self, run: Run) -> float | None:
        """Seconds to wait before the next attempt of this failed run, or None: no retry."""
        if run.attempt >= self.max_attempts or run.failure is None or not self.covers(run):
            return None
        return float(min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2 ** (run.attempt - 1)))

    def covers(self, run: Run) -> bool:
        assert run.failure is not None
        category = run.failure.type.category
        if category is FailureCategory.APPLICATION:
            return self.on_exit_codes is None or run.exit_code in self.on_exit_codes
        if category is FailureCategory.TIMEOUT:
            return self.on_timeout
        if category is FailureCategory.INFRASTRUCTURE:
            return self.on_infrastructure
        return False


class ConcurrencyPolicy(StrEnum):
    ALLOW = "allow"  # a tick starts a run even while others of the job are in flight
    FORBID = "forbid"  # a tick is skipped while a run of the job is in flight
    REPLACE = "replace"  # a tick cancels the runs in flight and starts a new one


class CatchUp(StrEnum):
    SKIP = "skip"  # ticks missed while jobd was down (or asleep) do not run
    ONCE = "once"  # one run stands for all the ticks missed


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """A job's cron schedule: a standard 5-field expression read in `timezone`."""

    cron: str
    timezone: str = "UTC"
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    catch_up: CatchUp = CatchUp.SKIP
    suspended: bool = False

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Schedule:
        """From a request: what cron or zoneinfo cannot read is a ValueError naming the
        field. Rows read back from the store were checked when they were written."""
        schedule = cls(
            cron=data["schedule"],
            timezone=data.get("timezone", "UTC"),
            concurrency_policy=ConcurrencyPolicy(data.get("concurrencyPolicy", "forbid")),
            catch_up=CatchUp(data.get("catchUp", "skip")),
            suspended=bool(data.get("suspend", False)),
        )
        schedule._check()
        return schedule

    def _check(self) -> None:
        if len(self.cron.split()) != 5:
            raise ValueError(f"schedule: {self.cron!r} is not a 5-field cron expression")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        try:
            CronSim(self.cron, datetime.now(zone))
        except CronSimError as e:
            raise ValueError(f"schedule: {self.cron!r} is not a valid cron expression: {e}") from e

    def to_api(self) -> dict[str, Any]:
        return {
            "schedule": self.cron,
            "timezone": self.timezone,
            "concurrencyPolicy": self.concurrency_policy.value,
            "catchUp": self.catch_up.value,
            "suspend": self.suspended,
        }

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, in UTC."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`, in UTC (ticks fall on whole minutes)."""
        local = moment.astimezone(ZoneInfo(self.timezone)).replace(second=0, microsecond=0)
        return next(CronSim(self.cron, local + timedelta(minutes=1), reverse=True)).astimezone(UTC)

    def tick_to_fire(self, due_at: datetime, moment: datetime) -> datetime | None:
        """At `moment`, with ticks due since `due_at`: the tick a run stands for, or None when
        every due tick was missed and catch-up skips them. Never more than one run, however
        long jobd was away."""
        latest = max(due_at, self.latest_at_or_before(moment))
        if moment - latest <= MISFIRE_GRACE or self.catch_up is CatchUp.ONCE:
            return latest
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """What the job's schedule did last: the tick's time, the run it started (None when it
    was skipped) and why."""

    at: datetime
    run_id: str | None
    note: str

    def to_api(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "runId": self.run_id, "note": self.note}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Tick:
        return cls(at=datetime.fromisoformat(data["at"]), run_id=data["runId"], note=data["note"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a run is given: a named size from the plan table, or a job's own requirements
    (id "custom"). GPUs are whole and exclusive unless `gpu_share`: then each of them is
    shared with other runs, `min_vram_bytes` of its memory promised to this one."""

    id: str
    memory_bytes: int
    cpus: float
    pids_limit: int = 4096
    price_per_month: float | None = None
    gpus: int = 0
    min_vram_bytes: int = 0  # each of its GPUs has at least this much memory free for it
    gpu_share: bool = False
    storage_bytes: int = 0  # free disk it needs where containers are stored

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memoryBytes": self.memory_bytes,
            "memoryMb": self.memory_bytes // MIB,
            "cpus": self.cpus,
            "pidsLimit": self.pids_limit,
            "pricePerMonth": self.price_per_month,
            "gpus": self.gpus,
            "minVramBytes": self.min_vram_bytes,
            "gpuShare": self.gpu_share,
            "storageBytes": self.storage_bytes,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=data["id"],
            memory_bytes=int(data["memoryBytes"]),
            cpus=float(data["cpus"]),
            pids_limit=int(data["pidsLimit"]),
            price_per_month=data.get("pricePerMonth"),
            gpus=int(data.get("gpus", 0)),
            min_vram_bytes=int(data.get("minVramBytes", 0)),
            gpu_share=bool(data.get("gpuShare", False)),
            storage_bytes=int(data.get("storageBytes", 0)),
        )

    @classmethod
    def from_requirements(cls, wanted: Mapping[str, Any]) -> Plan:
        """A job's explicit requirements (the GPU clouds' convention), schema-validated."""
        return cls(
            id="custom",
            cpus=float(wanted.get("cpuCount", 1)),
            memory_bytes=round(float(wanted.get("minRamGb", 2)) * GB),
            gpus=int(wanted.get("gpuCount", 0)),
            min_vram_bytes=round(float(wanted.get("minVramGb", 0)) * GB),
            gpu_share=bool(wanted.get("gpuShare", False)),
            storage_bytes=round(float(wanted.get("minStorageGb", 0)) * GB),
        )


def _plan(pid: str, memory_mb: int, cpus: float, price: float | None, gpus: int = 0) -> Plan:
    return Plan(id=pid, memory_bytes=memory_mb * MIB, cpus=cpus, price_per_month=price, gpus=gpus)


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
        # GPU plans: one or two whole GPUs, exclusive ($1 per GPU-hour)
        _plan("gpu-1", 32768, 8, 720.0, gpus=1),
        _plan("gpu-2", 65536, 16, 1440.0, gpus=2),
    )
}


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
    retry: RetryPolicy | None = None  # None: a failed run is not retried
    kind: Kind = Kind.BATCH
    ports: tuple[int, ...] = ()  # container ports (TCP) published on the host
    # the image pinned to its digest (repo@sha256:...) when the job took a recipe's snapshot:
    # its runs use exactly that image, whatever the tag points at later
    image_digest: str | None = None
    # explicit requirements instead of a plan (cpuCount, gpuCount, minRamGb, minVramGb,
    # minStorageGb, gpuShare), as the request gave them
    resources: Mapping[str, Any] | None = None
    priority: int = 0  # higher first in the queue; bounded by what its owner may use
    max_pending_seconds: int | None = None  # a run queued longer fails unschedulable

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
            retry=RetryPolicy.from_api(body["retry"]) if body.get("retry") else None,
            kind=Kind(body.get("kind", "batch")),
            ports=tuple(body.get("ports", ())),
            resources=dict(body["resources"]) if body.get("resources") else None,
            priority=int(body.get("priority", 0)),
            max_pending_seconds=body.get("maxPendingSeconds"),
        )

    def updated(self, body: Mapping[str, Any]) -> JobSpec:
        """This spec with the fields an already schema-validated update gives; each replaces
        its value whole (env too; `retry: null` ends retries)."""
        changes = {
            attribute: convert(body[key])
            for key, (attribute, convert) in _SPEC_UPDATES.items()
            if key in body
        }
        if "image" in body:
            changes["image_digest"] = None  # a new image: the pin was the old one's
        if body.get("plan"):
            changes["resources"] = None  # a plan instead of requirements
        if body.get("resources"):
            changes["plan"] = "custom"
        return dataclasses.replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "plan": self.plan,
            "timeoutSeconds": self.timeout_seconds,
            "network": self.network,
            "retry": self.retry.to_api() if self.retry else None,
            "imageDigest": self.image_digest,
            "kind": self.kind.value,
            "ports": list(self.ports),
            "resources": dict(self.resources) if self.resources else None,
            "priority": self.priority,
            "maxPendingSeconds": self.max_pending_seconds,
        }

    @property
    def image_to_run(self) -> str:
        return self.image_digest or self.image

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> JobSpec:
        retry = data.get("retry")  # absent from records written before retries
        return cls(
            image=data["image"],
            command=tuple(data["command"]),
            env=dict(data["env"]),
            plan=data["plan"],
            timeout_seconds=int(data["timeoutSeconds"]),
            network=data["network"],
            retry=RetryPolicy.from_api(retry) if retry else None,
            image_digest=data.get("imageDigest"),
            kind=Kind(data.get("kind", "batch")),
            ports=tuple(data.get("ports", ())),
            resources=data.get("resources"),
            priority=int(data.get("priority", 0)),
            max_pending_seconds=data.get("maxPendingSeconds"),
        )

    @property
    def restarts(self) -> RetryPolicy | None:
        """How a failed run of this spec is run again: its retry policy; for a persistent
        job without one, restarts on a crash (never after a timeout or a stop)."""
        if self.retry is not None or self.kind is Kind.BATCH:
            return self.retry
        return RetryPolicy(
            max_attempts=DEFAULT_RESTARTS + 1, backoff_seconds=DEFAULT_RESTART_BACKOFF
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
    schedule: Schedule | None = None  # None: on demand
    next_fire_at: datetime | None = None  # None: no schedule, or suspended
    last_tick: Tick | None = None
    recipe: str | None = None  # the recipe it took its snapshot of, if any
    requested: Mapping[str, Any] | None = None  # the request that created it, as sent

    @classmethod
    def from_row(cls, row: Row) -> Job:
        owner = orjson.loads(row["owner"])
        retry = orjson.loads(row["retry"]) if row["retry"] else None
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
                retry=RetryPolicy.from_api(retry) if retry else None,
                image_digest=row["image_digest"],
                kind=Kind(row["kind"]),
                ports=tuple(orjson.loads(row["ports"])) if row["ports"] else (),
                resources=orjson.loads(row["resources"]) if row["resources"] else None,
                priority=row["priority"],
                max_pending_seconds=row["max_pending_seconds"],
            ),
            labels=orjson.loads(row["labels"]),
            owner=Owner(uid=owner["uid"], user=owner["user"], via=owner["via"]),
            created_at=from_epoch(row["created_at"]),
            latest_run_id=row["latest_run_id"],
            status=RunStatus(row["status"]) if row["status"] else None,
            schedule=_schedule_from_row(row),
            next_fire_at=maybe_epoch(row["next_fire_at"]),
            last_tick=Tick.from_api(orjson.loads(row["last_tick"])) if row["last_tick"] else None,
            recipe=row["recipe"],
            requested=orjson.loads(row["requested"]) if row["requested"] else None,
        )

    def schedule_doc(self) -> dict[str, Any] | None:
        if self.schedule is None:
            return None
        return {
            **self.schedule.to_api(),
            "nextFireAt": rfc3339(self.next_fire_at),
            "lastTick": self.last_tick.to_api() if self.last_tick else None,
        }

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
            "kind": self.spec.kind.value,
            "ports": list(self.spec.ports),
            "resources": dict(self.spec.resources) if self.spec.resources else None,
            "priority": self.spec.priority,
            "maxPendingSeconds": self.spec.max_pending_seconds,
            "retry": self.spec.retry.to_api() if self.spec.retry else None,
            "imageDigest": self.spec.image_digest,
            "schedule": self.schedule_doc(),
            "recipe": self.recipe,
            "requestedConfig": dict(self.requested) if self.requested is not None else None,
            "finalConfig": self.spec.to_record(),
            "labels": dict(self.labels),
            "owner": self.owner.to_api(),
            "createdAt": rfc3339(self.created_at),
            "status": self.status.value if self.status else None,
            "latestRunId": self.latest_run_id,
        }
        if latest_run is not None:
            doc["latestRun"] = latest_run.to_api()
        return doc


# an update's field -> (JobSpec attribute, how its value becomes the attribute's)
_SPEC_UPDATES: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "image": ("image", str),
    "command": ("command", tuple),
    "startCommand": ("command", lambda text: ("/bin/sh", "-c", text)),
    "env": ("env", dict),
    "plan": ("plan", str),
    "timeoutSeconds": ("timeout_seconds", int),
    "network": ("network", str),
    "kind": ("kind", Kind),
    "ports": ("ports", tuple),
    "retry": ("retry", lambda doc: RetryPolicy.from_api(doc) if doc else None),
    "resources": ("resources", lambda doc: dict(doc) if doc else None),
    "priority": ("priority", int),
    "maxPendingSeconds": ("max_pending_seconds", lambda value: value),
}


def _schedule_from_row(row: Row) -> Schedule | None:
    if not row["schedule"]:
        return None
    return Schedule(
        cron=row["schedule"],
        timezone=row["timezone"],
        concurrency_policy=ConcurrencyPolicy(row["concurrency_policy"]),
        catch_up=CatchUp(row["catch_up"]),
        suspended=bool(row["suspended"]),
    )


# what a recipe may hold: a job's configuration, not its name, labels aside, nor its schedule
RECIPE_FIELDS = (
    "kind",
    "ports",
    "image",
    "command",
    "startCommand",
    "env",
    "plan",
    "timeoutSeconds",
    "network",
    "labels",
    "retry",
    "resources",
    "priority",
    "maxPendingSeconds",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """A named, reusable job configuration. A job made from it takes a snapshot: changing or
    deleting the recipe later changes no job."""

    name: str
    description: str | None
    config: Mapping[str, Any]  # RECIPE_FIELDS, as the API takes them
    owner: Owner
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Recipe:
        owner = orjson.loads(row["owner"])
        return cls(
            name=row["name"],
            description=row["description"],
            config=orjson.loads(row["config"]),
            owner=Owner(uid=owner["uid"], user=owner["user"], via=owner["via"]),
            created_at=from_epoch(row["created_at"]),
            updated_at=from_epoch(row["updated_at"]),
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            **self.config,
            "owner": self.owner.to_api(),
            "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.updated_at),
        }

    def job_request(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """A job's request made of this recipe's configuration and `overrides`: each field
        given replaces the recipe's, except env and labels, merged key by key; a command
        given either way replaces the recipe's either way, and a plan or resources the
        recipe's either."""
        merged = without_replaced_command(self.config, overrides)
        if "plan" in overrides or "resources" in overrides:  # one replaces the other
            merged = {k: v for k, v in merged.items() if k not in ("plan", "resources")}
        for key, value in overrides.items():
            if key in ("env", "labels"):
                merged[key] = {**merged.get(key, {}), **value}
            elif key != "recipe":
                merged[key] = value
        merged.setdefault("name", self.name)
        return merged


def without_replaced_command(
    config: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """`config` without its command when `changes` give one, either way (command or
    startCommand): the two are exclusive, so one replaces the other."""
    if "command" not in changes and "startCommand" not in changes:
        return dict(config)
    return {k: v for k, v in config.items() if k not in ("command", "startCommand")}


@functools.lru_cache(maxsize=512)
def _stored_plan(column: str) -> Plan:
    """A run's plan as stored: runs share a handful of plans, and placement reads many runs
    a pass. Plans are frozen, so one object serves them all."""
    return Plan.from_api(orjson.loads(column))


def _endpoints(column: str | None) -> dict[int, str] | None:
    if not column:
        return None
    return {int(port): address for port, address in orjson.loads(column).items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuGrant:
    """A GPU given to a run: whole, or shared with `vram_bytes` of its memory promised."""

    uuid: str
    index: str
    name: str
    shared: bool = False
    vram_bytes: int = 0
    factor: float = 1.0  # its model's performance factor, for normalizedSeconds

    def to_api(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "name": self.name,
            "shared": self.shared,
            "vramBytes": self.vram_bytes,
            "performanceFactor": self.factor,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> GpuGrant:
        return cls(
            uuid=data["uuid"],
            index=data["index"],
            name=data["name"],
            shared=data["shared"],
            vram_bytes=data["vramBytes"],
            factor=data.get("performanceFactor", 1.0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """Exactly what a run was given beside its plan's sums: its GPUs and, when its CPUs are
    whole, the cores it is pinned to (others float over the cores, under their CPU quota)."""

    gpus: tuple[GpuGrant, ...] = ()
    cores: tuple[int, ...] = ()

    @property
    def cpu_set(self) -> str | None:
        return ",".join(str(c) for c in self.cores) if self.cores else None

    def to_api(self) -> dict[str, Any]:
        return {"gpus": [g.to_api() for g in self.gpus], "cpuSet": self.cpu_set}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Allocation:
        cpu_set = data.get("cpuSet")
        return cls(
            gpus=tuple(GpuGrant.from_api(g) for g in data.get("gpus", ())),
            cores=tuple(int(c) for c in cpu_set.split(",")) if cpu_set else (),
        )


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
            "allocation": self.allocation.to_api() if self.allocation else None,
            "gpuUsage": self.gpu_usage(),
            "finalConfig": self._final_config(),
        }

    def _final_config(self) -> dict[str, Any] | None:
        """What the run executes and exactly what it was given: its resources, and its
        devices (UUIDs) and CPU set once placed."""
        if self.spec is None:
            return None
        return {
            **self.spec.to_record(),
            "granted": self.plan.to_api(),
            "allocation": self.allocation.to_api() if self.allocation else None,
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
    """How a run ends once its container has exited. A cancel the user asked for wins over the
    exit code (the API said `cancelling`); a clean stop succeeds on exit 0 and is cancelled
    otherwise; a deadline stop is a timeout; an OOM kill inside the run explains a non-zero
    exit; otherwise the exit code decides."""
    if run.status is RunStatus.CANCELLING or run.stop_reason is StopReason.CANCEL:
        return RunStatus.CANCELLED, Failure(
            type=FailureType.CANCELLED, message="cancelled by request"
        )
    if run.stop_reason is StopReason.STOP:
        return _stopped(exit_code)
    if run.stop_reason is StopReason.TIMEOUT:
        return RunStatus.FAILED, Failure(
            type=FailureType.TIMEOUT,
            message=f"stopped at its deadline after {run.timeout_seconds}s",
        )
    return _exited(run, exit_code, oom_killed)


def _exited(run: Run, exit_code: int | None, oom_killed: bool) -> tuple[RunStatus, Failure | None]:
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
    )


def _stopped(exit_code: int | None) -> tuple[RunStatus, Failure | None]:
    """A clean stop: a service that exits 0 on SIGTERM succeeded."""
    if exit_code == 0:
        return RunStatus.SUCCEEDED, None
    return RunStatus.CANCELLED, Failure(
        type=FailureType.CANCELLED,
        message=f"stopped by request (exit code {exit_code} on SIGTERM)",
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
