"""A runtime in memory, for the scheduler's unit tests: it implements the runtime contract
(mypy checks it against `ContainerRuntime`, as it checks the podman runtime), so the races the
tests drive are the ones the supervisor meets. Real podman is exercised by the integration and
acceptance tests."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

from jobd.domain.engine import ExecSession, RuntimeInfo
from jobd.domain.records import now
from jobd.errors import ContainerGone, ImageNotFound, RuntimeFailure
from jobd.runtime.contract import (
    ContainerExit,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    Handle,
)

INFO = RuntimeInfo(
    version="4.3.1",
    api_version="1.41",
    rootless=False,
    cgroup_version="v1",
    cgroup_manager="cgroupfs",
    cgroup_controllers=("memory", "cpu", "pids"),
    oci_runtime="runc",
)


class FakeRuntime:
    """Containers in memory. `gate` holds create() until released; exits are pushed
    to the stream as podman's died events would be."""

    def __init__(self) -> None:
        self.containers: dict[str, ContainerState] = {}
        self.specs: dict[str, ContainerSpec] = {}  # by run id, as created
        self.gate = asyncio.Event()
        self.gate.set()
        self.create_error: Exception | None = None
        self.exit_on_start: int | None = None
        self.list_delay = 0.0
        self.stopped: list[str] = []
        self.graces: list[int] = []  # each stop's grace, in order
        self.stop_gate = asyncio.Event()  # held: a stop waits out its grace until released
        self.stop_gate.set()
        self.removed: list[str] = []
        self.adopted: list[str] = []
        self.image_checks = 0
        self.inspect_failures = 0
        self._exits: asyncio.Queue[ContainerExit] = asyncio.Queue()

    async def info(self, *, max_age: float = 0.0) -> RuntimeInfo:
        return INFO

    async def image_exists(self, reference: str) -> bool:
        self.image_checks += 1
        return reference != "missing"

    async def image_digest(self, reference: str) -> str | None:
        return None if reference == "missing" else f"{reference}@sha256:{'0' * 64}"

    async def fetch_image(self, reference: str) -> None:
        raise ImageNotFound(f"{reference} can't be pulled")

    async def create(self, spec: ContainerSpec) -> Handle:
        await self.gate.wait()
        self.specs[spec.run_id] = spec
        if self.create_error is not None:
            raise self.create_error
        container_id = secrets.token_hex(8)
        self.containers[container_id] = ContainerState(
            container_id=container_id,
            run_id=spec.run_id,
            status="initialized",
            exit_code=None,
            started_at=None,
            finished_at=None,
            oom_killed=False,
            pid=None,
        )
        return container_id

    async def start(self, handle: Handle) -> None:
        state = self.containers[handle]
        self.containers[handle] = replace(state, status="running", started_at=now())
        if self.exit_on_start is not None:
            self.exit(handle, self.exit_on_start)

    def exit(self, container_id: str, code: int) -> None:
        state = self.containers[container_id]
        self.containers[container_id] = replace(
            state, status="exited", exit_code=code, finished_at=now()
        )
        assert state.run_id is not None
        self._exits.put_nowait(
            ContainerExit(container_id=container_id, run_id=state.run_id, exit_code=code)
        )

    async def inspect(self, handle: Handle) -> ContainerState:
        if self.inspect_failures:
            self.inspect_failures -= 1
            raise RuntimeFailure("inspect: read /proc/3181/cgroup: no such process")
        if handle not in self.containers:
            raise ContainerGone(handle)
        return self.containers[handle]

    async def stop(self, handle: Handle, grace_seconds: int) -> None:
        self.stopped.append(handle)
        self.graces.append(grace_seconds)
        if grace_seconds:
            await self.stop_gate.wait()
        if handle in self.containers and self.containers[handle].running:
            self.exit(handle, 143)

    async def remove(self, handle: Handle) -> None:
        self.removed.append(handle)
        self.containers.pop(handle, None)

    async def list_managed(self) -> list[ContainerState]:
        listed = list(self.containers.values())
        await asyncio.sleep(self.list_delay)  # the answer ages while launches go on
        return listed

    async def exits(self, since: float) -> AsyncIterator[ContainerExit]:
        while True:
            yield await self._exits.get()

    def adopt(self, state: ContainerState) -> None:
        self.adopted.append(state.container_id)

    async def exec(self, handle: Handle, command: list[str], *, tty: bool) -> ExecSession:
        raise RuntimeFailure("the fake runtime runs no commands")


def _conforms(fake: FakeRuntime) -> ContainerRuntime:
    return fake  # mypy: the fake implements the whole contract
