"""jobd's start and stop as a service manager sees them, through real jobd processes: a TCP
port in use stops it with one line before it touches anything; READY=1 reaches
NOTIFY_SOCKET only once it serves, STOPPING=1 when it stops, and NOTIFY_SOCKET is not
passed on to podman; `--log-format json` writes one JSON object per line."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory
from tests.support import VENV_BIN, Daemon

pytestmark = [pytest.mark.acceptance]


def in_use_line(port: int) -> str:
    return f"jobd: 127.0.0.1:{port} is in use (another jobd? use --port or --no-tcp)\n"


def test_a_port_in_use_is_one_line_and_nothing_is_touched(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        paths = ["--data-dir", str(tmp_path / "data"), "--socket", str(tmp_path / "run/s")]
        done = subprocess.run(
            [str(VENV_BIN / "jobd"), *paths, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (done.returncode, done.stdout, done.stderr) == (1, "", in_use_line(port))
    assert list(tmp_path.iterdir()) == []  # no data directory, no socket, no podman service


@pytest.mark.podman
def test_a_second_jobd_on_the_same_port_stops_and_the_first_serves_on(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    first = daemon_factory()
    second = Daemon(tmp_path / "second", podman_socket=first.podman_socket)
    second.port = first.port
    done = subprocess.run(second.command(), capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (1, in_use_line(first.port))
    assert not second.socket.exists() and not second.data_dir.exists()
    assert first.get("/v1/health").status == 200


class JsonLogDaemon(Daemon):
    def command(self) -> list[str]:
        return [*super().command(), "--log-format", "json"]


@pytest.mark.podman
def test_readiness_and_stopping_reach_notify_socket(
    tmp_path: Path, podman_socket: Path, test_image: str
) -> None:
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(tmp_path / "notify"))
    manager.settimeout(30)
    daemon = JsonLogDaemon(
        tmp_path / "d",
        podman_socket=podman_socket,
        env={"NOTIFY_SOCKET": str(tmp_path / "notify")},
    )
    try:
        daemon.start()
        said = []
        while not said or not said[-1].startswith(b"READY=1"):
            said.append(manager.recv(4096))
        # READY=1 comes after the socket and the port are served and recovery is done
        assert (
            said[-1]
            == (
                f"READY=1\nSTATUS=serving on {daemon.socket} and http://127.0.0.1:{daemon.port}"
            ).encode()
        )
        assert b"STATUS=recovering the runs the last start left" in said
        assert daemon.get("/v1/health").status == 200
        assert daemon.terminate() == 0
        assert manager.recv(4096).startswith(b"STOPPING=1\n")
    finally:
        daemon.stop(kill_containers=True)
        manager.close()
    events = [json.loads(line) for line in daemon.log().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(events[0])
    assert any(e["message"].startswith("serving on") for e in events)
