"""A command run inside a running container, attached: podman's exec API over its socket.

podman-py cannot attach stdin (its exec_run ignores `socket=`), so the start call is made by
hand: `POST /exec/{id}/start` with `Connection: Upgrade` answers `101 UPGRADED`, and the
connection becomes the process's stdin and output. With a TTY the output is the terminal's
raw bytes; without one it comes in Docker's frames: a stream byte (1 stdout, 2 stderr), three
zero bytes, a big-endian 32-bit length, the data. The stream ends when the process exits.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from jobd.errors import RuntimeFailure

API = "/v4.0.0/libpod"
STDOUT, STDERR = 1, 2
FRAME_HEADER = struct.Struct(">BxxxI")
READ_SIZE = 64 * 1024


Resize = Callable[[int, int], Awaitable[None]]  # (rows, columns)
ExitCode = Callable[[], Awaitable[int | None]]


class ExecStream:
    """One attached exec: write stdin, read (stream, bytes) until the process exits. Its
    terminal size and exit code go through the API's other calls: `resize`, `exit_code`."""

    def __init__(
        self,
        exec_id: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tty: bool,
        resize: Resize,
        exit_code: ExitCode,
    ) -> None:
        self.exec_id = exec_id
        self.tty = tty
        self._reader = reader
        self._writer = writer
        self._resize = resize
        self._exit_code = exit_code

    @classmethod
    async def start(
        cls, socket: Path, exec_id: str, *, tty: bool, resize: Resize, exit_code: ExitCode
    ) -> ExecStream:
        reader, writer = await asyncio.open_unix_connection(str(socket))
        body = orjson.dumps({"Detach": False, "Tty": tty})
        head = (
            f"POST {API}/exec/{exec_id}/start HTTP/1.1\r\nHost: podman\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        status = answer.split(b"\r\n", 1)[0]
        if b" 101 " not in status and b" 200 " not in status:
            writer.close()
            raise RuntimeFailure(f"exec start: podman answered {status.decode(errors='replace')}")
        return cls(exec_id, reader, writer, tty=tty, resize=resize, exit_code=exit_code)

    async def read(self) -> tuple[int, bytes] | None:
        """The next piece of output and its stream, or None once the process has exited."""
        try:
            if self.tty:
                data = await self._reader.read(READ_SIZE)
                return (STDOUT, data) if data else None
            header = await self._reader.readexactly(FRAME_HEADER.size)
            stream, size = FRAME_HEADER.unpack(header)
            return stream, await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def close_stdin(self) -> None:
        """The process reads end of file (the connection is half-closed)."""
        if self._writer.can_write_eof():
            self._writer.write_eof()

    async def resize(self, rows: int, columns: int) -> None:
        await self._resize(rows, columns)

    async def exit_code(self) -> int | None:
        """Once the output has ended: the process's exit code."""
        return await self._exit_code()

    def close(self) -> None:
        self._writer.close()
