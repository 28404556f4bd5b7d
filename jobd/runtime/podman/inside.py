"""Files and TCP connections inside a running container, with nothing in its image: the
daemon's side of helper.py, which runs in a process of its own in the container's namespaces
(podman's exec would need an sftp-server or a netcat in the image; this needs only the
container's first process, State.Pid, which podman reports as the host sees it).

`HelperFiles` is the SFTP helper as an attached command (the ExecSession shape, so the SSH
gateway pipes it like an exec); `connect` returns the socket the helper connected inside
the container's network namespace, which stays there after the helper has gone.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys

from jobd.errors import RuntimeFailure

log = logging.getLogger(__name__)
HELPER = (sys.executable, "-m", "jobd.runtime.podman.helper")
READ_SIZE = 64 * 1024
CONNECT_SECONDS = 15.0


class HelperFiles:
    """An SFTP server over the container's files, on the helper's stdin and stdout."""

    tty = False

    def __init__(self, process: asyncio.subprocess.Process, pid: int) -> None:
        self._process = process
        self.exec_id = f"files-{process.pid}-in-{pid}"

    @classmethod
    async def start(cls, pid: int, client_version: str) -> HelperFiles:
        process = await asyncio.create_subprocess_exec(
            *HELPER,
            "files",
            str(pid),
            client_version,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process, pid)

    async def read(self) -> tuple[int, bytes] | None:
        assert self._process.stdout is not None
        data = await self._process.stdout.read(READ_SIZE)
        return (1, data) if data else None

    async def write(self, data: bytes) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(data)
        await self._process.stdin.drain()

    def close_stdin(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.close()

    async def resize(self, rows: int, columns: int) -> None:
        return None  # no terminal

    async def exit_code(self) -> int | None:
        code = await self._process.wait()
        if code != 0 and self._process.stderr is not None:
            why = (await self._process.stderr.read()).decode(errors="replace").strip()
            log.warning("%s ended %s: %s", self.exec_id, code, why[-2000:])
        return code

    def close(self) -> None:
        if self._process.returncode is None:
            self._process.kill()


async def connect(pid: int, host: str, port: int) -> socket.socket:
    """A TCP connection to host:port made from inside the network namespace of process
    `pid`; RuntimeFailure saying why when there is none."""
    ours, theirs = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            *HELPER,
            "connect",
            str(pid),
            host,
            str(port),
            str(theirs.fileno()),
            pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        theirs.close()
        try:
            reply, fds = await asyncio.wait_for(_reply(ours), CONNECT_SECONDS)
        finally:
            _, errors = await process.communicate()
        if not fds:
            why = reply.decode(errors="replace") or errors.decode(errors="replace").strip()
            raise RuntimeFailure(f"connect to {host}:{port} in the container: {why[-500:]}")
        connection = socket.socket(fileno=fds[0])
        connection.setblocking(False)
        return connection
    except (OSError, TimeoutError) as e:
        raise RuntimeFailure(f"connect to {host}:{port} in the container: {e}") from e
    finally:
        ours.close()
        theirs.close()


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _reply(ours: socket.socket) -> tuple[bytes, list[int]]:
    ours.setblocking(False)
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(ours.fileno(), _settle, ready)
    try:
        await ready
    finally:
        loop.remove_reader(ours.fileno())
    message, fds, _, _ = socket.recv_fds(ours, 1024, 1)
    return message, list(fds)
