"""Cron schedules and retries (issue 4) through a real daemon and real containers. The
schedule tests run in real time (a tick a minute); downtime is simulated by moving a
schedule's next tick into the past in the stopped daemon's database."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

MINUTE = timedelta(minutes=1)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def runs_of(daemon: Daemon, job_id: str) -> list[dict[str, Any]]:
    response = daemon.get(f"/v1/jobs/{job_id}/runs?limit=100")
    assert response.status == 200, response.text
    return response.body["runs"]  # type: ignore[no-any-return]


def wait_for_runs(daemon: Daemon, job_id: str, count: int, timeout: float) -> list[dict[str, Any]]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (runs := runs_of(daemon, job_id)) and len(runs) >= count and runs,
        timeout,
        f"{count} runs of {job_id}",
    )


def test_a_schedule_fires_each_minute_across_a_crash_without_firing_a_tick_twice(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory()
    job = daemon.submit(schedule="* * * * *", command=["sh", "-c", "echo tick"])
    assert job["latestRunId"] is None and job["status"] is None, "a schedule starts no run now"
    first_tick = at(job["schedule"]["nextFireAt"])
    [first] = wait_for_runs(daemon, job["id"], 1, timeout=75)
    assert first["trigger"] == "schedule" and at(first["scheduledFor"]) == first_tick
    daemon.wait_status(first["id"])  # else forbid, the default, skips the next tick
    daemon.kill()  # a crash between two ticks
    second_tick = first_tick + MINUTE
    time.sleep(max(0.0, (second_tick - datetime.now(UTC)).total_seconds()) + 3)
    daemon.start()  # the second tick passed while jobd was down: still on time, it fires
    runs = wait_for_runs(daemon, job["id"], 2, timeout=30)
    assert [at(r["scheduledFor"]) for r in runs] == [second_tick, first_tick]
    for run in runs:
        assert daemon.wait_status(run["id"])["status"] == "succeeded"
        assert daemon.logs_text(run["id"]) == "tick\n"
    assert (
        "the ticks missed"
        not in daemon.get(f"/v1/jobs/{job['id']}").body["schedule"]["lastTick"]["note"]
    )
    status = daemon.get(f"/v1/jobs/{job['id']}/status").body
    assert at(status["schedule"]["nextFireAt"]) == second_tick + MINUTE
    assert status["runCounts"]["succeeded"] == 2 and status["totalRuns"] == 2
    time.sleep(2)
    assert len(runs_of(daemon, job["id"])) == 2, "no tick fired twice"


def test_forbid_skips_a_busy_tick_and_replace_cancels_the_run_in_flight(
    daemon: Daemon,
) -> None:
    forbid = daemon.submit(schedule="* * * * *", command=["sleep", "300"])
    replace = daemon.submit(
        schedule="* * * * *", concurrencyPolicy="replace", command=["sleep", "300"]
    )
    second_tick = at(forbid["schedule"]["nextFireAt"]) + MINUTE
    [first_forbid] = wait_for_runs(daemon, forbid["id"], 1, timeout=75)
    [first_replace] = wait_for_runs(daemon, replace["id"], 1, timeout=10)
    daemon.wait_status(first_forbid["id"], {"running"})
    daemon.wait_status(first_replace["id"], {"running"})
    replaced = wait_for_runs(daemon, replace["id"], 2, timeout=75)
    assert at(replaced[0]["scheduledFor"]) == second_tick
    ended = daemon.wait_status(first_replace["id"], timeout=30)
    assert ended["status"] == "cancelled"
    assert daemon.wait_status(replaced[0]["id"], {"running"})["status"] == "running"

    def forbid_skipped() -> dict[str, Any] | None:
        status = daemon.get(f"/v1/jobs/{forbid['id']}/status").body
        tick = status["schedule"]["lastTick"]
        return status if tick and at(tick["at"]) == second_tick else None

    status = wait_until(forbid_skipped, 10, "the forbid job's second tick")
    assert status["schedule"]["lastTick"]["runId"] is None
    assert "forbid" in status["schedule"]["lastTick"]["note"]
    assert status["totalRuns"] == 1 and status["runCounts"]["running"] == 1
    assert daemon.run(first_forbid["id"])["status"] == "running", "left alone"


def _move_next_tick(daemon: Daemon, job_id: str, to: datetime) -> None:
    with sqlite3.connect(daemon.data_dir / "jobd.db") as db:
        db.execute("UPDATE jobs SET next_fire_at = ? WHERE id = ?", (to.timestamp(), job_id))


def test_after_downtime_catch_up_skips_or_runs_once(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory()
    minute = (datetime.now(UTC).minute + 30) % 60  # its latest tick is half an hour ago
    cron = f"{minute} * * * *"
    skip = daemon.submit(schedule=cron, command=["true"], name="skipper")
    once = daemon.submit(schedule=cron, catchUp="once", command=["true"], name="catcher")
    daemon.terminate()
    for job in (skip, once):  # as if jobd had been down for the last five hours
        _move_next_tick(daemon, job["id"], at(job["schedule"]["nextFireAt"]) - 5 * 60 * MINUTE)
    daemon.start()
    [caught] = wait_for_runs(daemon, once["id"], 1, timeout=30)
    latest_tick = at(once["schedule"]["nextFireAt"]) - 60 * MINUTE
    assert at(caught["scheduledFor"]) == latest_tick
    assert daemon.wait_status(caught["id"])["status"] == "succeeded"
    note = daemon.get(f"/v1/jobs/{once['id']}").body["schedule"]["lastTick"]["note"]
    assert "catchUp once" in note
    skipped = daemon.get(f"/v1/jobs/{skip['id']}").body
    assert skipped["latestRunId"] is None and runs_of(daemon, skip["id"]) == []
    assert "catchUp skip" in skipped["schedule"]["lastTick"]["note"]
    for job in (skip, once):  # both wait for their next tick, an hour on
        current = daemon.get(f"/v1/jobs/{job['id']}").body["schedule"]["nextFireAt"]
        assert current == job["schedule"]["nextFireAt"]
    listing = daemon.jobctl("schedule")
    assert listing.returncode == 0, listing.stderr
    assert "skipper" in listing.stdout and "catcher" in listing.stdout and cron in listing.stdout


def test_suspend_stops_the_ticks_and_resume_starts_them_from_now(daemon: Daemon) -> None:
    job = daemon.submit(schedule="0 3 * * *", timezone="America/New_York", command=["true"])
    next_fire = at(job["schedule"]["nextFireAt"])
    assert next_fire.astimezone(UTC).hour in (7, 8), "03:00 New York is 07:00 or 08:00 UTC"
    suspended = daemon.jobctl("suspend", job["id"])
    assert suspended.returncode == 0, suspended.stderr
    body = daemon.get(f"/v1/jobs/{job['id']}").body
    assert body["schedule"]["suspend"] is True and body["schedule"]["nextFireAt"] is None
    resumed = daemon.jobctl("resume", job["id"])
    assert resumed.returncode == 0, resumed.stderr
    assert (
        daemon.get(f"/v1/jobs/{job['id']}").body["schedule"]["nextFireAt"]
        == (job["schedule"]["nextFireAt"])
    )
    changed = daemon.request("PATCH", f"/v1/jobs/{job['id']}", {"schedule": None})
    assert changed.status == 200 and changed.body["schedule"] is None
    rerun = daemon.post(f"/v1/jobs/{job['id']}/runs")  # on demand now
    assert daemon.wait_status(rerun.body["id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"schedule": "61 * * * *"}, "schedule: "),
        ({"schedule": "* * * *"}, "not a 5-field cron expression"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Base"}, "timezone: unknown time zone"),
        ({"timezone": "UTC"}, "needs a schedule"),
        ({"schedule": "0 3 * * *", "concurrencyPolicy": "sometimes"}, "concurrencyPolicy"),
        ({"retry": {"backoffSeconds": 1}}, "maxAttempts"),
        ({"retry": {"maxAttempts": 0}}, "retry/maxAttempts"),
        ({"retry": {"maxAttempts": 2, "onExitCodes": [0]}}, "retry/onExitCodes/0"),
    ],
)
def test_bad_schedules_and_retries_are_refused_naming_the_field_and_write_nothing(
    daemon: Daemon, body: dict[str, Any], fragment: str
) -> None:
    response = daemon.post("/v1/jobs", {"image": "busybox", **body})
    assert response.status == 400, response.text
    assert fragment in response.body["error"]["message"]
    assert daemon.get("/v1/jobs").body["jobs"] == []


def test_updates_to_schedules_are_checked_and_a_deleted_job_is_gone(daemon: Daemon) -> None:
    plain = daemon.submit(command=["true"])
    response = daemon.request("PATCH", f"/v1/jobs/{plain['id']}", {"timezone": "UTC"})
    assert response.status == 400 and "has no schedule" in response.body["error"]["message"]
    response = daemon.request(
        "PATCH", f"/v1/jobs/{plain['id']}", {"schedule": None, "catchUp": "once"}
    )
    assert response.status == 400, response.text
    scheduled = daemon.submit(schedule="0 3 * * *", command=["true"])
    assert daemon.request("DELETE", f"/v1/jobs/{scheduled['id']}").status == 202
    gone = daemon.request("PATCH", f"/v1/jobs/{scheduled['id']}", {"suspend": True})
    assert gone.status == 404, gone.text
    assert daemon.get("/v1/jobs?scheduled=true").body["jobs"] == []


def test_a_failed_run_is_retried_with_exponential_backoff(daemon: Daemon) -> None:
    job = daemon.submit(
        command=["sh", "-c", "echo attempt; exit 3"],
        retry={"maxAttempts": 3, "backoffSeconds": 1},
    )
    runs = wait_for_runs(daemon, job["id"], 3, timeout=60)
    last = daemon.wait_status(runs[0]["id"])
    runs = runs_of(daemon, job["id"])
    assert len(runs) == 3, "no fourth attempt"
    third, second, first = (daemon.run(r["id"]) for r in runs)
    assert [r["trigger"] for r in (first, second, third)] == ["api", "retry", "retry"]
    assert [r["attempt"] for r in (first, second, third)] == [1, 2, 3]
    assert first["retriedBy"] == second["id"] and second["retriedBy"] == third["id"]
    assert last["retriedBy"] is None and last["status"] == "failed" and last["exitCode"] == 3
    for before, after, wait in ((first, second, 1), (second, third, 2)):
        assert before["failureReason"]["category"] == "application"
        assert at(after["startedAt"]) - at(before["finishedAt"]) >= timedelta(seconds=wait)
        assert daemon.logs_text(after["id"]) == "attempt\n"
    assert daemon.get(f"/v1/jobs/{job['id']}").body["latestRunId"] == third["id"]


def test_retries_tell_infrastructure_failures_from_the_applications(daemon: Daemon) -> None:
    missing = daemon.submit(image="localhost/jobd/not-there:1", retry={"maxAttempts": 2})
    picky = daemon.submit(
        command=["sh", "-c", "exit 3"],
        retry={"maxAttempts": 3, "backoffSeconds": 0, "onExitCodes": [75]},
    )
    no_infra = daemon.submit(
        image="localhost/jobd/not-there:1",
        retry={"maxAttempts": 3, "backoffSeconds": 0, "onInfrastructure": False},
    )
    runs = wait_for_runs(daemon, missing["id"], 2, timeout=60)
    for run in runs:
        ended = daemon.wait_status(run["id"])
        assert ended["failureReason"]["type"] == "image_not_found"
        assert ended["failureReason"]["category"] == "infrastructure"
    for job in (picky, no_infra):
        daemon.wait_status(job["latestRunId"])
    time.sleep(1)
    assert len(runs_of(daemon, picky["id"])) == 1, "exit 3 is not among onExitCodes"
    assert len(runs_of(daemon, no_infra["id"])) == 1


def test_jobctl_run_wait_follows_the_retries_to_the_last_attempt(daemon: Daemon) -> None:
    result = daemon.jobctl(
        "run",
        "--wait",
        "--network",
        "none",
        "--attempts",
        "2",
        "--backoff",
        "1",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        "exit 4",
    )
    assert result.returncode == 4, result.stderr
    assert "attempt 2 is run-" in result.stderr
