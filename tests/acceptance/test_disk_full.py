"""A full disk under a real jobd: its data directory on an 8 MiB tmpfs, filled by a filler file
while a job prints. Writes that find no room answer 507 with jobd's JSON error (or are
acknowledged, and then kept), health says degraded and why, reads go on, a run that ends
meanwhile is recorded with its exit code and end, the output that was cut is marked lost, and
once the filler goes everything goes on without a restart, the database intact."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import TEST_IMAGE, Daemon, UnixConnection, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

DISK = "8m"
LOST = "bytes of output lost: disk full"


def talking(pause: float, code: int) -> str:
    """A job that prints 160 lines of 300 bytes, `pause` seconds apart, then exits `code`."""
    return (
        "x=$(printf '%0300d' 0); i=0; "
        f"while [ $i -lt 160 ]; do echo line-$i-$x; i=$((i+1)); sleep {pause}; done; exit {code}"
    )


@contextlib.contextmanager
def small_disk(mount: Path) -> Iterator[None]:
    """An 8 MiB tmpfs of its own at `mount`, unmounted afterwards."""
    mount.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(mount)], check=False)


@pytest.fixture
def full_daemon(tmp_path: Path, podman_socket: Path, test_image: str) -> Iterator[Daemon]:
    """A jobd whose data directory is a small tmpfs (podman's storage stays elsewhere)."""
    if os.getuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the disk-full test must mount its tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    daemon = Daemon(tmp_path / "home", podman_socket=podman_socket)
    with small_disk(daemon.data_dir):
        try:
            daemon.start()
            yield daemon
        finally:
            daemon.stop(kill_containers=True)


def fill(path: Path) -> None:
    """Write zeros to `path` until the disk has no room left; again a moment later, for any
    page the daemon let go of meanwhile."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 4096
    try:
        for _ in range(3):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0")
            time.sleep(0.2)
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bavail == 0


def chunked_upload(daemon: Daemon, pieces: Iterable[bytes]) -> tuple[int, bytes]:
    connection = UnixConnection(daemon.socket)
    try:
        connection.request("POST", "/v1/uploads?name=big", body=iter(pieces), encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def health(daemon: Daemon) -> dict[str, Any]:
    response = daemon.get("/v1/health")
    assert response.status == 200, response.text
    return response.body  # type: ignore[no-any-return]


def job(command: str) -> dict[str, Any]:
    return {"image": TEST_IMAGE, "network": "none", "command": ["sh", "-c", command]}


def refused_for_space(status: int, body: Any) -> bool:
    """A 507 with jobd's JSON error saying no space is left."""
    if status != 507:
        return False
    assert isinstance(body, dict), f"a 507 that is not JSON: {body!r}"
    assert body["error"]["code"] == "no_space", body
    assert "no space left" in body["error"]["message"], body
    return True


def test_a_full_disk_refuses_writes_clearly_and_everything_resumes_after(
    full_daemon: Daemon,
) -> None:
    daemon = full_daemon
    before = daemon.submit(command=["echo", "before"])
    daemon.wait_status(before["latestRunId"])
    talker = daemon.submit(command=["sh", "-c", talking(0.05, 3)])  # ends while the disk is full
    longer = daemon.submit(command=["sh", "-c", talking(0.2, 0)])  # goes on after
    for run_id in (talker["latestRunId"], longer["latestRunId"]):
        wait_until(printing(daemon, run_id), 30, "the talkers' output")

    fill(daemon.data_dir / "filler")
    acknowledged = [before["id"], talker["id"], longer["id"], *writes_while_full(daemon)]
    doc = wait_until(lambda: (h := health(daemon))["status"] == "degraded" and h, 10, "degraded")
    assert any("full" in reason for reason in doc["reasons"]), doc
    shown = daemon.jobctl("health")
    assert shown.returncode == 1 and "degraded" in shown.stdout and "is full" in shown.stdout
    assert daemon.get(f"/v1/jobs/{before['id']}").status == 200  # reads go on
    assert "before" in daemon.logs_text(before["latestRunId"])

    ended = daemon.wait_status(talker["latestRunId"], timeout=30)  # while the disk is still full
    assert ended["exitCode"] == 3 and ended["status"] == "failed", ended
    assert ended["finishedAt"] and ended["finishedAt"] >= ended["startedAt"]
    assert os.statvfs(daemon.data_dir).f_bavail == 0
    acknowledged += big_writes_until_refused(daemon)

    (daemon.data_dir / "filler").unlink()
    wait_until(lambda: health(daemon)["status"] == "ok", 15, "health ok again")
    assert_output_marked_lost(daemon, talker["latestRunId"], longer["latestRunId"])
    after = daemon.submit(command=["echo", "after"])
    assert daemon.wait_status(after["latestRunId"])["status"] == "succeeded"
    assert "after" in daemon.logs_text(after["latestRunId"])
    acknowledged.append(after["id"])
    for job_id in acknowledged:
        assert daemon.get(f"/v1/jobs/{job_id}").status == 200, job_id
    assert daemon.process is not None and daemon.process.poll() is None, daemon.log()
    assert "background task" not in daemon.log()

    assert daemon.terminate() == 0
    with sqlite3.connect(daemon.data_dir / "jobd.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = {row[0] for row in db.execute("SELECT id FROM jobs")}
    assert kept == set(acknowledged)  # every 201 kept, nothing of a 507


def printing(daemon: Daemon, run_id: str) -> Callable[[], bool]:
    return lambda: "line-10-" in daemon.logs_text(run_id)


def writes_while_full(daemon: Daemon) -> list[str]:
    """Small submissions (the database's reserve takes them: 201, or else 507) and an upload
    (its file has no room: 507). The jobs acknowledged."""
    acknowledged = []
    for n in range(5):
        response = daemon.post("/v1/jobs", job(f"echo during-{n}"))
        if response.status == 201:
            acknowledged.append(response.body["id"])
        else:
            assert refused_for_space(response.status, response.body), response.text
    status, body = chunked_upload(daemon, (b"u" * 65536 for _ in range(64)))
    assert refused_for_space(status, json.loads(body)), body
    return acknowledged


def big_writes_until_refused(daemon: Daemon) -> list[str]:
    """Jobs of 60 KB each (scheduled: no run) until the database's reserve is used up and
    three are refused with a 507. The jobs acknowledged."""
    acknowledged: list[str] = []
    refused = 0
    big = {**job("true"), "schedule": "0 0 1 1 *", "env": {"BIG": "x" * 60_000}}
    for _ in range(60):
        response = daemon.post("/v1/jobs", big)
        if response.status == 201:
            acknowledged.append(response.body["id"])
            continue
        assert refused_for_space(response.status, response.body), response.text
        refused += 1
        if refused == 3:
            return acknowledged
    raise AssertionError("the database took 3.6 MB on an 8 MiB disk that was full")


def assert_output_marked_lost(daemon: Daemon, ended: str, going_on: str) -> None:
    """One marker each: at the end of the run that ended while the disk was full, and in the
    middle of the one that went on printing once there was room."""
    text = wait_until(
        lambda: (t := daemon.logs_text(ended)).count(LOST) == 1 and t, 15, "the marker"
    )
    assert "line-10-" in text and text.rstrip("\n").splitlines()[-1].startswith("[jobd] ")
    assert daemon.run(going_on)["status"] == "running"
    assert daemon.wait_status(going_on, timeout=45)["status"] == "succeeded"
    lines = daemon.logs_text(going_on).splitlines()
    marked = [n for n, line in enumerate(lines) if LOST in line]
    assert len(marked) == 1 and lines[-1].startswith("line-159-"), lines[-3:]
    assert lines[marked[0] + 1].startswith("line-")  # and then it went on
