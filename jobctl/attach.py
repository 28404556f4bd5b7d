"""`jobctl exec`: a command in a running run's container, attached through jobd's WebSocket
(GET /v1/runs/{id}/exec). aiohttp, which jobd itself is built on, is the WebSocket client;
it is imported only here, so other commands do not pay for it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import sys
import termios
import tty
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from jobctl.client import Endpoint, JobctlError, segment

STDIN_CHUNK = 64 * 1024


def exec_in_run(endpoint: Endpoint, run_id: str, command: Sequence[str], *, use_tty: bool) -> int:
    """Run `command` in the run, wired to this process's stdin, stdout and stderr; the
    command's exit code (1 when jobd could not tell it)."""
    with _raw_terminal(use_tty):
        return asyncio.run(_session(endpoint, run_id, command, use_tty))


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """Keys go to the container as typed (Ctrl-C included) while attached with a TTY."""
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    tty.setraw(sys.stdin.fileno())
    try:
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


async def _session(endpoint: Endpoint, run_id: str, command: Sequence[str], use_tty: bool) -> int:
    import aiohttp
    from yarl import URL

    query = [("cmd", part) for part in command] + [("tty", "true" if use_tty else "false")]
    target = f"{_prefix(endpoint)}/v1/runs/{segment(run_id)}/exec?{urlencode(query)}"
    url = URL(f"{_origin(endpoint)}{target}", encoded=True)  # sent exactly as signed
    connector = aiohttp.UnixConnector(path=str(endpoint.socket)) if endpoint.socket else None
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            socket = await session.ws_connect(
                url, headers=endpoint.auth_headers("GET", target), max_msg_size=0
            )
        except aiohttp.WSServerHandshakeError as e:
            raise JobctlError(await _refusal(session, endpoint, url, target, e)) from None
        except aiohttp.ClientConnectionError as e:
            raise JobctlError(f"cannot reach jobd at {endpoint.describe()}: {e}") from None
        async with socket:
            feeding = asyncio.create_task(_feed(socket, use_tty))
            try:
                return await _receive(socket)
            finally:
                feeding.cancel()


def _origin(endpoint: Endpoint) -> str:
    if endpoint.url is None:
        return "http://jobd"
    parts = urlsplit(endpoint.url)
    return f"{parts.scheme}://{parts.netloc}"


def _prefix(endpoint: Endpoint) -> str:
    return urlsplit(endpoint.url).path.rstrip("/") if endpoint.url else ""


async def _refusal(session: Any, endpoint: Endpoint, url: Any, target: str, error: Any) -> str:
    """jobd's own error message for a refused exec (it answers JSON before any upgrade)."""
    async with session.get(url, headers=endpoint.auth_headers("GET", target)) as response:
        try:
            return str((await response.json())["error"]["message"])
        except (ValueError, KeyError, TypeError):
            return f"exec refused: {error.status} {error.message}"


async def _receive(socket: Any) -> int:
    import aiohttp

    outputs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    async for message in socket:
        if message.type is aiohttp.WSMsgType.BINARY:
            out = outputs.get(message.data[0], sys.stdout.buffer)
            out.write(message.data[1:])
            out.flush()
        elif message.type is aiohttp.WSMsgType.TEXT:
            code = message.json().get("exit")
            return code if isinstance(code, int) else 1
    return 1


async def _feed(socket: Any, use_tty: bool) -> None:
    """This process's stdin to the command; end of file closes the command's stdin."""
    loop = asyncio.get_running_loop()
    if use_tty:
        await _send_size(socket)
        loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(_send_size(socket)))
    if sys.stdin is None:  # no stdin at all (<&-): nothing to send
        await socket.send_json({"eof": True})
        return
    fd = sys.stdin.fileno()
    if _pollable(fd):  # a terminal, a pipe, a socket: read as it comes, on the loop
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while data := await reader.read(STDIN_CHUNK):
            await socket.send_bytes(data)
    else:  # a file, /dev/null (cron, systemd): reads never block, and epoll refuses them
        while data := await asyncio.to_thread(_read, fd):
            await socket.send_bytes(data)
    await socket.send_json({"eof": True})


def _pollable(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:  # closed under Python's feet: read as a file, which ends at once
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, STDIN_CHUNK)
    except OSError:  # closed: end of file
        return b""


async def _send_size(socket: Any) -> None:
    size = shutil.get_terminal_size()
    await socket.send_json({"resize": [size.lines, size.columns]})


def wants_tty() -> bool:
    """A TTY when both ends are terminals, as `docker exec -it` is used."""
    if sys.stdin is None or sys.stdout is None:  # closed (<&-, >&-)
        return False
    return os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
