"""Commands in a run's running container (`jobctl exec`). Like the health check's runtime
info, this asks the runtime directly, through a callable the daemon hands in: it changes no
run, so it does not go through the supervisor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from jobd.domain.engine import ExecSession
from jobd.domain.runs import Run
from jobd.domain.states import RunStatus
from jobd.errors import Conflict

# (the run's container, the command, with a TTY) -> the attached session
StartExec = Callable[[str, list[str], bool], Awaitable[ExecSession]]


class ExecSessions:
    def __init__(self, start: StartExec) -> None:
        self._start = start

    @staticmethod
    def target(run: Run) -> str:
        """The run's container, when it is running; otherwise Conflict."""
        if run.status is not RunStatus.RUNNING or run.container_id is None:
            raise Conflict(f"run {run.id} is {run.status.value}; exec needs a running run")
        return run.container_id

    async def open(self, target: str, command: list[str], *, tty: bool) -> ExecSession:
        return await self._start(target, command, tty)
