"""Where jobd listens and keeps its data by default.

A copy of `jobd.config.default_socket(system=False)` and `default_data_dir(system=False)`:
jobctl is a plain HTTP client and must not import the daemon to find it."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_SOCKET = Path("/run/jobd/jobd.sock")


def default_socket() -> Path:
    """The user's own daemon's socket when it exists, else the system daemon's: on a shared
    server running `jobd --system`, team members need no JOBD_SOCKET."""
    own = user_socket()
    if own.exists() or not SYSTEM_SOCKET.exists():
        return own
    return SYSTEM_SOCKET


def user_socket() -> Path:
    """$XDG_RUNTIME_DIR/jobd/jobd.sock; without it /run/jobd for root, /tmp/jobd-UID for others."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "jobd" / "jobd.sock"
    if os.getuid() == 0:
        return SYSTEM_SOCKET
    return Path(f"/tmp/jobd-{os.getuid()}") / "jobd.sock"


def default_data_dir() -> Path:
    """$XDG_DATA_HOME/jobd, else ~/.local/share/jobd: the TCP API's `token` file lives there."""
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "jobd"
