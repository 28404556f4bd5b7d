"""Runs across jobs and a run with its logs (the GPU-cloud seed's `GET /v1/job-runs` and its
single-run read), through the real daemon and podman: GET /v1/runs newest first with each
filter and its cursor, `jobctl runs` without a job, another user's runs absent (a project's
members see its runs), and GET /v1/runs/{id}?include=logs bounded in bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.acceptance.conftest import ALICE, BOB, CAROL, DAVE, call, submit, system_daemon
from tests.support import Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


def listed(daemon: Daemon, query: str = "") -> list[dict[str, Any]]:
    response = daemon.get(f"/v1/runs{query}")
    assert response.status == 200, response.text
    return response.body["runs"]  # type: ignore[no-any-return]


def ids(runs: list[dict[str, Any]]) -> list[str]:
    return [run["id"] for run in runs]


def test_runs_across_jobs_newest_first_with_each_filter_and_a_cursor(daemon: Daemon) -> None:
    ok = daemon.submit(command=["true"], labels={"team": "a"})
    bad = daemon.submit(command=["false"], labels={"team": "b"})
    retried = daemon.submit(
        command=["false"], labels={"team": "b"}, retry={"maxAttempts": 2, "backoffSeconds": 0}
    )
    service = daemon.submit(command=["sleep", "300"], kind="persistent", labels={"team": "a"})
    for job in (ok, bad, retried):
        daemon.wait_status(job["latestRunId"])

    def second_attempt() -> str | None:
        latest = daemon.get(f"/v1/jobs/{retried['id']}").body["latestRun"]
        return latest["id"] if latest["attempt"] == 2 else None

    second = wait_until(second_attempt, 30, "the retry")
    daemon.wait_status(second)
    daemon.wait_status(service["latestRunId"], {"running"})
    rerun = daemon.post(f"/v1/jobs/{ok['id']}/runs").body
    daemon.wait_status(rerun["id"])

    everything = listed(daemon)
    assert len(everything) == 6
    created = [(run["createdAt"], run["id"]) for run in everything]
    assert created == sorted(created, reverse=True), "newest first"
    assert all("logs" not in run for run in everything), "a listing carries no logs"
    assert ids(everything)[0] == rerun["id"]

    failed = {bad["latestRunId"], retried["latestRunId"], second}
    assert set(ids(listed(daemon, "?status=failed"))) == failed
    both = {*failed, ok["latestRunId"], rerun["id"]}
    assert set(ids(listed(daemon, "?status=succeeded,failed"))) == both
    assert set(ids(listed(daemon, "?status=succeeded&status=failed"))) == both
    assert ids(listed(daemon, "?status=running")) == [service["latestRunId"]]
    team_a = {ok["latestRunId"], rerun["id"], service["latestRunId"]}
    assert set(ids(listed(daemon, "?label=team%3Da"))) == team_a
    assert ids(listed(daemon, "?label=team%3Da&status=running")) == [service["latestRunId"]]
    assert listed(daemon, "?label=team%3Dnobody") == []
    assert ids(listed(daemon, "?kind=persistent")) == [service["latestRunId"]]
    assert len(listed(daemon, "?kind=batch")) == 5
    assert ids(listed(daemon, "?trigger=retry")) == [second]
    cut = everything[2]["createdAt"]
    assert ids(listed(daemon, f"?since={quote(cut)}")) == ids(everything[:3])
    assert ids(listed(daemon, f"?before={quote(cut)}")) == ids(everything[3:])

    walked: list[str] = []
    query = "?limit=2"
    while True:
        page = daemon.get(f"/v1/runs{query}").body
        assert len(page["runs"]) <= 2
        walked += ids(page["runs"])
        if not page["nextCursor"]:
            break
        query = f"?limit=2&cursor={page['nextCursor']}"
    assert walked == ids(everything), "every run once, in order"
    first = daemon.get("/v1/runs?status=failed&limit=2").body
    rest = listed(daemon, f"?status=failed&limit=2&cursor={first['nextCursor']}")
    assert ids(first["runs"] + rest) == ids(listed(daemon, "?status=failed")), "filtered pages"

    assert daemon.request("DELETE", f"/v1/jobs/{bad['id']}").status == 202
    assert bad["latestRunId"] not in ids(listed(daemon)), "a deleted job's runs are gone"
    daemon.post(f"/v1/jobs/{service['id']}/cancel", {"force": True})


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("status=finished", "status: one of"),
        ("status=running,bogus", "'bogus'"),
        ("kind=service", "kind: one of"),
        ("trigger=cron", "trigger: one of"),
        ("since=yesterday", "since: not an RFC 3339 time"),
        ("before=2026-01-01T00:00:00", "before: needs a UTC offset"),
        ("label=team", "label: expected key=value"),
        ("cursor=not-a-cursor", "invalid cursor"),
        ("limit=0", "limit"),
        ("project=", "project"),
        ("jobId=job-1", "unknown query parameters: jobId"),
    ],
)
def test_a_bad_runs_query_is_refused(daemon: Daemon, query: str, fragment: str) -> None:
    response = daemon.get(f"/v1/runs?{query}")
    assert response.status == 400, response.text
    assert fragment in response.body["error"]["message"]


def test_jobctl_runs_without_a_job_lists_the_runs_of_every_job(daemon: Daemon) -> None:
    good = daemon.submit(command=["true"])
    bad = daemon.submit(command=["false"])
    daemon.wait_status(good["latestRunId"])
    daemon.wait_status(bad["latestRunId"])
    result = daemon.jobctl("runs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "JOB", "STATUS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        [bad["latestRunId"], bad["id"], "failed"],
        [good["latestRunId"], good["id"], "succeeded"],
    ]
    only_failed = daemon.jobctl("runs", "--status", "failed", "--json")
    assert only_failed.returncode == 0, only_failed.stderr
    assert '"succeeded"' not in only_failed.stdout and bad["latestRunId"] in only_failed.stdout
    mixed = daemon.jobctl("runs", good["id"], "--status", "failed")
    assert mixed.returncode == 2 and "give no job id" in mixed.stderr


CONFIG = f"""admins = ["{CAROL}"]
[projects.vision]
members = ["{ALICE}", "{BOB}"]
"""


@pytest.fixture
def team(users: None, podman_socket: Path, test_image: str, shared_dir: Path) -> Iterator[Daemon]:
    with system_daemon(shared_dir, podman_socket, CONFIG) as d:
        yield d


def test_another_users_runs_are_absent_and_a_projects_are_its_members(team: Daemon) -> None:
    alices = submit(team, ALICE, command=["true"])
    shared = submit(team, ALICE, command=["true"], project="vision")
    bobs = submit(team, BOB, command=["true"])
    daves = submit(team, DAVE, command=["true"])
    for job in (alices, shared, bobs, daves):
        team.wait_status(job["latestRunId"])

    def runs_of(user: str, query: str = "") -> set[str]:
        response = call(team, user, "GET", f"/v1/runs{query}")
        assert response.status == 200, response.text
        return {run["id"] for run in response.body["runs"]}

    assert runs_of(ALICE) == {alices["latestRunId"], shared["latestRunId"]}
    assert runs_of(BOB) == {bobs["latestRunId"], shared["latestRunId"]}, "his and vision's"
    assert runs_of(BOB, "?project=vision") == {shared["latestRunId"]}
    assert runs_of(DAVE) == {daves["latestRunId"]}
    assert runs_of(DAVE, "?project=vision") == set()
    refused = call(team, BOB, "GET", "/v1/runs?allUsers=true")
    assert refused.status == 403 and "not an admin" in refused.text
    assert runs_of(CAROL) == set(), "an admin lists their own unless asked for everyone's"
    everyone = {j["latestRunId"] for j in (alices, shared, bobs, daves)}
    assert runs_of(CAROL, "?allUsers=true") >= everyone
    assert call(team, DAVE, "POST", f"/v1/jobs/{alices['id']}/cancel").status == 404


def test_a_run_with_its_newest_log_lines_bounded_in_bytes(daemon: Daemon) -> None:
    many = daemon.submit(command=["sh", "-c", "seq 1 30000; echo oops >&2"])
    run_id = many["latestRunId"]
    daemon.wait_status(run_id)
    doc = daemon.get(f"/v1/runs/{run_id}?include=logs").body
    assert doc["id"] == run_id and doc["status"] == "succeeded"
    lines = doc["logs"]
    assert doc["logsTruncated"] is True
    assert sum(len(line["text"].encode()) for line in lines) <= 64 * 1024
    # conmon reads the two pipes apart: the stderr line lands among the last stdout lines
    oops = [line for line in lines if line["text"] == "oops"]
    assert oops == [{"time": oops[0]["time"], "stream": "stderr", "text": "oops", "runId": run_id}]
    numbers = [int(line["text"]) for line in lines if line["stream"] == "stdout"]
    assert numbers == list(range(numbers[0], 30001)), "the newest lines, whole and in order"
    assert len(numbers) > 10_000, "as many as fit"
    as_logged = daemon.get(f"/v1/runs/{run_id}/logs?tail={len(lines)}").body["lines"]
    assert as_logged == lines, "as the JSON log API gives them"

    small = daemon.get(f"/v1/runs/{run_id}?include=logs&logBytes=20").body
    texts, every = [line["text"] for line in small["logs"]], [line["text"] for line in lines]
    assert texts == every[-len(texts) :], "the newest lines of the same log"
    assert sum(map(len, texts)) <= 20 < sum(map(len, every[-len(texts) - 1 :])), "all that fit"
    assert small["logsTruncated"] is True
    assert "logs" not in daemon.get(f"/v1/runs/{run_id}").body

    short = daemon.submit(command=["echo", "hi"])
    daemon.wait_status(short["latestRunId"])
    whole = daemon.get(f"/v1/runs/{short['latestRunId']}?include=logs").body
    assert [(line["stream"], line["text"]) for line in whole["logs"]] == [("stdout", "hi")]
    assert whole["logsTruncated"] is False

    for query, fragment in [
        ("include=events", "include: only logs"),
        ("include=logs&logBytes=0", "logBytes: between 1 and 1048576"),
        ("include=logs&logBytes=2000000", "logBytes: between 1 and 1048576"),
        ("include=logs&logBytes=lots", "logBytes: not an integer"),
        ("logBytes=100", "logBytes: only with include=logs"),
    ]:
        response = daemon.get(f"/v1/runs/{run_id}?{query}")
        assert response.status == 400, (query, response.text)
        assert fragment in response.body["error"]["message"], query


def test_a_running_runs_logs_are_read_as_they_grow(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "echo first; sleep 300"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})

    def logged() -> list[str] | None:
        texts = [
            line["text"] for line in daemon.get(f"/v1/runs/{run_id}?include=logs").body["logs"]
        ]
        return texts or None

    assert wait_until(logged, 30, "the first line") == ["first"]
    started = time.monotonic()
    daemon.post(f"/v1/runs/{run_id}/cancel", {"force": True})
    assert daemon.wait_status(run_id)["status"] == "cancelled"
    assert time.monotonic() - started < 30
