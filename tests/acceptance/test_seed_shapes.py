"""The seeds' API shapes, for scripts ported from them, through the real daemon and podman:
Render's `planId` and its instance type ids, its cancel of a job and its job's `startedAt` and
`finishedAt`; the cron-jobs API's `start` and `end` on logs and metrics."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

NEVER = "0 0 1 1 *"  # a schedule: the job is made, and no run starts during the test
MIB = 1024 * 1024
# Render's instance types as its documentation lists them (memory MB, CPUs, $ a month) and
# the plan of jobd's table each id names
RENDER_IDS = {
    "plan-srv-006": "starter",
    "plan-srv-007": "starter-plus",
    "plan-srv-008": "standard",
    "plan-srv-009": "standard-plus",
    "plan-srv-010": "pro",
    "plan-srv-011": "pro-plus",
    "plan-srv-012": "pro-max",  # undocumented, between 011 and 013: the larger
    "plan-srv-013": "pro-max",
    "plan-srv-014": "pro-ultra",
    "plan-crn-002": "starter",
    "plan-crn-003": "starter",
    "plan-crn-004": "starter-plus",
    "plan-crn-005": "standard",
    "plan-crn-006": "standard-plus",
    "plan-crn-007": "pro",
    "plan-crn-008": "pro-plus",
}
TIERS = {
    "starter": (512, 0.5, 7.0),
    "starter-plus": (1024, 1.0, 15.0),
    "standard": (2048, 1.0, 25.0),
    "standard-plus": (3072, 1.5, 50.0),
    "pro": (4096, 2.0, 85.0),
    "pro-plus": (8192, 4.0, 175.0),
    "pro-max": (16384, 8.0, None),
    "pro-ultra": (32768, 16.0, None),
}


def jobs_count(daemon: Daemon) -> int:
    return len(daemon.get("/v1/jobs?limit=1000").body["jobs"])


def test_render_plan_ids_and_plan_id_name_jobds_plans(daemon: Daemon) -> None:
    plans = {p["id"]: p for p in daemon.get("/v1/plans").body["plans"]}
    for name, (memory_mb, cpus, price) in TIERS.items():
        plan = plans[name]
        assert (plan["memoryMb"], plan["cpus"], plan["pricePerMonth"]) == (memory_mb, cpus, price)
    for render_id, name in RENDER_IDS.items():
        for field in ("plan", "planId"):
            response = daemon.post("/v1/jobs", job(**{field: render_id}))
            if response.status == 422:  # bigger than this machine: refused, naming its plan
                assert f"plan {name!r}" in response.body["error"]["message"], render_id
                continue
            assert response.status == 201, (render_id, response.text)
            assert response.body["plan"] == name, render_id
            assert response.body["finalConfig"]["plan"] == name
            assert response.body["requestedConfig"][field] == render_id, "as it was sent"

    same = daemon.post("/v1/jobs", job(plan="starter", planId="plan-srv-006"))
    assert same.status == 201 and same.body["plan"] == "starter", same.text
    before = jobs_count(daemon)
    for body, status, fragment in [
        (job(plan="standard", planId="plan-srv-006"), 400, "plan and planId name different"),
        (job(planId="plan-srv-015"), 400, "unknown plan 'plan-srv-015'"),
        (job(planId="nope"), 400, "unknown plan 'nope'"),
        (job(planId=""), 400, "planId"),
        (job(planId="plan-srv-006", resources={"cpuCount": 1}), 400, "not both"),
    ]:
        response = daemon.post("/v1/jobs", body)
        assert response.status == status, (body, response.text)
        assert fragment in response.body["error"]["message"], body
    assert jobs_count(daemon) == before, "a refused job is not made"


def test_plan_id_changes_a_jobs_plan(daemon: Daemon) -> None:
    made = daemon.post("/v1/jobs", job(planId="plan-srv-006")).body
    path = f"/v1/jobs/{made['id']}"
    changed = daemon.request("PATCH", path, {"planId": "plan-srv-007"})
    assert changed.status == 200, changed.text
    assert changed.body["plan"] == "starter-plus"
    both = daemon.request("PATCH", path, {"planId": "plan-srv-007", "plan": "pro"})
    assert both.status == 400 and "different plans" in both.text
    assert daemon.get(path).body["plan"] == "starter-plus", "the refused change changed nothing"
    assert daemon.request("PATCH", path, {"plan": "plan-crn-003"}).body["plan"] == "starter"


def job(**fields: Any) -> dict[str, Any]:
    """A job that never runs here (its schedule's next tick is next year)."""
    return {"image": TEST_IMAGE, "network": "none", "command": ["true"], "schedule": NEVER,
            **fields}  # fmt: skip


def test_cancel_a_job_cancels_its_runs_that_have_not_ended(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(config="[plans.whole-node]\nmemory_mb = 256\ncpus = 2\n")
    made = daemon.submit(plan="whole-node", command=["sleep", "300"])
    running = made["latestRunId"]
    daemon.wait_status(running, {"running"})
    queued = daemon.post(f"/v1/jobs/{made['id']}/runs").body["id"]
    time.sleep(0.5)
    assert daemon.run(queued)["status"] == "pending", "no room while the first runs"

    response = daemon.post(f"/v1/jobs/{made['id']}/cancel", {"graceSeconds": 0})
    assert response.status == 202, response.text
    doc = response.body
    assert doc["id"] == made["id"] and doc["latestRunId"] == queued
    states = {run["id"]: run["status"] for run in doc["runs"]}
    assert states == {running: "cancelling", queued: "cancelled"}
    assert doc["status"] == "cancelled" and doc["latestRun"]["status"] == "cancelled"
    stopped = daemon.wait_status(running, timeout=20)
    assert stopped["status"] == "cancelled" and stopped["stopGraceSeconds"] == 0
    assert daemon.run(queued)["startedAt"] is None, "the queued run never started"

    again = daemon.post(f"/v1/jobs/{made['id']}/cancel")
    assert again.status == 409 and "nothing to cancel" in again.body["error"]["message"]
    assert daemon.post("/v1/jobs/job-00000000000000000000000000000000/cancel").status == 404
    bad = daemon.post(f"/v1/jobs/{made['id']}/cancel", {"graceSeconds": -1})
    assert bad.status == 400 and "graceSeconds" in bad.text
    result = daemon.jobctl("runs", made["id"])
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()[1:]] == ["cancelled"] * 2


def test_a_job_carries_its_latest_runs_start_and_end(daemon: Daemon) -> None:
    scheduled = daemon.post("/v1/jobs", job()).body
    assert (scheduled["startedAt"], scheduled["finishedAt"]) == (None, None)
    made = daemon.submit(command=["sh", "-c", "sleep 1"])
    daemon.wait_status(made["latestRunId"], {"running"})
    running = daemon.get(f"/v1/jobs/{made['id']}").body
    assert running["startedAt"] == running["latestRun"]["startedAt"] is not None
    assert running["finishedAt"] is None
    ended = daemon.wait_status(made["latestRunId"])
    doc = daemon.get(f"/v1/jobs/{made['id']}").body
    assert (doc["startedAt"], doc["finishedAt"]) == (ended["startedAt"], ended["finishedAt"])
    assert doc["finishedAt"] is not None and doc["finishedAt"] > doc["startedAt"]
    listed = {j["id"]: j for j in daemon.get("/v1/jobs").body["jobs"]}
    assert (listed[made["id"]]["startedAt"], listed[made["id"]]["finishedAt"]) == (
        ended["startedAt"],
        ended["finishedAt"],
    )
    assert listed[scheduled["id"]]["startedAt"] is None


def test_start_and_end_are_since_and_until_on_logs_and_metrics(daemon: Daemon) -> None:
    made = daemon.submit(
        command=["sh", "-c", "echo one; sleep 1.2; echo two; sleep 1.2; echo three"]
    )
    run_id = made["latestRunId"]
    daemon.wait_status(run_id)
    lines = daemon.get(f"/v1/runs/{run_id}/logs").body["lines"]
    assert [line["text"] for line in lines] == ["one", "two", "three"]
    since, until = quote(lines[1]["time"]), quote(lines[2]["time"])
    for path in (f"/v1/runs/{run_id}/logs", f"/v1/jobs/{made['id']}/logs"):
        by_since = daemon.get(f"{path}?since={since}&until={until}").body["lines"]
        by_start = daemon.get(f"{path}?start={since}&end={until}").body["lines"]
        assert [line["text"] for line in by_start] == ["two"]
        assert by_start == by_since
        assert daemon.get(f"{path}?start={since}&until={until}").body["lines"] == by_since
        for query, fragment in [
            (f"since={since}&start={since}", "since and start are the same parameter"),
            (f"until={until}&end={until}", "until and end are the same parameter"),
            ("start=yesterday", "start: not an RFC 3339 time"),
            ("end=2026-01-01T00:00:00", "end: needs a UTC offset"),
        ]:
            response = daemon.get(f"{path}?{query}")
            assert response.status == 400, (path, query, response.text)
            assert fragment in response.body["error"]["message"], (path, query)

    metrics = f"/v1/runs/{run_id}/metrics"
    window = f"start={quote(lines[0]['time'])}&end={until}"
    expected = daemon.get(f"{metrics}?{window}").body
    first = quote(lines[0]["time"])
    for query in (f"since={first}&until={until}", f"start={first}&until={until}"):
        same = daemon.get(f"{metrics}?{query}")
        assert same.status == 200, same.text
        assert (same.body["start"], same.body["end"]) == (expected["start"], expected["end"])
    for query, fragment in [
        (f"end={until}&until={until}", "end and until are the same parameter"),
        (f"since={since}&start={since}", "start and since are the same parameter"),
        ("since=60&start=2026-01-01T00:00:00Z", "one of them"),
        ("until=soon", "until: not an RFC 3339 time"),
    ]:
        response = daemon.get(f"{metrics}?{query}")
        assert response.status == 400, (query, response.text)
        assert fragment in response.body["error"]["message"], query
