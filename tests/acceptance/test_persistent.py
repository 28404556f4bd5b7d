"""Persistent jobs (issue 4): services that run until stopped, restarted when they crash."""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta

import pytest

from tests.conftest import DaemonFactory
from tests.support import Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

SERVICE = "trap 'echo bye; exit 0' TERM; echo up; sleep 300 & wait"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_persistent_run_stopped_cleanly_succeeds_and_is_not_restarted(daemon: Daemon) -> None:
    job = daemon.submit(kind="persistent", command=["sh", "-c", SERVICE])
    assert job["kind"] == "persistent"
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    wait_until(lambda: daemon.logs_text(run_id) == "up\n", 10, "the service to start")
    response = daemon.post(f"/v1/runs/{run_id}/stop")
    assert response.status == 202, response.text
    assert response.body["stopReason"] == "stop"
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "succeeded" and run["exitCode"] == 0
    assert daemon.logs_text(run_id) == "up\nbye\n"
    assert daemon.run(run_id)["retriedBy"] is None
    assert len(daemon.get(f"/v1/jobs/{job['id']}/runs").body["runs"]) == 1
    again = daemon.post(f"/v1/runs/{run_id}/stop")
    assert again.status == 409, again.text


def test_a_service_that_ignores_sigterm_is_killed_and_ends_cancelled(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(config="stop_grace_seconds = 1\n")
    job = daemon.submit(kind="persistent", command=["sh", "-c", "trap '' TERM; sleep 300"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    stopped = daemon.jobctl("stop", job["id"], "--wait")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{run_id} cancelled"
    run = daemon.run(run_id)
    assert run["failureReason"]["type"] == "cancelled" and run["retriedBy"] is None


def test_a_crashed_service_is_restarted_after_a_backoff(daemon: Daemon) -> None:
    job = daemon.submit(kind="persistent", command=["sh", "-c", "echo start; sleep 1; exit 3"])
    first = daemon.wait_status(job["latestRunId"], timeout=30)
    assert first["status"] == "failed" and first["failureReason"]["category"] == "application"
    restart = daemon.run(first["retriedBy"])
    assert restart["trigger"] == "restart" and restart["attempt"] == 2
    assert at(restart["notBefore"]) - at(restart["createdAt"]) == timedelta(seconds=5)
    daemon.wait_status(restart["id"], {"running", "failed"}, timeout=30)
    started = at(daemon.run(restart["id"])["startedAt"])
    assert started - at(first["finishedAt"]) >= timedelta(seconds=5)
    events = [e["detail"] for e in daemon.events(restart["id"])]
    assert any(d and d.startswith(f"restart of {first['id']}") for d in events)
    assert daemon.jobctl("delete", job["id"], "--wait").returncode == 0


def test_a_pending_run_asked_to_stop_is_cancelled(daemon: Daemon) -> None:
    job = daemon.submit(kind="persistent", command=["sh", "-c", "exit 1"])
    first = daemon.wait_status(job["latestRunId"], timeout=30)
    waiting = first["retriedBy"]
    assert daemon.run(waiting)["status"] == "pending", "its backoff is 5 s"
    response = daemon.post(f"/v1/runs/{waiting}/stop")
    assert response.status == 202 and response.body["status"] == "cancelled"
    assert daemon.run(waiting)["retriedBy"] is None


def test_published_ports_listen_on_loopback_and_the_run_gives_the_address(daemon: Daemon) -> None:
    serve = "echo hello from the service > /index.html; exec httpd -f -p 8080 -h /"
    job = daemon.submit(
        kind="persistent", ports=[8080], network="default", command=["sh", "-c", serve]
    )
    assert job["ports"] == [8080]
    run = daemon.wait_status(job["latestRunId"], {"running"})
    [endpoint] = run["endpoints"]
    assert endpoint["containerPort"] == 8080
    host, port = endpoint["address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{endpoint['address']}/", timeout=2) as reply:
                return reply.read().decode()
        except OSError:
            return None

    assert wait_until(fetch, 15, "the service to answer") == "hello from the service\n"
    shown = daemon.jobctl("show", run["id"])
    assert f"8080 -> {endpoint['address']}" in shown.stdout
    assert daemon.jobctl("stop", run["id"], "--wait").returncode == 0
    no_network = daemon.post("/v1/jobs", {"image": "busybox", "ports": [80], "network": "none"})
    assert no_network.status == 400 and "ports" in no_network.body["error"]["message"]
