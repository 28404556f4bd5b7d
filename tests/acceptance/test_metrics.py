"""Run metrics through the real daemon and podman: a run that burns a CPU and holds memory is
sampled from its cgroup while it runs; its series come back per metric, each with its own
status; what it used in all stays on the run; bad queries change nothing and say why.
/metrics is read back by prometheus_client's own parsers (the strict OpenMetrics one too)."""

from __future__ import annotations

import getpass
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Daemon, wait_until

pytestmark = [pytest.mark.podman, pytest.mark.acceptance]

MIB = 1024 * 1024
# 40 MiB held in the container's tmpfs (its memory cgroup counts it), then one CPU kept busy
BUSY = (
    "dd if=/dev/zero of=/dev/shm/hold bs=1M count=40 2>/dev/null;"
    " yes > /dev/null & sleep 6; kill $!"
)


def metric(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["metrics"] if m["name"] == name)


@pytest.fixture
def sampled(daemon_factory: Any) -> Daemon:
    return daemon_factory(config="[metrics]\nsample_seconds = 1\n")


def test_a_busy_run_is_sampled_live_and_keeps_its_usage(sampled: Daemon) -> None:
    job = sampled.submit(command=["sh", "-c", BUSY])
    run_id = job["latestRunId"]

    def live() -> dict[str, Any] | None:
        doc = sampled.get(f"/v1/runs/{run_id}/metrics?names=cpu_usage,memory_usage").body
        points = metric(doc, "cpu_usage")["series"]
        if points and len(points[0]["values"]) >= 2 and max(points[0]["values"]) > 0.5:
            return doc
        return None

    doc = wait_until(live, 20, "two CPU samples of a busy run while it runs")
    assert sampled.run(run_id)["status"] == "running", "sampled live, not after the fact"
    assert [m["status"] for m in doc["metrics"]] == ["ok", "ok"]
    assert metric(doc, "cpu_usage")["unit"] == "cores"
    memory = metric(doc, "memory_usage")
    assert memory["unit"] == "bytes"
    assert max(memory["series"][0]["maxima"]) >= 38 * MIB, memory

    run = sampled.wait_status(run_id)
    assert run["status"] == "succeeded", sampled.logs_text(run_id)
    usage = run["usage"]
    assert usage["samples"] >= 4, usage
    assert usage["cpuSeconds"] >= 3, usage
    assert 0.5 < usage["peakCpu"] < 1.5, usage
    assert 0.3 < usage["averageCpu"] <= usage["peakCpu"], usage
    assert usage["peakMemoryBytes"] >= 38 * MIB, usage

    whole = sampled.get(f"/v1/runs/{run_id}/metrics").body
    assert [m["name"] for m in whole["metrics"]] == [
        "cpu_usage", "memory_usage", "gpu_utilization", "gpu_memory_usage"
    ]  # fmt: skip
    gpu = metric(whole, "gpu_utilization")
    assert (gpu["status"], gpu["series"]) == ("unavailable", []), "a CPU run has no GPU series"
    assert whole["step"] == 4, "an hour at most 1000 points: a point per 4 s"
    cpu = metric(whole, "cpu_usage")["series"][0]
    assert cpu["runId"] == run_id and cpu["labels"] == {}
    assert len(cpu["timestamps"]) == len(cpu["values"]) == len(cpu["maxima"]) >= 2
    assert all(m >= v for v, m in zip(cpu["values"], cpu["maxima"], strict=True))

    shown = sampled.jobctl("metrics", job["id"])  # a job id: its latest run
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{run_id}  succeeded"
    assert "CPU-seconds" in lines[1] and "cores on average" in lines[1]
    chart = next(line for line in lines if line.startswith("cpu_usage"))
    assert "█" in chart and "cores peak" in chart, shown.stdout
    assert any(line.startswith("memory_usage") and "MiB peak" in line for line in lines)
    assert any("no GPU was assigned" in line for line in lines)


