"""TCP listeners bound before anything else starts (the API's port, the SSH gateway's): one
binder, so that a port in use stops jobd with one clear line, before it starts podman,
touches a run or makes its socket, whichever port it is."""

from __future__ import annotations

import errno
import socket

from jobd.errors import JobdError


def bind_tcp(
    host: str | None,
    port: int,
    *,
    what: str = "",
    in_use: str = "another jobd? use --port or --no-tcp",
) -> list[socket.socket]:
    """A TCP port (the API's, the SSH gateway's), bound and listening before anything else
    starts, so that a port in use stops jobd with one line before it starts podman, touches
    a run or makes its socket. `what` prefixes the line; `in_use` says what to do then. No
    host: every address (the gateway's `address = ""`)."""
    where = f"{host or ''}:{port}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise JobdError(f"{what}can't serve on {where}: {e.strerror}") from None
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in addresses:
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(128)
    except OSError as e:
        for listener in listeners:
            listener.close()
        if e.errno == errno.EADDRINUSE:
            raise JobdError(f"{what}{where} is in use ({in_use})") from None
        raise JobdError(f"{what}can't serve on {where}: {e.strerror}") from None
    return listeners
