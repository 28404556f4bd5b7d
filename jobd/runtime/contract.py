"""The runtime contract: what the scheduler asks of whatever runs its runs' containers (after
nomad-driver-podman's driver), and the types it gets back. Podman implements it today
(jobd/runtime/podman/); docs/architecture.md says what another backend would implement.

- A run's handle is opaque: the scheduler stores it (runs.container_id) and hands it back,
  never reads it. It is podman's container id today; a batch engine's job id later.
- Exits reach the scheduler as a stream (`exits`), fed the backend's own way: podman's event
  stream, or polling an engine. Missing one is not fatal: the scheduler's reconcile lists the
  backend's work (`list_managed`) and inspects what it is unsure of.
- Logs are files: the backend has the run's output written to `ContainerSpec.log_path` in the
  k8s-file format, where jobd's log readers find it.
- The backend keeps what it needs to tell how a run ended (podman: a watch on the container's
  memory cgroup, since podman's own OOM flag is not set on this podman/conmon pair) and says
  it in `ContainerState.oom_killed`; after a restart, `adopt` lets it take that up again. A
  command that never ran (not found, not executable) is `ContainerState.command_failure`.
- Containers run an init process: a program that ignores signals still ends on SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from jobd.domain.engine import ExecSession, RuntimeInfo
from jobd.domain.states import Failure
from jobd.domain.volumes import HostMount

Handle = str  # a run's container in the runtime: opaque to everyone else


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec:
    """Everything the runtime needs to create one run's container."""

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
    log_path: Path  # where the output goes, as k8s-file lines
    stop_grace_seconds: int = 10
    ports: tuple[int, ...] = ()  # TCP, each published on a free port of publish_address
    publish_address: str = "127.0.0.1"
    devices: tuple[str, ...] = ()  # CDI device names: "nvidia.com/gpu=GPU-..."
    cpu_set: str | None = None  # the cores it is pinned to ("2,3"); None: all, under its quota
    mounts: tuple[HostMount, ...] = ()  # host directories and files, bind-mounted
    working_dir: str | None = None  # None: the image's own
    user: str | None = None  # "uid[:gid]" or a name the image knows; None: the image's own
    groups: tuple[int, ...] = ()  # supplementary groups of its process
    capabilities: tuple[str, ...] = ()  # all it keeps: every other one is dropped


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerState:
    """A container as the runtime saw it."""

    container_id: Handle
    run_id: str | None
    status: str  # podman's words: created, initialized, running, stopping, exited, ...
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    oom_killed: bool  # the kernel killed a process of it for exceeding its memory
    pid: int | None  # its main process on this machine, once created (None: none here)
    endpoints: Mapping[int, str] = field(default_factory=dict)  # container port -> host addr:port
    # its command never ran: not found or not executable, in the runtime's own words
    command_failure: Failure | None = None

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
    """A container of this jobd's died."""

    container_id: Handle
    run_id: str
    exit_code: int | None


class ContainerRuntime(Protocol):
    """Create (created, not started: its limits and devices in place) / start, exits as a
    stream, stop (idempotent: stopping a gone container succeeds), remove (idempotent),
    inspect, list this jobd's containers for recovery, exec. Failures raise RuntimeFailure
    and its subclasses (jobd/errors.py), never the backend's own exceptions."""

    async def info(self, *, max_age: float = 0.0) -> RuntimeInfo: ...
    async def image_exists(self, reference: str) -> bool: ...
    async def image_digest(self, reference: str) -> str | None:
        """The local image as repository@sha256:digest; None when there is none to pin."""
        ...

    async def fetch_image(self, reference: str) -> None:
        """Make the image present: pull it, or build jobd's embedded image. ImageNotFound
        when it can't be had."""
        ...

    async def create(self, spec: ContainerSpec) -> Handle: ...
    async def start(self, handle: Handle) -> None: ...
    async def inspect(self, handle: Handle) -> ContainerState: ...
    async def stop(self, handle: Handle, grace_seconds: int) -> None: ...
    async def remove(self, handle: Handle) -> None: ...
    async def list_managed(self) -> list[ContainerState]: ...
    def exits(self, since: float) -> AsyncIterator[ContainerExit]: ...
    def adopt(self, state: ContainerState) -> None:
        """A running container found again after a restart: take up watching it."""
        ...

    async def exec(self, handle: Handle, command: list[str], *, tty: bool) -> ExecSession: ...
