"""The job API beyond creating and running (issue 4): updating and deleting a job, through a
real daemon and real containers."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.support import Daemon, container_state


def test_an_update_applies_to_the_next_run_never_to_one_in_flight(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "sleep 1; echo one $X"], labels={"v": "1"})
    in_flight = job["latestRunId"]
    daemon.wait_status(in_flight, {"running"})
    response = daemon.request(
        "PATCH",
        f"/v1/jobs/{job['id']}",
        {"startCommand": "echo two $X", "env": {"X": "y"}, "labels": {"v": "2"}},
    )
    assert response.status == 200, response.text
    updated = response.body
    assert updated["command"] == ["/bin/sh", "-c", "echo two $X"]
    assert updated["env"] == {"X": "y"} and updated["labels"] == {"v": "2"}
    assert updated["image"] == job["image"] and updated["plan"] == job["plan"], "omitted: kept"
    assert daemon.wait_status(in_flight)["status"] == "succeeded"
    assert daemon.logs_text(in_flight) == "one\n"
    rerun = daemon.post(f"/v1/jobs/{job['id']}/runs")
    assert rerun.status == 201, rerun.text
    assert daemon.wait_status(rerun.body["id"])["status"] == "succeeded"
    assert daemon.logs_text(rerun.body["id"]) == "two y\n"
    by_label = daemon.get("/v1/jobs?label=v%3D2").body["jobs"]
    assert [j["id"] for j in by_label] == [job["id"]]
    assert daemon.get("/v1/jobs?label=v%3D1").body["jobs"] == []


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "body"),
        ({"image": "Not A/valid::ref"}, 400, "not a valid image reference"),
        ({"command": ["a"], "startCommand": "b"}, 400, "not both"),
        ({"env": {"1BAD": "x"}}, 400, "env"),
        ({"owner": "someone"}, 400, "owner"),
        ({"plan": "no-such-plan"}, 400, "unknown plan"),
        ({"plan": "pro-ultra"}, 422, "this machine has"),
        ([1, 2], 400, "body"),
    ],
)
def test_a_bad_update_is_refused_with_the_field_and_changes_nothing(
    daemon: Daemon, body: object, status: int, fragment: str
) -> None:
    job = daemon.submit(command=["true"])
    before = daemon.get(f"/v1/jobs/{job['id']}").body
    response = daemon.request("PATCH", f"/v1/jobs/{job['id']}", body)
    assert response.status == status, response.text
    assert fragment in response.body["error"]["message"]
    after = daemon.get(f"/v1/jobs/{job['id']}").body
    assert {k: v for k, v in after.items() if k not in ("status", "latestRun")} == {
        k: v for k, v in before.items() if k not in ("status", "latestRun")
    }


def test_updating_a_job_that_does_not_exist_is_a_404(daemon: Daemon) -> None:
    response = daemon.request("PATCH", "/v1/jobs/job-nope", {"env": {"A": "b"}})
    assert response.status == 404 and response.body["error"]["code"] == "not_found"


def test_jobctl_update_changes_the_next_run(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "echo first"])
    daemon.wait_status(job["latestRunId"])
    result = daemon.jobctl("update", job["id"], "--env", "X=z", "--", "sh", "-c", "echo $X")
    assert result.returncode == 0, result.stderr
    assert daemon.get(f"/v1/jobs/{job['id']}").body["env"] == {"X": "z"}
    rerun = daemon.jobctl("rerun", job["id"], "--wait")
    assert rerun.returncode == 0, rerun.stderr
    assert daemon.logs_text(rerun.stdout.split()[-1]) == "z\n"
    nothing = daemon.jobctl("update", job["id"])
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr


def test_delete_stops_the_runs_and_leaves_nothing_behind(daemon: Daemon) -> None:
    trap = "trap 'exit 0' TERM; echo started; sleep 300 & wait"
    job = daemon.submit(command=["sh", "-c", trap], labels={"doomed": "yes"})
    running = job["latestRunId"]
    daemon.wait_status(running, {"running"})
    done = daemon.submit(command=["sh", "-c", "echo done"])  # another job's: must stay
    daemon.wait_status(done["latestRunId"])
    queued = daemon.post(f"/v1/jobs/{job['id']}/runs").body["id"]
    response = daemon.request("DELETE", f"/v1/jobs/{job['id']}")
    assert response.status == 202, response.text
    assert daemon.get(f"/v1/jobs/{job['id']}").status == 404, "hidden at once"
    assert daemon.get("/v1/jobs?label=doomed%3Dyes").body["jobs"] == []
    assert daemon.request("DELETE", f"/v1/jobs/{job['id']}").status == 404
    assert daemon.request("PATCH", f"/v1/jobs/{job['id']}", {"env": {}}).status == 404
    assert daemon.post(f"/v1/jobs/{job['id']}/runs").status == 404
    deadline = time.monotonic() + 30
    while daemon.get(f"/v1/runs/{running}").status != 404:  # purged once stopped
        assert time.monotonic() < deadline, daemon.get(f"/v1/runs/{running}").body
        time.sleep(0.2)
    assert daemon.get(f"/v1/runs/{queued}").status == 404
    for run_id in (running, queued):
        assert container_state(run_id) is None
        assert not (daemon.data_dir / "logs" / run_id).exists()
    assert [j["id"] for j in daemon.get("/v1/jobs").body["jobs"]] == [done["id"]]
    assert daemon.logs_text(done["latestRunId"]) == "done\n"


def test_deleting_a_job_that_does_not_exist_is_a_404(daemon: Daemon) -> None:
    response = daemon.request("DELETE", "/v1/jobs/job-nope")
    assert response.status == 404 and response.body["error"]["code"] == "not_found"


def test_jobctl_delete_waits_until_the_job_is_gone(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"])
    daemon.wait_status(job["latestRunId"], {"running"})
    result = daemon.jobctl("delete", job["id"], "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"deleted {job['id']}"
    assert daemon.get(f"/v1/runs/{job['latestRunId']}").status == 404
    assert container_state(job["latestRunId"]) is None
    again = daemon.jobctl("delete", job["id"])
    assert again.returncode != 0 and "not found" in again.stderr


def test_job_logs_merge_every_run_in_a_window_tagged_with_its_run(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "echo run-says $N"], env={"N": "1"})
    first = daemon.wait_status(job["latestRunId"])
    time.sleep(0.5)
    between = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    daemon.request("PATCH", f"/v1/jobs/{job['id']}", {"env": {"N": "2"}})
    second = daemon.wait_status(daemon.post(f"/v1/jobs/{job['id']}/runs").body["id"])
    body = daemon.get(f"/v1/jobs/{job['id']}/logs").body
    assert [(line["runId"], line["text"]) for line in body["lines"]] == [
        (first["id"], "run-says 1"),
        (second["id"], "run-says 2"),
    ]
    assert body["truncated"] is False
    windowed = daemon.get(f"/v1/jobs/{job['id']}/logs?since={between}").body["lines"]
    assert [line["runId"] for line in windowed] == [second["id"]]
    limited = daemon.get(f"/v1/jobs/{job['id']}/logs?limit=1").body
    assert len(limited["lines"]) == 1 and limited["truncated"] is True
    text = daemon.get(f"/v1/jobs/{job['id']}/logs?format=text&filter=2").text
    assert text == f"{second['id']} run-says 2\n"
    result = daemon.jobctl("logs", job["id"], "--all-runs", "--tail", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{second['id']} run-says 2\n"
    followed = daemon.get(f"/v1/jobs/{job['id']}/logs?follow=true")
    assert followed.status == 400 and "follow" in followed.body["error"]["message"]
    assert daemon.get("/v1/jobs/job-nope/logs").status == 404


def test_a_query_parameter_an_endpoint_does_not_take_is_refused_by_name(daemon: Daemon) -> None:
    job = daemon.submit(command=["echo", "hi"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id)
    for path, unknown in [
        ("/v1/jobs?recipe=nightly", "recipe"),
        (f"/v1/runs/{run_id}/logs?from=2026-01-01T00:00:00Z&limit=5", "from"),
        (f"/v1/jobs/{job['id']}?verbose=1", "verbose"),
    ]:
        response = daemon.get(path)
        assert response.status == 400, f"{path}: {response.text}"
        message = response.body["error"]["message"]
        assert f"unknown query parameters: {unknown} " in message, message
    assert "this endpoint takes: none" in daemon.get(f"/v1/jobs/{job['id']}?x=1").text
    assert daemon.get(f"/v1/runs/{run_id}/logs?limit=5&format=text").text == "hi\n"
    assert daemon.get("/v1/jobs?status=succeeded&limit=1").status == 200


def test_a_body_nested_a_thousand_deep_is_a_400_and_writes_nothing(daemon: Daemon) -> None:
    deep = '{"image": "busybox", "labels": {"a": ' + "[" * 1000 + "]" * 1000 + "}}"
    response = daemon.request("POST", "/v1/jobs", raw=deep.encode())
    assert response.status == 400, response.text
    assert "nested more than 64 levels deep" in response.body["error"]["message"]
    just_enough = '{"image": "busybox", "labels": {"a": ' + "[" * 62 + "]" * 62 + "}}"
    shallow = daemon.request("POST", "/v1/jobs", raw=just_enough.encode())
    assert shallow.status == 400 and "labels/a" in shallow.text, (
        "the schema's turn: a label is text"
    )
    assert daemon.get("/v1/jobs").body["jobs"] == []
