"""Scenario 8: seeing it (issue 15). With N finished runs in the store (seeded, as scenario 4)
and Q runs queued behind a run that fills the node, one client times the dashboard's first
page (GET / with a session cookie, on the TCP port) and a Prometheus scrape (GET /metrics).
Then a run that prints the host's /proc/uptime every 100 ms is followed on its run page's
live stream: how long a printed line takes to reach the page. Last, sampling's cost: the
daemon's CPU over a minute with 50 runs running, sampled every 5 s, against the same with
sampling all but off (sample_seconds = 3600); each minute on a daemon of its own."""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from bench.daemon import IMAGE, BenchDaemon, get_json, post_json, wait_for_status
from bench.report import Report
from bench.scenarios.common import add_figure, concurrently, percentile
from bench.scenarios.submit import JOB, _fill_the_node
from bench.seed import seed

SCENARIO = "8 observe"
_add = functools.partial(add_figure, scenario=SCENARIO)
LINES = 100  # log lines timed to the run page
SAMPLED_RUNS = 50
CPU_WINDOW = 60.0
TINY_PLAN = "[plans.bench-tiny]\ncpus = 0.02\nmemory_mb = 16\n"
PRINTER = "while :; do cat /proc/uptime; usleep 100000; done"


def run(report: Report, *, n: int, queued: int, requests: int, repeats: int) -> None:
    pages, scrapes, lines, costs = [], [], [], []
    for _ in range(repeats):
        page, scrape = _store_and_queue(n, queued, requests)
        pages.append(page)
        scrapes.append(scrape)
        lines.append(asyncio.run(_log_to_page()))
        costs.append(_sampling_cost())
    p99 = [percentile(p, 99) * 1000 for p in pages]
    _add(report, f"dashboard first page p99, {n:,} runs", "ms", p99, ("< 300 ms", max(p99) < 300))
    _add(report, "dashboard first page p50", "ms", [percentile(p, 50) * 1000 for p in pages])
    s99 = [percentile(s, 99) * 1000 for s in scrapes]
    _add(report, f"/metrics scrape p99, {queued:,} queued", "ms", s99, ("< 50 ms", max(s99) < 50))
    _add(report, "/metrics scrape p50", "ms", [percentile(s, 50) * 1000 for s in scrapes])
    l99 = [percentile(x, 99) * 1000 for x in lines]
    _add(report, "log line to an open run page p99", "ms", l99, ("< 500 ms", max(l99) < 500))
    _add(
        report, "log line to an open run page p50", "ms", [percentile(x, 50) * 1000 for x in lines]
    )
    _add(
        report,
        f"sampling's CPU, {SAMPLED_RUNS} runs every 5 s",
        "% of a core",
        costs,
        ("< 1% of one core", max(costs) < 1),
    )


def _store_and_queue(n: int, queued: int, requests: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home), tcp=True)
        seed(daemon.data_dir / "jobd.db", n)
        daemon.start()
        try:
            return asyncio.run(_time_pages(daemon, queued, requests))
        finally:
            daemon.stop()


async def _time_pages(
    daemon: BenchDaemon, queued: int, requests: int
) -> tuple[list[float], list[float]]:
    async with daemon.session(12) as unix, daemon.tcp_session(4) as tcp:
        await _fill_the_node(unix)
        await concurrently(queued, 8, lambda: post_json(unix, "/v1/jobs", JOB))
        token = (daemon.data_dir / "token").read_text().strip()
        async with tcp.post("http://jobd/login", data={"token": token}, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        pages = [await _timed(tcp, "/") for _ in range(requests)]
        scrapes = [await _timed(unix, "/metrics") for _ in range(requests)]
    return pages, scrapes


async def _timed(http: aiohttp.ClientSession, path: str) -> float:
    began = time.perf_counter()
    async with http.get(f"http://jobd{path}") as response:
        await response.read()
        assert response.status == 200, path
    return time.perf_counter() - began


async def _log_to_page() -> list[float]:
    """Each printed line's way to the page: the host's uptime when the page's stream got it
    less the uptime the run printed (/proc/uptime is the host's inside a container)."""
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home))
        daemon.start()
        try:
            async with daemon.session(4) as http:
                job = await post_json(
                    http, "/v1/jobs", {"image": IMAGE, "command": ["sh", "-c", PRINTER]}
                )
                run_id = job["latestRunId"]
                await wait_for_status(http, run_id, {"running"})
                return await _follow(http, run_id)
        finally:
            daemon.stop()


async def _follow(http: aiohttp.ClientSession, run_id: str) -> list[float]:
    delays: list[float] = []
    async with http.get(f"http://jobd/live/runs/{run_id}") as stream:
        kind = ""
        async for raw in stream.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif kind == "log" and line.startswith("data: ") and ">" in line:
                text = line.split(">", 1)[1].split("<", 1)[0]
                now = time.clock_gettime(time.CLOCK_BOOTTIME)  # what /proc/uptime reads
                delays.append(max(0.0, now - float(text.split()[0])))
                if len(delays) >= LINES:
                    break
    return delays


def _sampling_cost() -> float:
    """Sampling's share of one core: the daemon's CPU over CPU_WINDOW with 50 runs sampled
    every 5 s, less the same with sampling all but off."""
    on = _daemon_cpu("[metrics]\nsample_seconds = 5\n")
    off = _daemon_cpu("[metrics]\nsample_seconds = 3600\n")
    return max(0.0, (on - off) / CPU_WINDOW * 100)


def _daemon_cpu(metrics: str) -> float:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home), config=TINY_PLAN + metrics)
        daemon.start()
        try:
            return asyncio.run(_busy_minute(daemon))
        finally:
            daemon.stop()


async def _busy_minute(daemon: BenchDaemon) -> float:
    async with daemon.session(8) as http:
        spec = {"image": IMAGE, "command": ["sleep", "3600"], "plan": "bench-tiny"}
        jobs = [await post_json(http, "/v1/jobs", spec) for _ in range(SAMPLED_RUNS)]
        for job in jobs:
            await wait_for_status(http, job["latestRunId"], {"running"})
        await asyncio.sleep(10)  # the launches' own work settles
        assert daemon.process is not None
        process = psutil.Process(daemon.process.pid)
        before = sum(process.cpu_times()[:2])
        await asyncio.sleep(CPU_WINDOW)
        used = sum(process.cpu_times()[:2]) - before
        metrics = await get_json(http, f"/v1/runs/{jobs[0]['latestRunId']}/metrics")
        assert metrics["metrics"][0]["status"] == "ok", json.dumps(metrics)
        return used
