"""Jobs on podman's default network can't reach the host's own services: a server the host
binds on 0.0.0.0 refuses a run's connection through the bridge gateway at once, unless its
port is configured (network.host_ports) or host access is turned on; the internet-facing
path and published ports are untouched. health and doctor say so."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]
GATEWAY = "10.88.0.1"  # podman's default network's gateway: the host, seen from a run


@pytest.fixture
def host_server() -> Iterator[Callable[[], int]]:
    """Servers on 0.0.0.0 that answer "hello from the host" to whoever connects."""
    servers: list[socket.socket] = []

    def serve() -> int:
        server = socket.create_server(("0.0.0.0", 0))
        servers.append(server)

        def answer() -> None:
            while True:
                try:
                    connection, _ = server.accept()
                except OSError:
                    return
                with connection:
                    connection.sendall(b"hello from the host\n")

        threading.Thread(target=answer, daemon=True).start()
        return int(server.getsockname()[1])

    yield serve
    for server in servers:
        server.close()


def reach(daemon: Daemon, port: int) -> str:
    script = f"nc -w 3 {GATEWAY} {port} </dev/null || echo refused"
    job = daemon.submit(command=["sh", "-c", script], network="default", image=TEST_IMAGE)
    run = daemon.wait_status(job["latestRunId"], timeout=90)
    assert run["status"] == "succeeded", daemon.logs_text(run["id"])
    return daemon.logs_text(run["id"])


def iptables_available() -> bool:
    listed = subprocess.run(["iptables", "-w", "5", "-n", "-L"], capture_output=True, check=False)
    return listed.returncode == 0


@pytest.mark.skipif(not iptables_available(), reason="no iptables here, or not root")
def test_runs_cannot_reach_the_hosts_services_unless_allowed(
    daemon_factory: Callable[..., Daemon], host_server: Callable[[], int]
) -> None:
    closed, allowed = host_server(), host_server()
    daemon = daemon_factory(config=f"[network]\nhost_ports = [{allowed}]\n")
    assert "refused" in reach(daemon, closed)
    assert reach(daemon, allowed) == "hello from the host\n"
    host = daemon.get("/v1/health").body["isolation"]["host"]
    assert host["guarded"] is True and str(allowed) in host["note"]
    assert "may not connect to the host" in daemon.jobctl("doctor").stdout
    daemon.stop(kill_containers=True)

    opened = daemon_factory(config="[network]\nhost_access = true\n")
    host = opened.get("/v1/health").body["isolation"]["host"]
    rules = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True,
                           check=False).stdout  # fmt: skip
    assert host["guarded"] is False, f"{host}\n{rules}"
    assert "JOBD-HOST" not in rules, rules
    assert reach(opened, closed) == "hello from the host\n", rules
