"""One SSH session channel: a shell (with or without a terminal), a command, or the sftp
subsystem, each in the run's container and piped both ways with flow control. The client's
exit status is the command's; what stops a session from opening (the run is not running,
the key was taken off the job) goes to the client's stderr, with status 255 as OpenSSH's own
failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import asyncssh

from jobd.domain.engine import ExecSession
from jobd.domain.runs import Run
from jobd.errors import JobdError
from jobd.services.ssh import Admission, SshAccess

log = logging.getLogger(__name__)
STDERR = 2
# the client's input held for the container before the channel stops reading from it
INPUT_HIGH, INPUT_LOW = 1024 * 1024, 256 * 1024
# a shell: the image's bash when it has one, else the /bin/sh every image here has
LOGIN_SHELL = "if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l"
PASSED_ENV = ("LANG", "LANGUAGE", "LC_")  # the client's variables a session takes (AcceptEnv)


class RunSession(asyncssh.SSHServerSession[bytes]):
    def __init__(self, access: SshAccess, admission: Admission) -> None:
        self._access = access
        self._admission = admission
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._term: str | None = None
        self._size: tuple[int, int] | None = None  # rows, columns
        self._command: str | None = None
        self._sftp = False
        self._input: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queued = 0
        self._reading_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._exec: ExecSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- what the client asks for ---------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self._term = term_type or "xterm"
        self._size = (term_size[1], term_size[0])
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        self._sftp = subsystem == "sftp"
        return self._sftp

    def session_started(self) -> None:
        self._task = asyncio.ensure_future(self._serve())

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = (height, width)
        if self._exec is not None and self._exec.tty and height and width:
            resizing = asyncio.ensure_future(self._exec.resize(height, width))
            resizing.add_done_callback(_quiet)

    # -- data both ways ---------------------------------------------------------------------

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._input.put_nowait(data)
        self._queued += len(data)
        if self._queued > INPUT_HIGH and self._chan is not None and not self._reading_paused:
            self._reading_paused = True
            self._chan.pause_reading()

    def eof_received(self) -> bool:
        self._input.put_nowait(None)
        return True  # half-closed: the output and the exit status still come

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None:
            self._task.cancel()

    # -- the session ----------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self._chan is not None
        chan = self._chan
        run: Run | None = None
        try:
            run = await self._access.run(self._admission)
            self._exec = await self._open(run)
        except JobdError as e:
            self._access.audited(self._admission, self._what(), e.status, run.id if run else None)
            chan.write_stderr(f"jobd: {e}\r\n".encode())
            chan.exit(255)
            return
        self._access.audited(self._admission, self._what(), 200, run.id)
        try:
            if self._exec.tty and self._size and all(self._size):
                await self._exec.resize(*self._size)
            chan.exit(await self._pipe(self._exec))
        except JobdError as e:
            log.info("ssh session in %s ended: %s", self._admission.user, e)
            chan.exit(255)
        finally:
            self._exec.close()

    async def _open(self, run: Run) -> ExecSession:
        assert self._chan is not None
        if self._sftp:
            version = str(self._chan.get_extra_info("connection").get_extra_info("client_version"))
            return await self._access.files(run, version)
        command = ["/bin/sh", "-c", self._command if self._command is not None else LOGIN_SHELL]
        return await self._access.command(run, command, tty=self._term is not None, env=self._env())

    def _what(self) -> str:
        """The session as the audit log names it."""
        return "sftp" if self._sftp else "shell" if self._command is None else "exec"

    def _env(self) -> dict[str, str]:
        assert self._chan is not None
        given = self._chan.get_environment()
        env = {k: v for k, v in given.items() if isinstance(k, str) and k.startswith(PASSED_ENV)}
        if self._term is not None:
            env["TERM"] = self._term
        return {k: str(v) for k, v in env.items()}

    async def _pipe(self, session: ExecSession) -> int:
        feeding = asyncio.ensure_future(self._feed(session))
        try:
            await self._copy_output(session)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
        code = await session.exit_code()
        return code if code is not None else 255

    async def _copy_output(self, session: ExecSession) -> None:
        assert self._chan is not None
        while piece := await session.read():
            stream, data = piece
            if stream == STDERR:
                self._chan.write_stderr(data)
            else:
                self._chan.write(data)
            await self._writable.wait()

    async def _feed(self, session: ExecSession) -> None:
        assert self._chan is not None
        while (data := await self._input.get()) is not None:
            await session.write(data)
            self._queued -= len(data)
            if self._reading_paused and self._queued < INPUT_LOW:
                self._reading_paused = False
                self._chan.resume_reading()
        session.close_stdin()


def _quiet(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("ssh: a terminal resize was dropped: %s", task.exception())
