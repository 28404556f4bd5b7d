"""Retention through the real daemon: finished runs past [retention] keep_last or max_age go
with their records, logs and outputs (the daemon's own round, and `jobctl prune`, dry or
not), a job's latest and running runs stay, one user's prune leaves another's runs alone;
health and doctor show the data directory's footprint and how jobd runs as a service (a
rootless daemon's subordinate ids too)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from jobd.node.doctor import subordinate_count
from tests.acceptance.conftest import ALICE, BOB, CAROL, call, submit, system_daemon
from tests.acceptance.test_rootless import USER as ROOTLESS_USER
from tests.acceptance.test_rootless import install_for, user_home  # noqa: F401 (a fixture)
from tests.support import Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

# each run logs a line and keeps 8,893 bytes of outputs; PAUSE keeps it running
WRITE = "echo run; seq 1 2000 > /outputs/n.txt; sleep ${PAUSE:-0}"


def finished_runs(daemon: Daemon, count: int, **spec: Any) -> tuple[str, list[str]]:
    """A job and its `count` runs, run one after another to the end, oldest first."""
    job = daemon.submit(command=["sh", "-c", WRITE], **spec)
    run_ids = [job["latestRunId"]]
    daemon.wait_status(run_ids[0])
    for _ in range(count - 1):
        rerun = daemon.post(f"/v1/jobs/{job['id']}/runs")
        assert rerun.status == 201, rerun.text
        run_ids.append(rerun.body["id"])
        assert daemon.wait_status(run_ids[-1])["status"] == "succeeded"
    return job["id"], run_ids


def on_disk(daemon: Daemon, run_id: str) -> bool:
    """Whether anything of the run is kept on disk: its log or its outputs."""
    data = daemon.data_dir
    return any(
        p.exists()
        for p in (
            data / "logs" / run_id,
            data / "outputs" / run_id,
            data / "outputs" / f"{run_id}.manifest.json",
        )
    )


def gone(daemon: Daemon, run_id: str) -> bool:
    return daemon.get(f"/v1/runs/{run_id}").status == 404 and not on_disk(daemon, run_id)


def test_keep_last_prunes_old_finished_runs_but_keeps_the_latest_and_running_ones(
    daemon_factory: Any,
) -> None:
    daemon = daemon_factory(config='[retention]\nkeep_last = 2\nmax_age = 0\ninterval = "1s"\n')
    job_id, run_ids = finished_runs(daemon, 3)
    assert all(on_disk(daemon, r) for r in run_ids)
    changed = daemon.request("PATCH", f"/v1/jobs/{job_id}", {"env": {"PAUSE": "300"}})
    assert changed.status == 200, changed.text
    running = daemon.post(f"/v1/jobs/{job_id}/runs").body["id"]
    daemon.wait_status(running, {"running"})
    # the daemon's own round, once the oldest has settled: 3 finished runs, 2 kept; the
    # running latest is not one of the finished runs kept
    wait_until(lambda: gone(daemon, run_ids[0]), 30, "the oldest run to be pruned")
    for kept in (*run_ids[1:], running):
        assert daemon.get(f"/v1/runs/{kept}").status == 200
        assert on_disk(daemon, kept)
    assert [r["id"] for r in daemon.get(f"/v1/jobs/{job_id}/runs").body["runs"]] == [
        running, *reversed(run_ids[1:])
    ]  # fmt: skip
    assert daemon.post(f"/v1/runs/{running}/cancel", {"force": True}).status == 202


def test_prune_dry_run_says_what_would_go_then_prune_removes_it_with_logs_and_outputs(
    daemon_factory: Any,
) -> None:
    # the background round is an hour off: only jobctl prunes here
    daemon = daemon_factory(config='[retention]\nkeep_last = 0\nmax_age = "1s"\ninterval = "1h"\n')
    job_id, run_ids = finished_runs(daemon, 3)
    old, latest = run_ids[:-1], run_ids[-1]
    wait_until(
        lambda: "would remove 2" in daemon.jobctl("prune", "--dry-run").stdout, 30, "settling"
    )
    dry = daemon.jobctl("prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove 2 finished runs: would free"), dry.stdout
    assert all(r in dry.stdout for r in old) and latest not in dry.stdout
    assert all(daemon.get(f"/v1/runs/{r}").status == 200 and on_disk(daemon, r) for r in old)
    pruned = daemon.jobctl("prune", "--json")
    assert pruned.returncode == 0, pruned.stderr
    report = json.loads(pruned.stdout)
    assert (report["dryRun"], report["runs"], sorted(report["runIds"])) == (False, 2, sorted(old))
    assert report["outputBytes"] >= 2 * 8893 and report["logBytes"] > 0
    assert report["freedBytes"] == report["outputBytes"] + report["logBytes"]
    assert all(gone(daemon, r) for r in old)
    assert daemon.get(f"/v1/runs/{old[0]}/events").status == 404
    assert daemon.get(f"/v1/runs/{latest}").status == 200 and on_disk(daemon, latest)
    again = daemon.jobctl("prune")
    assert again.stdout.startswith("removed 0 finished runs: freed 0 B"), again.stdout
    entries = daemon.get("/v1/audit?limit=5").body["entries"]
    assert any(e["path"] == "/v1/prune" and e["status"] == 200 for e in entries)
    assert daemon.get(f"/v1/jobs/{job_id}").status == 200


def test_a_prune_reaches_the_callers_own_runs_and_an_admins_everyones(
    users: None, podman_socket: Path, test_image: str, shared_dir: Path
) -> None:
    config = f'admins = ["{CAROL}"]\n[retention]\nkeep_last = 1\nmax_age = 0\ninterval = "1h"\n'
    with system_daemon(shared_dir, podman_socket, config) as daemon:
        runs = {user: two_runs(daemon, user) for user in (ALICE, BOB)}
        alice_old, bob_old = runs[ALICE][0], runs[BOB][0]
        wait_until(
            lambda: call(daemon, ALICE, "POST", "/v1/prune", {"dryRun": True}).body["runs"],
            30,
            "settling",
        )
        mine = call(daemon, ALICE, "POST", "/v1/prune", {})
        assert (mine.status, mine.body["runIds"]) == (200, [alice_old]), mine.text
        assert call(daemon, BOB, "GET", f"/v1/runs/{bob_old}").status == 200
        assert on_disk(daemon, bob_old) and not on_disk(daemon, alice_old)
        wait_until(
            lambda: call(daemon, CAROL, "POST", "/v1/prune", {"dryRun": True}).body["runs"],
            30,
            "bob's run to settle",
        )
        everyone = call(daemon, CAROL, "POST", "/v1/prune", {})
        assert everyone.body["runIds"] == [bob_old], everyone.text
        assert gone(daemon, bob_old)
        assert all(
            call(daemon, u, "GET", f"/v1/runs/{r[1]}").status == 200 for u, r in runs.items()
        )


def two_runs(daemon: Daemon, user: str) -> list[str]:
    job = submit(daemon, user, command=["sh", "-c", WRITE])
    first = job["latestRunId"]
    wait_until(
        lambda: call(daemon, user, "GET", f"/v1/runs/{first}").body["status"] == "succeeded",
        60,
        "run",
    )
    second = call(daemon, user, "POST", f"/v1/jobs/{job['id']}/runs").body["id"]
    wait_until(
        lambda: call(daemon, user, "GET", f"/v1/runs/{second}").body["status"] == "succeeded",
        60,
        "run",
    )
    return [first, second]


def test_health_shows_the_data_directorys_footprint_and_doctor_how_jobd_runs(
    daemon: Daemon,
) -> None:
    job = daemon.submit(command=["sh", "-c", WRITE])
    daemon.wait_status(job["latestRunId"])
    footprint = wait_until(lambda: daemon.get("/v1/health").body["footprint"], 30, "a walk")
    assert footprint["path"] == str(daemon.data_dir)
    assert footprint["databaseBytes"] > 0 and footprint["metricsEstimate"] == "dbstat"
    assert 0 < footprint["freeBytes"] <= footprint["filesystemBytes"]
    assert footprint["totalBytes"] == sum(
        footprint[f"{k}Bytes"] for k in ("database", "logs", "outputs", "uploads", "volumes")
    )
    shown = daemon.jobctl("health")
    assert f"in {daemon.data_dir}" in shown.stdout and "free of" in shown.stdout, shown.stdout
    doctor = daemon.get("/v1/doctor").body
    checks = {c["name"]: c for c in doctor["checks"]}
    for name in ("subuids", "socket", "data disk", "clock", "systemd", "retention"):
        assert name in checks, sorted(checks)
    assert checks["socket"]["level"] == "ok", checks["socket"]
    assert checks["retention"]["message"].startswith("kept: the newest 100 finished runs")
    assert checks["systemd"]["message"].startswith("not under systemd")
    assert all("fix" in c for c in doctor["checks"] if c["level"] != "ok")
    assert doctor["footprint"]["path"] == str(daemon.data_dir)
    text = daemon.jobctl("doctor")
    assert text.returncode == (0 if doctor["ok"] else 1), text.stdout
    assert "data dir: " in text.stdout and "free of" in text.stdout, text.stdout
    as_json = json.loads(daemon.jobctl("doctor", "--json").stdout)
    assert {c["name"] for c in as_json["checks"]} == set(checks)


def test_a_broken_socket_mode_fails_doctor_saying_how_to_fix_it(daemon: Daemon) -> None:
    os.chmod(daemon.socket, 0o666)
    doctor = daemon.get("/v1/doctor").body
    socket = next(c for c in doctor["checks"] if c["name"] == "socket")
    assert socket["level"] == "fail" and "mode 0666, not 0660" in socket["message"]
    assert socket["fix"] == f"chmod 0660 {daemon.socket}"
    shown = daemon.jobctl("doctor")
    assert shown.returncode == 1
    assert f"socket: chmod 0660 {daemon.socket}" in shown.stdout


@pytest.mark.rootless
def test_a_rootless_daemons_doctor_checks_its_users_subordinate_ids(
    user_home: Path,  # noqa: F811 (test_rootless's fixture)
) -> None:
    entry = pwd.getpwnam(ROOTLESS_USER)
    env = {
        "HOME": entry.pw_dir,
        "XDG_RUNTIME_DIR": str(user_home.parent / f"xdg-{os.getpid()}"),
        "PATH": os.environ["PATH"],
    }
    daemon = Daemon(user_home, user=ROOTLESS_USER, env=env, bin_dir=install_for(user_home))
    try:
        daemon.start(timeout=120)
        checks = {c["name"]: c for c in daemon.get("/v1/doctor").body["checks"]}
        subuids = checks["subuids"]
        expected = (
            subordinate_count(Path("/etc/subuid"), ROOTLESS_USER, entry.pw_uid) >= 65536
            and subordinate_count(Path("/etc/subgid"), ROOTLESS_USER, entry.pw_uid) >= 65536
        )
        assert subuids["level"] == ("ok" if expected else "fail"), subuids
        assert ROOTLESS_USER in subuids["message"]
        assert checks["socket"]["level"] == "ok", checks["socket"]
    finally:
        daemon.stop(kill_containers=False)
