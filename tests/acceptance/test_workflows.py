"""Workflows through the real daemon and podman: runs that wait on other runs (ok, any,
notok, a dependency that fails), arrays with their parallelism bound observed, and another
user's runs refused as if they did not exist."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.acceptance.conftest import ALICE, BOB, call, submit
from tests.support import TEST_IMAGE, Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


def start(daemon: Daemon, *args: str) -> tuple[str, str]:
    """`jobctl run` with these options and command; the job and run ids."""
    done = daemon.jobctl("run", "--network", "none", *args)
    assert done.returncode == 0, done.stderr
    job_id, run_id = done.stdout.split()
    return job_id, run_id


def reason(daemon: Daemon, run_id: str) -> str:
    return str(daemon.run(run_id)["queue"]["reason"])


def test_runs_wait_for_others_to_succeed_end_or_fail(daemon: Daemon) -> None:
    _, first = start(daemon, TEST_IMAGE, "--", "sh", "-c", "sleep 3")
    _, failing = start(daemon, TEST_IMAGE, "--", "sh", "-c", "sleep 2; exit 4")
    _, on_ok = start(daemon, "--after", first, TEST_IMAGE, "--", "echo", "after ok")
    _, on_any = start(daemon, "--after", f"{failing}:any", TEST_IMAGE, "--", "true")
    _, on_notok = start(daemon, "--after", f"{failing}:notok", TEST_IMAGE, "--", "true")
    _, doomed = start(daemon, "--after", f"{first}:notok", TEST_IMAGE, "--", "true")
    waiting = daemon.run(on_ok)
    assert waiting["status"] == "pending" and waiting["startedAt"] is None
    assert waiting["after"] == [{"id": first, "condition": "ok", "array": False}]
    assert reason(daemon, on_ok) == f"waiting for run {first} to succeed"
    assert reason(daemon, on_notok) == f"waiting for run {failing} to fail"
    shown = daemon.jobctl("show", on_ok).stdout
    assert f"{first} ok" in shown and f"waiting for run {first} to succeed" in shown, shown

    assert daemon.wait_status(first)["status"] == "succeeded"
    assert daemon.wait_status(on_ok)["status"] == "succeeded"
    assert daemon.logs_text(on_ok) == "after ok\n"
    assert daemon.wait_status(failing)["exitCode"] == 4
    assert daemon.wait_status(on_any)["status"] == "succeeded"
    assert daemon.wait_status(on_notok)["status"] == "succeeded"

    never = daemon.wait_status(doomed)
    assert never["status"] == "failed" and never["startedAt"] is None
    assert never["failureReason"] == {
        "type": "dependency_failed",
        "category": "dependency",
        "message": f"dependency failed: run {first} succeeded (after notok)",
    }
    assert never["retriedBy"] is None
    assert [e["to"] for e in daemon.events(doomed)] == ["pending", "failed"]


def test_a_failed_dependency_fails_the_chain_without_starting_it(daemon: Daemon) -> None:
    _, broken = start(daemon, TEST_IMAGE, "--", "sh", "-c", "exit 1")
    job, second = start(daemon, "--after", broken, TEST_IMAGE, "--", "true")
    _, third = start(daemon, "--after", job, TEST_IMAGE, "--", "true")  # a job: its latest run
    assert daemon.wait_status(third)["failureReason"]["message"] == (
        f"dependency failed: run {second} did not succeed (after ok)"
    )
    assert daemon.run(second)["failureReason"]["type"] == "dependency_failed"
    waited = daemon.jobctl("wait", third)
    assert waited.returncode == 1, waited.stderr


def test_an_array_runs_each_index_at_most_its_parallelism_at_once(daemon: Daemon) -> None:
    job_id, first = start(
        daemon, "--array", "0-5%2", "--name", "shards", TEST_IMAGE, "--",
        "sh", "-c", "echo index $JOBD_ARRAY_INDEX of $JOBD_ARRAY_SIZE; sleep 1",
    )  # fmt: skip
    most = 0

    def counts() -> dict[str, Any] | None:
        nonlocal most
        job = daemon.get(f"/v1/jobs/{job_id}").body
        runs = job["arrayRuns"]
        most = max(most, sum(runs.get(s, 0) for s in ("assigned", "running", "cancelling")))
        return job if runs.get("succeeded") == 6 else None

    job = wait_until(counts, 90, "the array's six runs to succeed")
    assert job["status"] == "succeeded" and job["latestRunId"] == first
    assert job["array"] == {"indices": "0-5", "parallelism": 2, "size": 6}
    assert most == 2, f"at most two in flight at once, saw {most}"
    runs = daemon.get(f"/v1/jobs/{job_id}/runs?limit=10").body["runs"]
    assert sorted(r["arrayIndex"] for r in runs) == list(range(6))
    assert {r["arrayId"] for r in runs} == {first}
    for run in runs:
        assert daemon.logs_text(run["id"]) == f"index {run['arrayIndex']} of 6\n"
    started = sorted(runs, key=lambda r: r["startedAt"])
    assert {r["arrayIndex"] for r in started[:2]} == {0, 1}, "lowest indices first"
    listed = daemon.jobctl("ls")
    assert "0/6 running, 6 succeeded" in listed.stdout, listed.stdout
    table = daemon.jobctl("runs", job_id).stdout
    assert all(f"api, index {i}" in table for i in range(6)), table


def test_a_run_after_an_array_waits_for_all_of_it(daemon: Daemon) -> None:
    array_job, _ = start(
        daemon, "--array", "0-2", "--name", "fanout", TEST_IMAGE, "--",
        "sh", "-c", "sleep $JOBD_ARRAY_INDEX",
    )  # fmt: skip
    _, after_all = start(daemon, "--after", "fanout", TEST_IMAGE, "--", "true")  # by its name
    assert daemon.run(after_all)["after"][0]["array"] is True
    time.sleep(1.5)
    assert daemon.run(after_all)["status"] == "pending", "index 2 still sleeps"
    finished = daemon.wait_status(after_all, timeout=90)
    assert finished["status"] == "succeeded"
    ends = [r["finishedAt"] for r in daemon.get(f"/v1/jobs/{array_job}/runs").body["runs"]]
    assert finished["startedAt"] > max(ends)


def test_bad_dependencies_and_arrays_are_refused_and_change_nothing(daemon: Daemon) -> None:
    before = daemon.get("/v1/jobs").body["jobs"]
    for spec, message in [
        ({"after": [{"id": "run-" + "0" * 32}]}, "after: no run or job run-" + "0" * 32),
        ({"after": [{"id": "x", "condition": "maybe"}]}, "condition"),
        ({"array": {"indices": "9-1"}}, "ranges go up"),
        ({"array": {"indices": "0-3", "parallelism": 0}}, "parallelism"),
        ({"array": {"indices": "0-99999"}}, "at most 10000 indices"),
        (
            {"schedule": "0 * * * *", "after": [{"id": "run-" + "0" * 32}]},
            "a scheduled job's runs start on its ticks",
        ),
    ]:
        response = daemon.post("/v1/jobs", {"image": TEST_IMAGE, **spec})
        assert response.status == 400, (spec, response.text)
        assert message in response.body["error"]["message"], response.text
    assert daemon.get("/v1/jobs").body["jobs"] == before


def test_another_users_run_is_refused_as_if_it_did_not_exist(team_daemon: Daemon) -> None:
    alices = submit(team_daemon, ALICE, command=["true"])["latestRunId"]
    missing = "run-" + "f" * 32
    answers = []
    for target in (alices, missing):
        body = {"image": TEST_IMAGE, "network": "none", "after": [{"id": target}]}
        response = call(team_daemon, BOB, "POST", "/v1/jobs", body)
        assert response.status == 400, response.text
        answers.append(response.body["error"]["message"].replace(target, "ID"))
    assert answers[0] == answers[1] == "after: no run or job ID"


def test_a_crash_keeps_dependencies_and_an_arrays_bound_exact(daemon: Daemon) -> None:
    _, first = start(daemon, TEST_IMAGE, "--", "sh", "-c", "sleep 3")
    _, waits = start(daemon, "--after", first, TEST_IMAGE, "--", "echo", "released once")
    array_job, _ = start(daemon, "--array", "0-3%1", TEST_IMAGE, "--", "sleep", "1")
    daemon.wait_status(first, {"running"})
    daemon.kill()  # first ends while jobd is down: its end is found again at the restart
    time.sleep(3.5)
    daemon.start()
    assert daemon.wait_status(waits)["status"] == "succeeded"
    assert daemon.logs_text(waits) == "released once\n"
    assert [e["detail"] for e in daemon.events(waits)].count("its dependencies are met") == 1

    def done() -> dict[str, Any] | None:
        job = daemon.get(f"/v1/jobs/{array_job}").body
        return job if job["arrayRuns"] == {"succeeded": 4} else None

    wait_until(done, 90, "the array to finish")
    runs = daemon.get(f"/v1/jobs/{array_job}/runs").body["runs"]
    spans = sorted((r["startedAt"], r["finishedAt"]) for r in runs)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), "one at a time"


def test_wait_and_cancel_take_an_array_whole(daemon: Daemon) -> None:
    ran = daemon.jobctl(
        "run", "--network", "none", "--wait", "--array", "0-3%2", TEST_IMAGE, "--",
        "sh", "-c", "exit $((JOBD_ARRAY_INDEX == 2))",
    )  # fmt: skip
    assert ran.returncode == 1, ran.stderr
    assert "1/4" not in ran.stderr and "3 succeeded, 1 failed" in ran.stderr, ran.stderr
    job_id = ran.stdout.split()[0]
    assert daemon.jobctl("wait", job_id).returncode == 1

    long_job, _ = start(daemon, "--array", "0-5%2", TEST_IMAGE, "--", "sleep", "300")
    wait_until(
        lambda: daemon.get(f"/v1/jobs/{long_job}").body["arrayRuns"].get("running") == 2,
        60, "two of the array's runs to run",
    )  # fmt: skip
    cancelled = daemon.jobctl("cancel", long_job)
    assert cancelled.returncode == 0, cancelled.stderr
    assert len(cancelled.stdout.splitlines()) == 6, cancelled.stdout
    job = wait_until(
        lambda: (j := daemon.get(f"/v1/jobs/{long_job}").body)["arrayRuns"] == {"cancelled": 6}
        and j,
        60, "every index to end cancelled",
    )  # fmt: skip
    assert job["status"] == "cancelled"