def test_job_metrics_span_its_runs_and_each_metric_has_its_own_status(sampled: Daemon) -> None:
    job = sampled.submit(command=["sh", "-c", "yes > /dev/null & sleep 3; kill $!"])
    first = sampled.wait_status(job["latestRunId"])
    second = sampled.wait_status(sampled.post(f"/v1/jobs/{job['id']}/runs").body["id"])
    assert first["status"] == second["status"] == "succeeded"

    doc = sampled.get(f"/v1/jobs/{job['id']}/metrics?names=cpu_usage,disk_io&step=60").body
    assert doc["jobId"] == job["id"] and not doc["truncated"]
    assert sorted(doc["runIds"]) == sorted([first["id"], second["id"]])
    assert doc["step"] == 60
    cpu, unknown = doc["metrics"]
    assert cpu["status"] == "ok"
    assert sorted(s["runId"] for s in cpu["series"]) == sorted(doc["runIds"])
    assert all(len(s["values"]) <= 2 for s in cpu["series"]), "a point a minute"
    assert (unknown["name"], unknown["status"]) == ("disk_io", "unknown")
    assert "cpu_usage" in unknown["error"]


@pytest.mark.parametrize(
    "query, message",
    [
        ("since=0", "since"),
        ("since=60&start=2026-01-01T00:00:00Z", "one of them"),
        ("start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z", "before end"),
        ("step=0", "step"),
        ("step=many", "step"),
        ("start=yesterday", "RFC 3339"),
        ("names=", "names"),
        ("window=1h", "unknown query parameters"),
    ],
)
def test_bad_metric_queries_are_refused(daemon: Daemon, query: str, message: str) -> None:
    job = daemon.submit(command=["true"])
    response = daemon.get(f"/v1/runs/{job['latestRunId']}/metrics?{query}")
    assert response.status == 400, response.text
    assert message in response.body["error"]["message"]
    assert daemon.get("/v1/runs/run-nope/metrics").status == 404


def scrape(daemon: Daemon, headers: dict[str, str]) -> tuple[int, str, str]:
    request = urllib.request.Request(f"{daemon.url}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


def samples(text: str, parse: Any = text_string_to_metric_families) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for family in parse(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_prometheus_scrapes_live_state_behind_the_apis_authentication(sampled: Daemon) -> None:
    job = sampled.submit(command=["sh", "-c", "yes > /dev/null & sleep 30; kill $!"])
    run_id = job["latestRunId"]
    sampled.wait_status(run_id, {"running"})
    bearer = {"Authorization": f"Bearer {sampled.token}"}

    def sampled_once() -> dict[str, list[Any]] | None:
        status, _, text = scrape(sampled, bearer)
        assert status == 200, text
        found = samples(text)
        return found if "jobd_run_cpu_usage_cores" in found else None

    found = wait_until(sampled_once, 15, "the running run's CPU in /metrics")
    by_labels = {s.labels.get("status"): s.value for s in found["jobd_runs"]}
    assert by_labels["running"] == 1 and by_labels["pending"] == 0
    (cpu,) = found["jobd_run_cpu_usage_cores"]
    assert cpu.labels["run_id"] == run_id and cpu.labels["job_id"] == job["id"]
    assert cpu.value > 0.3
    assert [s.value for s in found["jobd_user_running_runs"]] == [1]
    assert found["jobd_node_cpus"][0].value >= 1
    assert found["jobd_allocated_cpus"][0].value > 0
    assert found["jobd_queue_length"][0].value == 0
    assert found["jobd_store_bytes"][0].value > 0
    assert found["jobd_placement_pass_seconds_count"][0].value >= 1
    submits = [
        s for s in found["jobd_http_requests_total"]
        if s.labels == {"method": "POST", "route": "/v1/jobs", "status": "201"}
    ]  # fmt: skip
    assert [s.value for s in submits] == [1.0]
    assert any(
        s.labels["route"] == "/metrics" for s in found["jobd_http_request_duration_seconds_count"]
    )

    status, content_type, text = scrape(
        sampled, {**bearer, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    strict = samples(text, openmetrics_families)  # the strict parser: # EOF and all
    assert "jobd_log_bytes_total" in strict

    status, _, text = scrape(sampled, {})
    assert status == 401, "behind the same authentication as the API"

    frame = sampled.jobctl("top", "--once")
    assert frame.returncode == 0, frame.stderr
    header, row = frame.stdout.splitlines()
    assert header.split() == ["RUN", "JOB", "USER", "STATUS", "CPU", "MEMORY", "GPUS", "ELAPSED"]
    assert row.split()[:4] == [run_id, job["id"], getpass.getuser(), "running"]
    assert float(row.split()[4].split("/")[0]) > 0.3, row
    sampled.post(f"/v1/runs/{run_id}/cancel")
    assert sampled.wait_status(run_id)["status"] == "cancelled"
