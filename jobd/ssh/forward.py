"""`ssh -L` (and -D, which VS Code's Remote-SSH uses): a direct-tcpip channel joined to a
TCP connection the runtime made inside the run's container, so `localhost` is the
container's own loopback and its network is the container's. Both directions keep to the
slower side: the channel stops reading while the socket's buffer is full, and the socket
while the channel's is."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

import asyncssh

from jobd.domain.runs import Run
from jobd.errors import JobdError
from jobd.services.ssh import Admission, SshAccess

log = logging.getLogger(__name__)


async def open_forward(
    access: SshAccess, admission: Admission, host: str, port: int
) -> ForwardSession:
    """The session for a new direct-tcpip channel, connected first: a connection that fails
    is the client's "open failed" with the reason."""
    what = f"forward {host[:255]}:{port}"
    run: Run | None = None
    try:
        run = await access.run(admission)
        connection = await access.connect(run, host, port)
    except JobdError as e:
        access.audited(admission, what, e.status, run.id if run else None)
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
    access.audited(admission, what, 200, run.id)
    session = ForwardSession()
    await session.attach(connection)
    return session


class ForwardSession(asyncssh.SSHTCPSession[bytes]):
    def __init__(self) -> None:
        self._chan: asyncssh.SSHTCPChannel[bytes] | None = None
        self._transport: asyncio.Transport | None = None
        # what the container sent before the channel was open: kept, then sent in order
        self._early: list[bytes | None] = []  # None: its end of file
        self._closed_early = False
        self._eof_sent = False

    async def attach(self, connection: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Container(self), sock=connection)

    def container_connected(self, transport: asyncio.Transport) -> None:
        transport.pause_reading()  # until the channel is open
        self._transport = transport

    def connection_made(self, chan: asyncssh.SSHTCPChannel[bytes]) -> None:
        self._chan = chan

    def session_started(self) -> None:
        for early in self._early:
            if early is None:
                self.container_eof()
            else:
                self.from_container(early)
        self._early.clear()
        if self._closed_early:
            self.container_closed()
        elif self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def eof_received(self) -> bool:
        if self._transport is not None and self._transport.can_write_eof():
            self._transport.write_eof()
        return True

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._transport.close()

    # what the container's side calls

    def from_container(self, data: bytes) -> None:
        if self._chan is None:
            self._early.append(data)
        else:
            self._chan.write(data)

    def container_eof(self) -> None:
        if self._chan is None:
            self._early.append(None)
        elif not self._eof_sent:  # uvloop may tell an end of file again once reading resumes
            self._eof_sent = True
            self._chan.write_eof()

    def container_closed(self) -> None:
        if self._chan is None:
            self._closed_early = True
        else:
            self._chan.close()

    def pause_channel(self, paused: bool) -> None:
        if self._chan is not None:
            (self._chan.pause_reading if paused else self._chan.resume_reading)()


class _Container(asyncio.Protocol):
    """The connection inside the container."""

    def __init__(self, session: ForwardSession) -> None:
        self._session = session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a TCP connection's transport (uvloop's is not asyncio.Transport's subclass)
        self._session.container_connected(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        self._session.from_container(data)

    def eof_received(self) -> bool:
        self._session.container_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._session.container_closed()

    def pause_writing(self) -> None:
        self._session.pause_channel(True)

    def resume_writing(self) -> None:
        self._session.pause_channel(False)
