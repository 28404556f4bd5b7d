"""What the supervisor has under way, by run: each launch and each stop is a named task of its
own, so a slow `podman create` or a 10-second stop grace never stalls the loop; stops that
failed a moment ago; exits seen while their launch was in flight; container removals; and the
exits waiting to be reaped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from jobd.runtime.contract import ContainerExit, Handle

STOP_RETRY_SECONDS = 5.0  # after a failed stop, before trying again


class InFlight:
    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake  # the supervisor's loop: something changed
        self.launching: dict[str, asyncio.Task[None]] = {}
        self.stopping: dict[str, asyncio.Task[None]] = {}
        self.stop_graces: dict[str, int] = {}  # the grace each stop under way waits out
        self.stop_failed: dict[str, float] = {}  # run id -> when its last stop failed
        self.deferred: dict[str, Handle] = {}  # exits seen while their launch was in flight
        self.removing: set[asyncio.Task[None]] = set()
        self.exits: asyncio.Queue[ContainerExit] = asyncio.Queue()

    def busy(self, run_id: str) -> bool:
        """A launch or a stop is in flight, or the last stop failed a moment ago."""
        if run_id in self.launching or run_id in self.stopping:
            return True
        failed_at = self.stop_failed.get(run_id)
        return failed_at is not None and time.monotonic() - failed_at < STOP_RETRY_SECONDS

    def reap_later(self, run_id: str, container_id: Handle) -> None:
        """The container has exited, or may have: the next step reaps it from what the
        runtime says then."""
        self.exits.put_nowait(
            ContainerExit(container_id=container_id, run_id=run_id, exit_code=None)
        )

    def tasks(self) -> list[asyncio.Task[None]]:
        return [*self.launching.values(), *self.stopping.values(), *self.removing]
