"""Jobs: what a user asked for (`JobSpec`: image, command, plan, retries, ...), its kind, and
the job record itself. A *run* is one execution of a job (jobd/domain/runs.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson

from jobd.domain.owners import EVERYONE, Owner, Reach
from jobd.domain.records import Row, from_epoch, maybe_epoch, rfc3339
from jobd.domain.resources import DEFAULT_PLAN
from jobd.domain.schedules import Schedule, Tick, schedule_from_row
from jobd.domain.ssh import cidr_list, parse_allowed
from jobd.domain.states import FailureCategory, RunStatus
from jobd.domain.uploads import InputFile, inputs_from_api
from jobd.domain.volumes import VolumeMount, mounts_from_api
from jobd.domain.workflows import ArraySpec, array_status

if TYPE_CHECKING:
    from jobd.domain.runs import Run

DEFAULT_TIMEOUT_SECONDS = 30 * 24 * 3600
MAX_BACKOFF_SECONDS = 3600


class Kind(StrEnum):
    BATCH = "batch"  # runs to completion (or its deadline)
    PERSISTENT = "persistent"  # a service: runs until stopped, restarted when it crashes


# a persistent job without a retry policy of its own is restarted on a crash this way
DEFAULT_RESTARTS = 10
DEFAULT_RESTART_BACKOFF = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When a failed run gets another attempt: up to `max_attempts` runs in all, each after
    twice the previous wait (`backoff_seconds` first, at most an hour). Application failures
    are retried (only those exit codes, when `on_exit_codes` is given); infrastructure
    failures unless `on_infrastructure` is off; timeouts only when `on_timeout` is on;
    cancelled runs, and commands that could not run (missing, not executable), never."""

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
        if not run.failure.type.retryable:
            return False
        category = run.failure.type.category
        if category is FailureCategory.APPLICATION:
            return self.on_exit_codes is None or run.exit_code in self.on_exit_codes
        if category is FailureCategory.TIMEOUT:
            return self.on_timeout
        if category is FailureCategory.INFRASTRUCTURE:
            return self.on_infrastructure
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What a run executes: everything a container needs, fixed when the job is created."""

    image: str
    command: tuple[str, ...] = ()  # empty: the image's own entrypoint/cmd
    env: Mapping[str, str] = field(default_factory=dict)
    # environment variables whose values are never shown (API, CLI, finalConfig, jobd's
    # logs): only their names; the container gets them like env
    secret_env: Mapping[str, str] = field(default_factory=dict)
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
    volumes: tuple[VolumeMount, ...] = ()  # named volumes and host paths it mounts
    working_dir: str | None = None  # None: the image's own
    user: str | None = None  # "uid[:gid]" or a name the image knows; None: the image's own
    # the most its /outputs may hold; None only for records written before limits (no limit)
    output_limit_bytes: int | None = None
    # uploads mounted read-only at /inputs/<name>; the request names them by slug and the
    # service resolves them (JobSpec.from_request leaves them out)
    inputs: tuple[InputFile, ...] = ()
    array: ArraySpec | None = None  # one run per index, each time the job runs
    # OpenSSH public keys that may open a shell in its runs through jobd's SSH gateway
    ssh_keys: tuple[str, ...] = ()
    # CIDRs its gateway sessions and published ports may be reached from; None: loopback
    # for the gateway, the daemon's publish_address for the ports
    allowed_ips: tuple[str, ...] | None = None

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
            secret_env=dict(body.get("secretEnv", {})),
            plan=body.get("plan", DEFAULT_PLAN),
            timeout_seconds=int(body.get("timeoutSeconds", default_timeout)),
            network=body.get("network", "default"),
            retry=RetryPolicy.from_api(body["retry"]) if body.get("retry") else None,
            kind=Kind(body.get("kind", "batch")),
            ports=tuple(body.get("ports", ())),
            resources=dict(body["resources"]) if body.get("resources") else None,
            priority=int(body.get("priority", 0)),
            max_pending_seconds=body.get("maxPendingSeconds"),
            volumes=mounts_from_api(body.get("volumes")),
            working_dir=body.get("workingDir"),
            user=body.get("user"),
            output_limit_bytes=body.get("outputLimitBytes"),
            array=ArraySpec.from_api(body["array"]) if body.get("array") else None,
            ssh_keys=tuple(body.get("sshKeys") or ()),
            allowed_ips=parse_allowed(body.get("allowedIps")),
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
        """The spec as stored, secret values included: never shown as it is (public_record)."""
        return {**self.public_record(), "secretEnv": dict(self.secret_env)}

    def public_record(self) -> dict[str, Any]:
        """The spec as shown (finalConfig): secret env by name only."""
        return {
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "secretEnvNames": sorted(self.secret_env),
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
            "volumes": [v.to_api() for v in self.volumes],
            "workingDir": self.working_dir,
            "user": self.user,
            "outputLimitBytes": self.output_limit_bytes,
            "inputs": [i.to_api() for i in self.inputs],
            "array": self.array.to_api() if self.array else None,
            "sshKeys": list(self.ssh_keys),
            "allowedIps": cidr_list(self.allowed_ips),
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
            secret_env=dict(data.get("secretEnv") or {}),
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
            volumes=mounts_from_api(data.get("volumes")),
            working_dir=data.get("workingDir"),
            user=data.get("user"),
            output_limit_bytes=data.get("outputLimitBytes"),
            inputs=inputs_from_api(data.get("inputs")),
            array=ArraySpec.from_api(data["array"]) if data.get("array") else None,
            ssh_keys=tuple(data.get("sshKeys") or ()),
            allowed_ips=parse_allowed(data.get("allowedIps")),
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
    project: str | None = None  # its members see and act on it too (config [projects])

    @classmethod
    def from_row(cls, row: Row) -> Job:
        retry = orjson.loads(row["retry"]) if row["retry"] else None
        return cls(
            id=row["id"],
            name=row["name"],
            spec=JobSpec(
                image=row["image"],
                command=tuple(orjson.loads(row["command"])),
                env=orjson.loads(row["env"]),
                secret_env=orjson.loads(row["secret_env"]) if row["secret_env"] else {},
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
                volumes=mounts_from_api(orjson.loads(row["volumes"]) if row["volumes"] else ()),
                working_dir=row["working_dir"],
                user=row["run_as"],
                output_limit_bytes=row["output_limit_bytes"],
                inputs=inputs_from_api(orjson.loads(row["inputs"]) if row["inputs"] else ()),
                array=ArraySpec.from_api(orjson.loads(row["array"])) if row["array"] else None,
                ssh_keys=tuple(orjson.loads(row["ssh_keys"])) if row["ssh_keys"] else (),
                allowed_ips=parse_allowed(orjson.loads(row["allowed_ips"] or "null")),
            ),
            labels=orjson.loads(row["labels"]),
            owner=Owner.from_api(orjson.loads(row["owner"])),
            created_at=from_epoch(row["created_at"]),
            latest_run_id=row["latest_run_id"],
            status=RunStatus(row["status"]) if row["status"] else None,
            schedule=schedule_from_row(row),
            next_fire_at=maybe_epoch(row["next_fire_at"]),
            last_tick=Tick.from_api(orjson.loads(row["last_tick"])) if row["last_tick"] else None,
            recipe=row["recipe"],
            requested=orjson.loads(row["requested"]) if row["requested"] else None,
            project=row["project"],
        )

    def schedule_doc(self) -> dict[str, Any] | None:
        if self.schedule is None:
            return None
        return {
            **self.schedule.to_api(),
            "nextFireAt": rfc3339(self.next_fire_at),
            "lastTick": self.last_tick.to_api() if self.last_tick else None,
        }

    def to_api(
        self, latest_run: Run | None = None, array_runs: Mapping[str, int] | None = None
    ) -> dict[str, Any]:
        """The job as the API shows it, with its latest run, and for an array job how many
        runs of its latest array are in each status."""
        doc: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "image": self.spec.image,
            "command": list(self.spec.command),
            "env": dict(self.spec.env),
            "secretEnvNames": sorted(self.spec.secret_env),
            "plan": self.spec.plan,
            "timeoutSeconds": self.spec.timeout_seconds,
            "network": self.spec.network,
            "kind": self.spec.kind.value,
            "ports": list(self.spec.ports),
            "resources": dict(self.spec.resources) if self.spec.resources else None,
            "priority": self.spec.priority,
            "maxPendingSeconds": self.spec.max_pending_seconds,
            "volumes": [v.to_api() for v in self.spec.volumes],
            "workingDir": self.spec.working_dir,
            "user": self.spec.user,
            "outputLimitBytes": self.spec.output_limit_bytes,
            "inputs": [i.to_api() for i in self.spec.inputs],
            "array": self.spec.array.to_api() if self.spec.array else None,
            "arrayRuns": dict(array_runs) if array_runs is not None else None,
            "sshKeys": list(self.spec.ssh_keys),
            "allowedIps": cidr_list(self.spec.allowed_ips),
            "retry": self.spec.retry.to_api() if self.spec.retry else None,
            "imageDigest": self.spec.image_digest,
            "schedule": self.schedule_doc(),
            "recipe": self.recipe,
            "requestedConfig": dict(self.requested) if self.requested is not None else None,
            "finalConfig": self.spec.public_record(),
            "labels": dict(self.labels),
            "owner": self.owner.to_api(),
            "project": self.project,
            "createdAt": rfc3339(self.created_at),
            "status": self._shown_status(array_runs),
            "latestRunId": self.latest_run_id,
            # its latest run's, at the top as Render's job object has them
            "startedAt": rfc3339(latest_run.started_at) if latest_run else None,
            "finishedAt": rfc3339(latest_run.finished_at) if latest_run else None,
        }
        if latest_run is not None:
            doc["latestRun"] = latest_run.to_api()
        return doc

    def _shown_status(self, array_runs: Mapping[str, int] | None) -> str | None:
        """An array job's status comes from its runs' counts, read in one statement, so the
        two never disagree in one answer (the row's column may be a commit older)."""
        if array_runs:
            return array_status(array_runs).value
        return self.status.value if self.status else None


# an update's field -> (JobSpec attribute, how its value becomes the attribute's)
_SPEC_UPDATES: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "image": ("image", str),
    "command": ("command", tuple),
    "startCommand": ("command", lambda text: ("/bin/sh", "-c", text)),
    "env": ("env", dict),
    "secretEnv": ("secret_env", dict),
    "plan": ("plan", str),
    "timeoutSeconds": ("timeout_seconds", int),
    "network": ("network", str),
    "kind": ("kind", Kind),
    "ports": ("ports", tuple),
    "retry": ("retry", lambda doc: RetryPolicy.from_api(doc) if doc else None),
    "resources": ("resources", lambda doc: dict(doc) if doc else None),
    "priority": ("priority", int),
    "maxPendingSeconds": ("max_pending_seconds", lambda value: value),
    "volumes": ("volumes", mounts_from_api),
    "workingDir": ("working_dir", lambda value: value),
    "user": ("user", lambda value: value),
    "outputLimitBytes": ("output_limit_bytes", int),
    "sshKeys": ("ssh_keys", lambda keys: tuple(keys or ())),
    "allowedIps": ("allowed_ips", parse_allowed),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    """Which jobs a listing wants: all of these must hold."""

    status: RunStatus | None = None
    scheduled: bool = False  # only jobs with a schedule
    labels: Mapping[str, str] = field(default_factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    reach: Reach = EVERYONE  # whose jobs
    project: str | None = None  # only this project's
    name: str | None = None  # only jobs of this name
    search: str | None = None  # only jobs whose id, name or image contains this
    owner_uid: int | None = None  # only this user's (within reach)
