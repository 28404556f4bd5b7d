"""The gateway's listener: its port bound at startup beside the HTTP one, by jobd's
binder (jobd/listening.py: a port in use stops jobd with one line), then served
with asyncssh once the services are up; its host key made once, in the data directory,
readable by the daemon's user only. Shutting down closes the connections; the runs go on."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import asyncssh

from jobd.config.tables import SshSettings
from jobd.listening import bind_tcp
from jobd.services.ssh import SshAccess
from jobd.ssh.server import GatewayServer

log = logging.getLogger(__name__)
HOST_KEY = "ssh_host_ed25519_key"


class Gateway:
    def __init__(self, settings: SshSettings, data_dir: Path) -> None:
        self.settings = settings
        self.host_key_path = data_dir / HOST_KEY
        self.listeners: list[socket.socket] = []  # bound at startup (if on)
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()

    def bind(self) -> None:
        """The port, bound and listening now: JobdError saying so when it is in use. Nothing
        when the gateway is off."""
        if self.settings.on:
            address, port = self.settings.address or None, self.settings.port
            in_use = "set [ssh] port, or enabled = false"
            self.listeners = bind_tcp(address, port, what="ssh: ", in_use=in_use)

    async def start(self, access: SshAccess) -> None:
        if not self.listeners:
            return  # off
        key = self._host_key()
        for listener in self.listeners:
            acceptor = await asyncssh.listen(
                sock=listener,
                server_factory=lambda: GatewayServer(access, self._connections),
                server_host_keys=[key],
                encoding=None,
                line_editor=False,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
                login_timeout=60,
            )
            self._acceptors.append(acceptor)
        log.info("ssh gateway on %s:%s", self.settings.address, self.settings.port)

    def _host_key(self) -> asyncssh.SSHKey:
        """The gateway's key: made on first start, 0600; made private again if it is not."""
        path = self.host_key_path
        if path.exists():
            if path.stat().st_mode & 0o077:
                log.warning("%s was readable by others; made it 0600", path)
                path.chmod(0o600)
            return asyncssh.read_private_key(path)
        key = asyncssh.generate_private_key("ssh-ed25519", comment="jobd")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        return key

    async def close(self) -> None:
        for acceptor in self._acceptors:
            acceptor.close()
            await acceptor.wait_closed()
        self._acceptors.clear()
        self.close_listeners()
        for conn in list(self._connections):  # their sessions end; the runs go on
            conn.close()
            await conn.wait_closed()

    def close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
