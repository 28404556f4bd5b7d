"""jobd's own view of containers: what the rest of jobd sees of podman."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

RUN_LABEL = "io.jobd.run-id"
JOB_LABEL = "io.jobd.job-id"
MANAGED_LABEL = "io.jobd.managed"
INSTANCE_LABEL = "io.jobd.instance"  # which jobd (data directory) owns the container


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec:
    """Everything podman needs to create one run's container."""

    name: str
    run_id: str
    job_id: str
    image: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    memory_bytes: int
    cpus: float
    pids_limit: int
    nofile: int
    nproc: int
    network: str
    log_path: Path
    instance: str
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_grace_seconds: int = 10
    ports: tuple[int, ...] = ()  # TCP, each published on a free port of publish_address
    publish_address: str = "127.0.0.1"
    devices: tuple[str, ...] = ()  # CDI device names: "nvidia.com/gpu=GPU-..."
    cpu_set: str | None = None  # the cores it is pinned to ("2,3"); None: all, under its quota

    @property
    def all_labels(self) -> dict[str, str]:
        return {
            **self.labels,
            MANAGED_LABEL: "true",
            INSTANCE_LABEL: self.instance,
            RUN_LABEL: self.run_id,
            JOB_LABEL: self.job_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerState:
    """A container as inspect saw it."""

    container_id: str
    run_id: str | None
    status: str  # podman's: created, initialized, running, stopping, exited, ...
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    oom_killed: bool
    pid: int | None
    endpoints: Mapping[int, str] = field(default_factory=dict)  # container port -> host addr:port

    @property
    def running(self) -> bool:
        return self.status in {"running", "stopping", "paused"}

    @property
    def exited(self) -> bool:
        return self.status in {"exited", "stopped", "dead"} or (
            self.finished_at is not None and not self.running
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerExit:
    """A container of jobd's died (from podman's event stream)."""

    container_id: str
    run_id: str
    exit_code: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeInfo:
    """What podman reports about itself, and what follows for resource limits."""

    version: str
    api_version: str
    rootless: bool
    cgroup_version: str
    cgroup_manager: str
    cgroup_controllers: tuple[str, ...]
    oci_runtime: str
    graph_root: str = ""  # where container storage lives (its disk is what runs fill)

    @property
    def missing_controllers(self) -> tuple[str, ...]:
        return tuple(c for c in ("memory", "cpu", "pids") if c not in self.cgroup_controllers)

    @property
    def limits_enforced(self) -> bool:
        return not self.missing_controllers

    @property
    def limits_note(self) -> str | None:
        if self.limits_enforced:
            return None
        missing = ", ".join(self.missing_controllers)
        if self.rootless and self.cgroup_version == "v1":
            why = "rootless podman on cgroup v1 cannot set cgroup limits"
        elif self.rootless:
            why = "the cgroup controllers are not delegated to this user (systemd user@.service)"
        else:
            why = "the cgroup controllers are not available"
        return f"limits not enforced ({missing}): {why}"


class ContainerRuntime(Protocol):
    """The runtime contract the supervisor relies on (after nomad-driver-podman's driver):
    create (+init) / start, exits as a stream, stop (idempotent), remove (idempotent),
    inspect, list this jobd's containers for recovery."""

    instance: str

    async def info(self, *, max_age: float = 0.0) -> RuntimeInfo: ...
    async def image_exists(self, reference: str) -> bool: ...
    async def image_digest(self, reference: str) -> str | None: ...
    async def pull(self, reference: str) -> None: ...
    async def build_image(self, context: Path, tag: str) -> None: ...
    async def create(self, spec: ContainerSpec) -> str: ...
    async def start(self, container_id: str) -> None: ...
    async def inspect(self, container_id: str) -> ContainerState: ...
    async def stop(self, container_id: str, grace_seconds: int) -> None: ...
    async def remove(self, container_id: str) -> None: ...
    async def list_managed(self) -> list[ContainerState]: ...
    def exits(self, since: float) -> AsyncIterator[ContainerExit]: ...
