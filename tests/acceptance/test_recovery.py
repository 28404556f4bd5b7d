"""jobd killed or stopped in the middle of runs: nothing is lost or duplicated."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, container_state, removed_soon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


def test_sigkill_mid_run_then_restart_adopts_the_running_container(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory()
    job = daemon.submit(command=["sh", "-c", "echo before; sleep 4; echo after; exit 7"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    daemon.kill()
    assert container_state(run_id) == "running", "containers outlive the daemon"
    daemon.start()
    run = daemon.wait_status(run_id, timeout=60)
    assert run["status"] == "failed" and run["exitCode"] == 7
    assert run["failureReason"]["type"] == "exit_code"
    assert daemon.logs_text(run_id) == "before\nafter\n"
    assert removed_soon(run_id)


def test_a_container_that_exited_while_jobd_was_down_gets_its_real_outcome(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory()
    job = daemon.submit(command=["sh", "-c", "sleep 1; echo done; exit 0"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    daemon.kill()
    wait_until(lambda: container_state(run_id) == "exited", 30, "the container to exit")
    daemon.start()
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "succeeded" and run["exitCode"] == 0
    assert daemon.logs_text(run_id) == "done\n"
    terminal = [e for e in daemon.events(run_id) if e["to"] == "succeeded"]
    assert len(terminal) == 1


def test_a_vanished_container_ends_lost(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    job = daemon.submit(command=["sleep", "300"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    daemon.kill()
    subprocess.run(["podman", "rm", "-f", "-t", "0", run_id], check=True, capture_output=True)
    daemon.start()
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "failed"
    assert run["failureReason"]["type"] == "lost"


def test_sigterm_leaves_containers_running_and_deadlines_survive_restart(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(config="stop_grace_seconds = 1\n")
    job = daemon.submit(command=["sleep", "300"], timeoutSeconds=5)
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    assert daemon.terminate() == 0
    assert container_state(run_id) == "running"
    time.sleep(1)
    daemon.start()
    assert daemon.run(run_id)["status"] == "running"
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "failed" and run["failureReason"]["type"] == "timeout"


def test_pending_runs_survive_a_restart_and_start_afterwards(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(config="[plans.whole-node]\nmemory_mb = 256\ncpus = 2\n")
    blocker = daemon.submit(plan="whole-node", command=["sleep", "3"])
    daemon.wait_status(blocker["latestRunId"], {"running"})
    queued = daemon.submit(plan="whole-node", command=["echo", "queued"])
    daemon.kill()
    daemon.start()
    assert daemon.wait_status(blocker["latestRunId"])["status"] == "succeeded"
    run = daemon.wait_status(queued["latestRunId"], timeout=30)
    assert run["status"] == "succeeded"
    assert daemon.logs_text(run["id"]) == "queued\n"


def test_jobd_runs_its_own_podman_service_when_none_is_configured(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(podman_socket=None)
    result = daemon.jobctl("run", "--wait", "--network", "none", TEST_IMAGE, "--", "echo", "own")
    assert result.returncode == 0, result.stderr + daemon.log()
    assert (daemon.data_dir / "podman" / "podman.sock").exists()
    assert daemon.terminate() == 0
    assert not (daemon.data_dir / "podman" / "podman.sock").exists()


def test_a_crash_between_placement_and_container_creation_requeues_the_run_once(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(config="[plans.whole-node]\nmemory_mb = 256\ncpus = 2\n")
    blocker = daemon.submit(plan="whole-node", command=["sleep", "300"])
    daemon.wait_status(blocker["latestRunId"], {"running"})
    queued = daemon.submit(plan="whole-node", command=["echo", "once"])
    run_id = queued["latestRunId"]
    daemon.kill()
    # what a SIGKILL right after the `pending -> assigned` transition leaves behind
    with sqlite3.connect(daemon.data_dir / "jobd.db") as db:
        db.execute("UPDATE runs SET status = 'assigned' WHERE id = ?", (run_id,))
        db.execute(
            "INSERT INTO run_events (run_id, at, from_status, to_status, detail)"
            " VALUES (?, ?, 'pending', 'assigned', 'placed')",
            (run_id, time.time()),
        )
    subprocess.run(
        ["podman", "rm", "-f", "-t", "0", blocker["latestRunId"]], check=True, capture_output=True
    )
    daemon.start()
    run = daemon.wait_status(run_id, timeout=60)
    assert run["status"] == "succeeded"
    assert daemon.logs_text(run_id) == "once\n"
    statuses = [e["to"] for e in daemon.events(run_id)]
    assert statuses == [
        "pending",
        "assigned",
        "pending",
        "assigned",
        "assigned",
        "running",
        "succeeded",
    ]
