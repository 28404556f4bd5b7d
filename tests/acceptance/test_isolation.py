"""A job has exactly its owner's powers, through the real system daemon and podman: alice's
run is alice on the host (files it writes to her bind mount are hers; bob's 0600 file stays
closed to it; a path she can't read can't be mounted), never root, with no capabilities and
NoNewPrivs; the daemon's own user's runs keep only the documented capabilities; health and
each run say which mode is in force."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from jobd.domain.identity import ROOT_CAPABILITIES
from tests.acceptance.conftest import ALICE, BOB
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

# capability numbers (linux/capability.h) of the documented set
CAPABILITY_BITS = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "NET_BIND_SERVICE": 10,
}  # fmt: skip


@pytest.fixture
def daemon(team_daemon: Daemon) -> Daemon:
    return team_daemon


def submit_as(daemon: Daemon, caller: str | None, **spec: Any) -> dict[str, Any]:
    body = {"image": TEST_IMAGE, "network": "none", **spec}
    response = daemon.request("POST", "/v1/jobs", body, user=caller)
    assert response.status == 201, response.text
    return response.body  # type: ignore[no-any-return]


def finished(daemon: Daemon, job: dict[str, Any]) -> tuple[dict[str, Any], str]:
    run = daemon.wait_status(job["latestRunId"], timeout=90)
    return run, daemon.logs_text(run["id"])


def status_fields(text: str) -> dict[str, str]:
    """/proc/self/status as printed by a job: its fields by name."""
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def owned_dir(path: Path, user: str, mode: int) -> Path:
    path.mkdir()
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


def test_a_run_is_its_owner_on_the_host(daemon: Daemon, shared_dir: Path) -> None:
    mounts = shared_dir / "mounts"
    alice = pwd.getpwnam(ALICE)
    alices = owned_dir(mounts / "alice", ALICE, 0o700)
    bobs = owned_dir(mounts / "bob", BOB, 0o755)
    secret = bobs / "secret.txt"
    secret.write_text("bob's only\n")
    os.chown(secret, pwd.getpwnam(BOB).pw_uid, pwd.getpwnam(BOB).pw_gid)
    secret.chmod(0o600)

    job = submit_as(
        daemon, ALICE,
        command=["sh", "-c", "echo written > /data/out.txt && cat /proc/self/status"],
        volumes=[{"source": str(alices), "target": "/data"}],
    )  # fmt: skip
    run, text = finished(daemon, job)
    assert run["status"] == "succeeded", text
    written = alices / "out.txt"
    assert written.read_text() == "written\n"
    assert (written.stat().st_uid, written.stat().st_gid) == (alice.pw_uid, alice.pw_gid)
    status = status_fields(text)
    assert status["Uid"].split()[:2] == [str(alice.pw_uid)] * 2, "never root"
    assert status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert {int(g) for g in status["Groups"].split()} >= {os.getgrouplist(ALICE, alice.pw_gid)[0]}
    run_as = run["limits"]["runAs"]
    assert run_as["mode"] == "owner" and run_as["uid"] == alice.pw_uid
    assert run_as["capabilities"] == [] and run_as["noNewPrivileges"] is True
    assert run["finalConfig"]["runAs"] == run_as

    peeking = submit_as(
        daemon, ALICE, command=["cat", "/bob/secret.txt"],
        volumes=[{"source": str(bobs), "target": "/bob", "readOnly": True}],
    )  # fmt: skip
    run, text = finished(daemon, peeking)
    assert run["status"] == "failed" and "Permission denied" in text, text
    assert "bob's only" not in text

    bobs.chmod(0o700)  # now alice may not even read the directory: not mountable
    refused = daemon.request(
        "POST", "/v1/jobs",
        {"image": TEST_IMAGE, "command": ["true"], "volumes": [
            {"source": str(bobs), "target": "/bob", "readOnly": True}]},
        user=ALICE,
    )  # fmt: skip
    assert refused.status == 403 and "may not read" in refused.text, refused.text
    as_root = daemon.request(
        "POST", "/v1/jobs", {"image": TEST_IMAGE, "command": ["true"], "user": "0"}, user=ALICE
    )
    assert as_root.status == 400 and "runs as its owner" in as_root.text, as_root.text


def test_the_daemon_users_runs_keep_only_the_documented_capabilities(daemon: Daemon) -> None:
    job = submit_as(daemon, None, command=["cat", "/proc/self/status"])
    run, text = finished(daemon, job)
    assert run["status"] == "succeeded", text
    status = status_fields(text)
    assert status["Uid"].split()[0] == "0" and status["NoNewPrivs"] == "1"
    expected = sum(1 << CAPABILITY_BITS[name] for name in ROOT_CAPABILITIES)
    assert int(status["CapBnd"], 16) == expected
    assert int(status["CapEff"], 16) == expected
    assert run["limits"]["runAs"]["mode"] == "daemon-user"
    as_another = submit_as(daemon, None, command=["cat", "/proc/self/status"], user="1000:1000")
    run, text = finished(daemon, as_another)
    status = status_fields(text)
    assert status["Uid"].split()[0] == "1000" and int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0 and run["limits"]["runAs"]["capabilities"] == []

    health = daemon.get("/v1/health").body["isolation"]
    assert health["mode"] == "owner" and health["ownerCapabilities"] == []
    assert set(health["daemonUserCapabilities"]) == set(ROOT_CAPABILITIES)
    doctor = daemon.jobctl("doctor").stdout
    assert "isolation" in doctor and "runs run as that user" in doctor
