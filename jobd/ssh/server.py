"""One client connection: public-key authentication only, decided by the service, and then
sessions (a shell, a command, sftp) and direct-tcpip channels (`ssh -L`, `-D`) into the run
it was let into. No remote forwarding, agent forwarding or X11.

Every refusal is the same: the service answers None for an unknown user, a key the job does
not have, someone else's job and an address the job does not allow alike, and each answer
takes at least REFUSAL_FLOOR seconds, so neither the reply nor its timing tells them apart.
The peer's address is checked there, before authentication completes."""

from __future__ import annotations

import asyncio
import logging

import asyncssh

from jobd.services.ssh import Admission, SshAccess
from jobd.ssh.forward import ForwardSession, open_forward
from jobd.ssh.session import RunSession

log = logging.getLogger(__name__)
REFUSAL_FLOOR = 0.05  # seconds every key check takes, whatever its answer


class GatewayServer(asyncssh.SSHServer):
    def __init__(self, access: SshAccess, open_now: set[asyncssh.SSHServerConnection]) -> None:
        self._access = access
        self._open_now = open_now  # the gateway's, to close them all as it stops
        self._conn: asyncssh.SSHServerConnection | None = None
        self._peer = ""
        self._admission: Admission | None = None
        self._named: str | None = None  # the user a key was offered for, until one lets it in

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._open_now.add(conn)
        peer = conn.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._open_now.discard(self._conn)
        if self._admission is None and self._named is not None:
            self._access.refused(self._named, self._peer)

    def begin_auth(self, username: str) -> bool:
        return True  # always asked for a key: nobody gets in on "none"

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            admission = await self._access.admit(username, bytes(key.public_data), self._peer)
        except Exception:  # a failing check is a refusal, the same as any other
            log.exception("ssh: checking a key for %r failed", username)
            admission = None
        await asyncio.sleep(max(0.0, REFUSAL_FLOOR - (loop.time() - started)))
        if admission is not None:
            self._admission = admission
        else:
            self._named = username
        return admission is not None

    def auth_completed(self) -> None:
        if self._admission is not None:
            log.info(
                "ssh: %s let into %s (job %s)",
                self._peer,
                self._admission.user,
                self._admission.job_id,
            )

    def session_requested(self) -> RunSession:
        assert self._admission is not None  # asyncssh opens no channel before authentication
        return RunSession(self._access, self._admission)

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> asyncio.Future[ForwardSession]:
        assert self._admission is not None
        return asyncio.ensure_future(
            open_forward(self._access, self._admission, dest_host, dest_port)
        )
