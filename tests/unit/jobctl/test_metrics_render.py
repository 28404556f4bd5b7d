"""How jobctl draws metrics (sparklines, a series' line, a top row) and lists jobs."""

from __future__ import annotations

from datetime import UTC, datetime

from jobctl.render.listing import ago, exit_or_reason, fitted, job_row
from jobctl.render.metrics import metric_lines, sparkline, top_row


def test_a_sparkline_scales_from_zero_to_the_largest_and_fits_its_width() -> None:
    assert sparkline([0, 1, 2, 4], 10) == "▁▃▅█"
    assert sparkline([0, 0], 10) == "▁▁"
    assert sparkline([], 10) == ""
    squeezed = sparkline([float(i % 5) for i in range(100)], 20)
    assert len(squeezed) == 20 and set(squeezed) == {"█"}, "the largest of each neighbourhood"


def test_each_series_gets_a_line_and_a_metric_without_series_says_why() -> None:
    doc = {
        "metrics": [
            {"name": "cpu_usage", "unit": "cores", "status": "ok", "series": [
                {"labels": {}, "values": [0.5, 1.0], "maxima": [0.6, 1.2]}]},
            {"name": "gpu_utilization", "unit": "ratio", "status": "ok", "series": [
                {"labels": {"gpu": "1"}, "values": [0.25], "maxima": [0.5]}]},
            {"name": "memory_usage", "unit": "bytes", "status": "ok", "series": []},
            {"name": "disk", "status": "unknown", "error": "no such metric", "series": []},
        ]
    }  # fmt: skip
    cpu, gpu, memory, disk = metric_lines(doc, 40)
    assert cpu.split() == ["cpu_usage", "▅█", "1.00", "cores", "last,", "1.20", "cores", "peak"]
    assert gpu.startswith("gpu_utilization gpu 1") and gpu.endswith("25% last, 50% peak")
    assert memory.endswith("no samples in this window")
    assert disk.endswith("no such metric")


def test_a_top_row_shows_use_against_the_plan() -> None:
    run = {
        "runId": "run-1", "jobId": "job-1", "user": "alice", "status": "running",
        "cpus": 2, "memoryBytes": 1024**3, "cpuUsage": 1.5, "memoryUsageBytes": 300 * 1024**2,
        "gpus": [{"index": "0"}], "startedAt": "2027-01-01T00:00:00+00:00",
    }  # fmt: skip
    now = datetime(2027, 1, 1, 1, 30, tzinfo=UTC)
    assert top_row(run, now) == (
        "run-1", "job-1", "alice", "running", "1.50/2", "300 MiB/1 GiB", "0", "1h30m"
    )  # fmt: skip
    fresh = {**run, "cpuUsage": None, "memoryUsageBytes": None, "gpus": [], "startedAt": None}
    assert top_row(fresh, now)[4:] == ("-/2", "-/1 GiB", "-", "-")


def test_listing_times_are_relative_and_statuses_coloured_only_when_asked() -> None:
    now = datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert ago("2027-01-01T11:59:15+00:00", now) == "45s ago"
    assert ago("2027-01-01T09:00:00+00:00", now) == "3h ago"
    assert ago("2026-12-25T12:00:00+00:00", now) == "7d ago"
    assert ago("2027-01-01T12:05:00+00:00", now) == "in 5m"
    assert ago(None, now) == "-"
    job = {"id": "job-1", "name": None, "image": "busybox", "status": "failed",
           "createdAt": "2027-01-01T11:00:00+00:00"}  # fmt: skip
    plain = job_row(job, now, wide=False, colour=False)
    assert plain == ("job-1", "-", "busybox", "failed", "1h ago")
    styled = job_row(job, now, wide=False, colour=True)
    assert styled[3] == "\x1b[31mfailed\x1b[0m"
    assert fitted(("JOB", "NAME", "IMAGE", "STATUS", "CREATED"), [styled], 100) == [styled]
    assert (
        exit_or_reason({"exitCode": 137, "failureReason": {"type": "oom_killed"}}) == "oom_killed"
    )
    assert exit_or_reason({"exitCode": 3, "failureReason": {"type": "exit_code"}}) == "3"
