"""What the engine that runs the containers tells of itself (`RuntimeInfo`), and the shape of a
command attached inside a running container (`ExecSession`). The runtime produces both; the
edge shows them without knowing which runtime it is (jobd/runtime/contract.py is the rest of
the contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
    init_path: str | None = None  # the init process it puts in containers; None: missing
    bridge_subnets: tuple[str, ...] = ()  # its default network's ("10.88.0.0/16")

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


class ExecSession(Protocol):
    """A command running inside a run's container, attached: its stdin in, its output out by
    stream (1 stdout, 2 stderr), its terminal's size when it has one, and its exit code."""

    @property
    def exec_id(self) -> str: ...
    @property
    def tty(self) -> bool: ...
    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output and its stream, or None once the process has exited."""
        ...

    async def write(self, data: bytes) -> None: ...
    def close_stdin(self) -> None:
        """The process reads end of file."""
        ...

    async def resize(self, rows: int, columns: int) -> None: ...
    async def exit_code(self) -> int | None: ...
    def close(self) -> None: ...
