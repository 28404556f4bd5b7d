"""Quotas and fair share, through the real daemon and podman with real local users: a run
over its owner's max_running waits, saying whose quota and how full, while other users' runs
start; a project's quota holds its members' runs in it; a submission over max_queued gets 429
naming the quota and its use, and writes nothing; and among equal priorities the user who
used the machine less goes first, however long another's sweep has been queued."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.acceptance.conftest import ALICE, BOB, CAROL, call, submit, system_daemon
from tests.support import TEST_IMAGE, Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

QUOTAS = f"""admins = ["{CAROL}"]
[projects.vision]
members = ["{ALICE}", "{BOB}"]
[quotas.default]
max_running = 1
max_queued = 2
[quotas.users.{BOB}]
max_running = 3
[quotas.projects.vision]
max_running = 1
"""


def job_ids(daemon: Daemon) -> list[str]:
    return [j["id"] for j in call(daemon, CAROL, "GET", "/v1/jobs?allUsers=true").body["jobs"]]


def reason(daemon: Daemon, run_id: str) -> str:
    run = daemon.run(run_id)
    assert run["status"] == "pending", run["status"]
    return run["queue"]["reason"]  # type: ignore[no-any-return]


def waits_for(daemon: Daemon, run_id: str, text: str) -> None:
    wait_until(lambda: text in reason(daemon, run_id), 20, f"{run_id} to wait for {text!r}")


@pytest.fixture
def daemon(users: None, podman_socket: Path, test_image: str, shared_dir: Path) -> Iterator[Daemon]:
    with system_daemon(shared_dir, podman_socket, QUOTAS) as d:
        yield d


def test_running_and_queue_quotas_hold_one_user_while_others_start(daemon: Daemon) -> None:
    sleep = {"command": ["sleep", "300"], "plan": "starter"}
    first = submit(daemon, ALICE, **sleep)["latestRunId"]
    daemon.wait_status(first, {"running"})
    second = submit(daemon, ALICE, **sleep)["latestRunId"]
    waits_for(daemon, second, f"waiting for {ALICE}'s quota: 1 of 1 running (max_running)")
    bobs = submit(daemon, BOB, **sleep)["latestRunId"]
    daemon.wait_status(bobs, {"running"})  # another user's run starts meanwhile
    assert daemon.run(second)["status"] == "pending"

    # a project's quota: bob (3 of his own) may run one vision job, and the next waits for it
    in_vision = submit(daemon, BOB, project="vision", **sleep)["latestRunId"]
    daemon.wait_status(in_vision, {"running"})
    next_in_vision = submit(daemon, BOB, project="vision", **sleep)["latestRunId"]
    waits_for(daemon, next_in_vision, "waiting for project vision's quota: 1 of 1 running")

    third = submit(daemon, ALICE, **sleep)["latestRunId"]  # queued: 2 of 2
    before = job_ids(daemon)
    refused = call(daemon, ALICE, "POST", "/v1/jobs", {"image": TEST_IMAGE, **sleep})
    assert refused.status == 429, refused.text
    assert refused.body["error"]["message"] == (
        f"quota: {ALICE} may have 2 queued runs (max_queued) and has 2;"
        " submit again once some have started"
    )
    assert job_ids(daemon) == before, "nothing was written"
    shown = daemon.jobctl("show", second).stdout
    assert "quota" in shown, shown

    assert call(daemon, ALICE, "POST", f"/v1/runs/{first}/cancel").status == 202
    daemon.wait_status(second, {"running"})  # her next starts once her first has gone
    assert daemon.run(third)["status"] == "pending"
    for run_id in (second, third, bobs, in_vision, next_in_vision):
        daemon.post(f"/v1/runs/{run_id}/cancel", {"graceSeconds": 0})
    for run_id in (second, third, bobs, in_vision, next_in_vision):
        daemon.wait_status(run_id)


def whole_node() -> str:
    cpus = len(os.sched_getaffinity(0))
    return f"""admins = ["{CAROL}"]
[plans.whole]
cpus = {cpus}
memory_mb = 256
"""


@pytest.fixture
def whole_daemon(
    users: None, podman_socket: Path, test_image: str, shared_dir: Path
) -> Iterator[Daemon]:
    with system_daemon(shared_dir, podman_socket, whole_node()) as d:
        yield d


def started(daemon: Daemon, run_id: str) -> datetime:
    run = daemon.wait_status(run_id)
    assert run["status"] == "succeeded", run
    return datetime.fromisoformat(run["startedAt"])


def test_among_equal_priorities_whoever_used_less_goes_first(whole_daemon: Daemon) -> None:
    """Every run takes the whole node, so they run one at a time: alice's sweep is queued
    first, but once her first run has used the machine, bob's later run goes next."""
    daemon = whole_daemon
    spec = {"plan": "whole"}
    head = submit(daemon, ALICE, command=["sleep", "3"], **spec)["latestRunId"]
    daemon.wait_status(head, {"running"})
    sweep = [submit(daemon, ALICE, command=["true"], **spec)["latestRunId"] for _ in range(3)]
    late = submit(daemon, BOB, command=["true"], **spec)["latestRunId"]
    assert started(daemon, late) < min(started(daemon, r) for r in sweep)
    assert started(daemon, head) < started(daemon, late)
