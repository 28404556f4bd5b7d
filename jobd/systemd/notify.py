"""systemd's notify protocol (sd_notify(3)), for `Type=notify` units: one datagram of
`KEY=value` lines to the socket named in NOTIFY_SOCKET (a path, or an abstract socket when it
starts with '@'). jobd says READY=1 once its socket and port are served and recovery is done,
STOPPING=1 when it begins to shut down, and STATUS= lines that `systemctl status` shows.
Without NOTIFY_SOCKET (not started by systemd) every call does nothing."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def message(*, ready: bool = False, stopping: bool = False, status: str | None = None) -> bytes:
    """The datagram: READY=1, STOPPING=1 and STATUS= (one line: a newline would end it)."""
    lines = []
    if ready:
        lines.append("READY=1")
    if stopping:
        lines.append("STOPPING=1")
    if status is not None:
        lines.append("STATUS=" + " ".join(status.splitlines()))
    return "\n".join(lines).encode()


def socket_address(value: str) -> str:
    """NOTIFY_SOCKET as connect() takes it: '@name' is the abstract socket '\\0name'."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


class Notifier:
    """The service manager's notify socket, taken from the environment once: NOTIFY_SOCKET is
    removed from it, so the podman service and containers jobd starts never write to it (only
    the main process may: NotifyAccess=main)."""

    def __init__(self, address: str | None) -> None:
        self.address = socket_address(address) if address else None

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.pop("NOTIFY_SOCKET", None))

    def ready(self, status: str) -> None:
        self._send(message(ready=True, status=status))

    def stopping(self, status: str) -> None:
        self._send(message(stopping=True, status=status))

    def status(self, status: str) -> None:
        self._send(message(status=status))

    def _send(self, datagram: bytes) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(datagram, self.address)
        except OSError as e:  # the manager is gone or the socket is wrong: never fatal
            log.warning("could not notify the service manager at %r: %s", self.address, e)
