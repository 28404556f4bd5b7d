"""A real jobd process, real podman containers, driven through jobctl and HTTP as a user would."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support import TEST_IMAGE, Daemon, removed_soon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]


def test_run_wait_prints_only_ids_and_exits_with_the_container_code(daemon: Daemon) -> None:
    result = daemon.jobctl(
        "run", "--wait", "--network", "none", TEST_IMAGE, "--", "sh", "-c", "echo hi; exit 3"
    )
    assert result.returncode == 3, result.stderr
    job_id, run_id = result.stdout.split()
    assert job_id.startswith("job-") and run_id.startswith("run-")
    assert result.stdout == f"{job_id} {run_id}\n"
    assert result.stderr == f"jobctl: run {run_id} failed: exit_code: exited with code 3\n"
    logs = daemon.jobctl("logs", job_id)
    assert logs.returncode == 0 and logs.stdout == "hi\n"
    run = daemon.run(run_id)
    assert run["status"] == "failed"
    assert run["exitCode"] == 3
    assert run["failureReason"]["type"] == "exit_code"
    assert daemon.get(f"/v1/jobs/{job_id}").body["status"] == "failed"


def test_a_job_succeeds_with_its_output_in_the_logs_and_a_cost(daemon: Daemon) -> None:
    job = daemon.submit(
        command=["sh", "-c", "echo out; echo err >&2; sleep 1.2"],
        env={"GREETING": "hello"},
        name="first",
        labels={"team": "a"},
        plan="starter",
    )
    run = daemon.wait_status(job["latestRunId"])
    assert run["status"] == "succeeded" and run["exitCode"] == 0
    assert run["failureReason"] is None
    assert run["startedAt"] and run["finishedAt"] >= run["startedAt"]
    assert run["cost"]["amount"] == pytest.approx(7.0 * 1 / (30 * 86400), abs=1e-6)
    lines = daemon.get(f"/v1/runs/{run['id']}/logs").body["lines"]
    assert [(line["stream"], line["text"]) for line in lines] == [
        ("stdout", "out"),
        ("stderr", "err"),
    ]
    assert removed_soon(run["id"]), "finished containers are removed"


def test_start_command_and_env_reach_the_container(daemon: Daemon) -> None:
    job = daemon.submit(startCommand='echo "$GREETING from $0"', env={"GREETING": "hello"})
    run = daemon.wait_status(job["latestRunId"])
    assert run["status"] == "succeeded"
    assert daemon.logs_text(run["id"]) == "hello from /bin/sh\n"


def test_plan_memory_limit_is_visible_inside_and_exceeding_it_is_oom_killed(
    daemon: Daemon,
) -> None:
    job = daemon.submit(
        plan="starter",
        command=[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
            " || cat /sys/fs/cgroup/memory.max",
        ],
    )
    run = daemon.wait_status(job["latestRunId"])
    assert daemon.logs_text(run["id"]).strip() == str(512 * 1024 * 1024)
    assert run["limits"]["memoryBytes"] == 512 * 1024 * 1024
    assert run["limits"]["enforced"] is True

    limits = daemon.submit(
        plan="starter",
        command=[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
            " /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/cpu.max"
            " /sys/fs/cgroup/pids.max; ulimit -n; ulimit -u",
        ],
    )
    run = daemon.wait_status(limits["latestRunId"])
    seen = daemon.logs_text(run["id"]).split()
    quota, period, pids, nofile, nproc = seen  # v1: two files for cpu; v2: cpu.max's pair
    assert int(quota) / int(period) == 0.5, "starter: half a CPU"
    assert (pids, nofile, nproc) == ("4096", "4096", "4096")

    hog = daemon.submit(
        plan="starter",
        command=["sh", "-c", "echo allocating; dd if=/dev/zero of=/dev/null bs=700M count=1"],
    )
    run = daemon.wait_status(hog["latestRunId"], timeout=120)
    assert run["status"] == "failed"
    assert run["failureReason"]["type"] == "oom_killed", run


def test_timeout_stops_the_container_and_fails_the_run(daemon_factory: DaemonFactory) -> None:
    daemon = daemon_factory(config="stop_grace_seconds = 1\n")
    job = daemon.submit(command=["sleep", "300"], timeoutSeconds=2)
    run = daemon.wait_status(job["latestRunId"], timeout=30)
    assert run["status"] == "failed"
    assert run["failureReason"]["type"] == "timeout"
    assert 2 <= run["runningSeconds"] < 10
    assert removed_soon(run["id"])


def test_cancel_a_running_run_then_cancel_again_is_a_conflict(daemon: Daemon) -> None:
    job = daemon.submit(command=["sleep", "300"])
    run_id = job["latestRunId"]
    daemon.wait_status(run_id, {"running"})
    result = daemon.jobctl("cancel", run_id)
    assert result.returncode == 0, result.stderr
    run = daemon.wait_status(run_id, timeout=30)
    assert run["status"] == "cancelled"
    assert run["failureReason"]["type"] == "cancelled"
    again = daemon.post(f"/v1/runs/{run_id}/cancel")
    assert again.status == 409
    assert again.body["error"]["code"] == "conflict"
    assert daemon.jobctl("cancel", run_id).returncode == 1


def test_a_queued_run_waits_for_room_and_a_cancelled_one_never_starts(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(config="[plans.whole-node]\nmemory_mb = 256\ncpus = 2\n")
    blocker = daemon.submit(plan="whole-node", command=["sleep", "300"])
    daemon.wait_status(blocker["latestRunId"], {"running"})
    queued = daemon.submit(plan="whole-node", command=["echo", "ran"])
    cancelled = daemon.submit(plan="whole-node", command=["echo", "never"])
    time.sleep(1)
    assert daemon.run(queued["latestRunId"])["status"] == "pending"
    response = daemon.post(f"/v1/runs/{cancelled['latestRunId']}/cancel")
    assert response.status == 202 and response.body["status"] == "cancelled"
    daemon.post(f"/v1/runs/{blocker['latestRunId']}/cancel")
    assert daemon.wait_status(queued["latestRunId"])["status"] == "succeeded"
    never = daemon.run(cancelled["latestRunId"])
    assert never["status"] == "cancelled" and never["startedAt"] is None
    assert [e["to"] for e in daemon.events(never["id"])] == ["pending", "cancelled"]


def test_cancel_racing_the_exit_ends_each_run_exactly_once(daemon: Daemon) -> None:
    runs = []
    for delay in ("0.3", "0.5", "0.7", "0.9"):
        job = daemon.submit(command=["sleep", delay], plan="starter")
        runs.append(job["latestRunId"])
    for run_id in runs:
        daemon.wait_status(run_id, {"running", *{"succeeded"}})
    time.sleep(0.2)
    answers = [daemon.post(f"/v1/runs/{run_id}/cancel").status for run_id in runs]
    assert set(answers) <= {202, 409}
    for run_id, answer in zip(runs, answers, strict=True):
        # well under the 30 s reconcile: the supervisor itself must settle the race
        run = daemon.wait_status(run_id, timeout=10)
        terminal = [
            e for e in daemon.events(run_id) if e["to"] in {"succeeded", "failed", "cancelled"}
        ]
        assert len(terminal) == 1, terminal
        expected = "cancelled" if answer == 202 else "succeeded"
        assert run["status"] == expected


def test_rerun_runs_the_same_spec_again_and_runs_list_newest_first(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "echo again"])
    first = daemon.wait_status(job["latestRunId"])
    result = daemon.jobctl("rerun", job["id"], "--wait")
    assert result.returncode == 0, result.stderr
    second_id = result.stdout.split()[-1]
    assert second_id != first["id"]
    runs = daemon.get(f"/v1/jobs/{job['id']}/runs").body["runs"]
    assert [r["id"] for r in runs] == [second_id, first["id"]]
    assert daemon.logs_text(second_id) == "again\n"


def test_image_not_found_fails_with_that_reason(daemon: Daemon) -> None:
    job = daemon.submit(image="localhost/no-such-image:1", command=["true"])
    run = daemon.wait_status(job["latestRunId"], timeout=60)
    assert run["status"] == "failed"
    assert run["failureReason"]["type"] == "image_not_found"


def test_the_embedded_default_image_is_built_on_first_use(daemon: Daemon) -> None:
    job = daemon.submit(image="localhost/jobd/busybox:latest", command=["sh", "-c", "echo ok"])
    run = daemon.wait_status(job["latestRunId"], timeout=120)
    assert run["status"] == "succeeded", run
    assert daemon.logs_text(run["id"]) == "ok\n"


def test_follow_streams_lines_until_the_run_ends(daemon: Daemon) -> None:
    result = daemon.jobctl(
        "run",
        "--follow",
        "--network",
        "none",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["line1", "line2", "line3"]  # the run's alone
    assert result.stderr.startswith("job-")  # the ids: on stderr while following


def test_logs_filter_tail_and_since(daemon: Daemon) -> None:
    job = daemon.submit(command=["sh", "-c", "seq 1 20; sleep 1.1; echo late"])
    run = daemon.wait_status(job["latestRunId"])
    run_id = run["id"]
    assert daemon.logs_text(run_id, "&filter=1") == "1\n10\n11\n12\n13\n14\n15\n16\n17\n18\n19\n"
    assert daemon.logs_text(run_id, "&tail=2") == "20\nlate\n"
    body = daemon.get(f"/v1/runs/{run_id}/logs?limit=5").body
    assert [line["text"] for line in body["lines"]] == ["1", "2", "3", "4", "5"]
    assert body["truncated"] is True
    last = daemon.get(f"/v1/runs/{run_id}/logs?tail=1").body["lines"][0]
    since = daemon.get(f"/v1/runs/{run_id}/logs?since={last['time'].replace('+', '%2B')}")
    assert [line["text"] for line in since.body["lines"]] == ["late"]
    grep = daemon.jobctl("logs", run_id, "--grep", "late")
    assert grep.stdout == "late\n"


def test_logs_are_bounded_but_keep_their_beginning_and_end(
    daemon_factory: DaemonFactory,
) -> None:
    daemon = daemon_factory(
        config=("[logs]\nmax_bytes = 262144\nhead_bytes = 65536\nsegment_bytes = 65536\n")
    )
    job = daemon.submit(command=["seq", "1", "200000"])
    run = daemon.wait_status(job["latestRunId"], timeout=120)
    assert run["status"] == "succeeded"
    text = daemon.logs_text(run["id"], "&limit=100000")
    lines = text.splitlines()
    assert lines[:3] == ["1", "2", "3"], "the beginning is kept"
    assert lines[-1] == "200000", "the end is kept"
    markers = [line for line in lines if line.startswith("[jobd]") and "omitted" in line]
    assert len(markers) == 1
    log_dir = daemon.data_dir / "logs" / run["id"]
    on_disk = sum(p.stat().st_blocks * 512 for p in log_dir.glob("*.log"))  # holes are free
    assert on_disk <= 262144 + 65536 + 2 * 4096, "kept, plus a block at each edge of the hole"
    middle = lines[lines.index(markers[0]) + 1 :]
    numbers = [int(n) for n in lines[: lines.index(markers[0])]] + [int(n) for n in middle]
    assert numbers == sorted(numbers), "nothing is duplicated or reordered"


def test_list_jobs_filters_and_paginates(daemon: Daemon) -> None:
    ids = [
        daemon.submit(command=["true"], labels={"batch": "x" if i % 2 else "y"})["id"]
        for i in range(5)
    ]
    for job_id in ids:
        daemon.wait_status(daemon.get(f"/v1/jobs/{job_id}").body["latestRunId"])
    page1 = daemon.get("/v1/jobs?limit=2").body
    page2 = daemon.get(f"/v1/jobs?limit=2&cursor={page1['nextCursor']}").body
    page3 = daemon.get(f"/v1/jobs?limit=2&cursor={page2['nextCursor']}").body
    seen = [j["id"] for j in page1["jobs"] + page2["jobs"] + page3["jobs"]]
    assert seen == list(reversed(ids)) and page3["nextCursor"] is None
    labelled = daemon.get("/v1/jobs?label=batch%3Dx").body["jobs"]
    assert sorted(j["id"] for j in labelled) == sorted(ids[1::2])
    assert len(daemon.get("/v1/jobs?status=succeeded").body["jobs"]) == 5
    assert daemon.get("/v1/jobs?status=running").body["jobs"] == []
    table = daemon.jobctl("ls")
    assert table.returncode == 0 and ids[0] in table.stdout
    as_json = json.loads(daemon.jobctl("ls", "--json").stdout)
    listed = as_json["jobs"] if isinstance(as_json, dict) else as_json
    assert {j["id"] for j in listed} == set(ids)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"command": ["true"]}, "image"),
        ({"image": TEST_IMAGE, "command": []}, "command"),
        ({"image": TEST_IMAGE, "command": [""]}, "command"),
        ({"image": TEST_IMAGE, "startCommand": "  "}, "startCommand"),
        ({"image": TEST_IMAGE, "command": ["true"], "startCommand": "true"}, "not both"),
        ({"image": TEST_IMAGE, "plan": "galactic"}, "unknown plan"),
        ({"image": TEST_IMAGE, "timeoutSeconds": -5}, "timeoutSeconds"),
        ({"image": TEST_IMAGE, "bogus": 1}, "bogus"),
        ({"image": "Not A/valid::ref"}, "not a valid image reference"),
        ({"image": TEST_IMAGE, "env": {"1BAD": "x"}}, "env"),
        ({"image": TEST_IMAGE, "labels": {"k": 5}}, "labels"),
        ([1, 2], "body"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    daemon: Daemon, body: object, fragment: str
) -> None:
    response = daemon.request("POST", "/v1/jobs", body)
    assert response.status == 400, response.text
    assert fragment in response.body["error"]["message"]
    assert response.body["error"]["code"] == "invalid_request"
    assert daemon.get("/v1/jobs").body["jobs"] == []


def test_malformed_oversize_and_too_large_requests(daemon: Daemon) -> None:
    bad_json = daemon.request("POST", "/v1/jobs", raw=b"{not json")
    assert bad_json.status == 400 and "invalid JSON" in bad_json.body["error"]["message"]
    huge = daemon.request("POST", "/v1/jobs", raw=b'{"image": "' + b"a" * 2_000_000 + b'"}')
    assert huge.status == 413 and huge.body["error"]["code"] == "body_too_large"
    too_big = daemon.request("POST", "/v1/jobs", {"image": TEST_IMAGE, "plan": "pro-ultra"})
    assert too_big.status == 422 and too_big.body["error"]["code"] == "plan_exceeds_node"
    assert "this machine has" in too_big.body["error"]["message"]
    assert daemon.get("/v1/runs/run-nope").status == 404
    assert daemon.get("/v1/jobs?status=sleeping").status == 400
    assert daemon.get("/v1/jobs").body["jobs"] == []


def test_tcp_needs_the_bearer_token(daemon: Daemon) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{daemon.url}/v1/health", timeout=5)
    refused.value.close()
    assert refused.value.code == 401
    request = urllib.request.Request(
        f"{daemon.url}/v1/jobs", headers={"Authorization": f"Bearer {daemon.token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response) == {"jobs": [], "nextCursor": None}
    for header in (f"bearer {daemon.token}", f"BEARER  {daemon.token}"):  # RFC 7235
        cased = urllib.request.Request(f"{daemon.url}/v1/jobs", headers={"Authorization": header})
        with urllib.request.urlopen(cased, timeout=5) as response:
            assert response.status == 200
    for header in (f"Bearer {daemon.token.upper()}x", f"Basic {daemon.token}", daemon.token):
        wrong = urllib.request.Request(f"{daemon.url}/v1/jobs", headers={"Authorization": header})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=5)
        refused.value.close()
        assert refused.value.code == 401, header
    token_mode = (daemon.data_dir / "token").stat().st_mode & 0o777
    assert token_mode == 0o600
    assert daemon.socket.stat().st_mode & 0o777 == 0o660
    over_tcp = daemon.jobctl("--url", daemon.url, "--data-dir", str(daemon.data_dir), "plans")
    assert over_tcp.returncode == 0 and "standard" in over_tcp.stdout


def test_owner_is_the_unix_peer(daemon: Daemon) -> None:
    job = daemon.submit(command=["true"])
    assert job["owner"] == {"uid": 0, "user": "root", "via": "unix"}


def test_plans_health_and_openapi(daemon: Daemon) -> None:
    plans = {p["id"]: p for p in daemon.get("/v1/plans").body["plans"]}
    assert plans["standard"]["memoryBytes"] == 2048 * 1024 * 1024
    assert plans["starter"]["pricePerMonth"] == 7.0
    assert plans["pro-ultra"]["pricePerMonth"] is None

    def health_after_a_pass() -> Any:
        body = daemon.get("/v1/health").body
        return body if body["scheduler"]["passes"] else None

    # the supervisor's first step (at start) times a pass, just after jobd starts serving
    health = wait_until(health_after_a_pass, 10, "the first placement pass")
    assert health["status"] == "ok" and health["podman"]["reachable"] is True
    assert health["limits"]["enforced"] is True
    scheduler = health["scheduler"]
    assert scheduler["passes"] > 0 and scheduler["slowestPassMs"] >= scheduler["recentP50Ms"] > 0
    assert scheduler["waited"]["recentP99Ms"] >= scheduler["waited"]["recentP50Ms"] > 0
    spec = daemon.get("/v1/openapi.json").body
    assert spec["openapi"].startswith("3.")
    assert "/v1/runs/{runId}/cancel" in spec["paths"]
    assert daemon.jobctl("health").returncode == 0
