"""Scenario 4: the store at scale. With N finished runs recorded (default 100,000: seeded into
the SQLite file before the daemon starts, see bench/seed.py), one client times the list
endpoints one request at a time: GET /v1/jobs unfiltered, by status, by a common label (a fifth
of the jobs), by a selective label (100 of the oldest jobs), by a one-day creation window, every
page of the whole list in turn (cursor pagination), and every page of one job's 1,000 runs (GET
/v1/jobs/{id}/runs); then runs across jobs (GET /v1/runs, everyone's): unfiltered, by status,
by each label, by a trigger no run has (a walk of the whole index), and every page in turn.
Then `jobctl ls --all-users` as an admin runs it, the daemon's
start time with that store (and, for reference, with an empty one), and its RSS after the
queries. Each repeat restarts the same daemon on the same store."""

from __future__ import annotations

import asyncio
import functools
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bench.daemon import BIN, BenchDaemon, get_json
from bench.report import Report
from bench.scenarios.common import add_figure, command_runner, concurrently, percentile
from bench.seed import Seeded, seed

SCENARIO = "4 store"
_add = functools.partial(add_figure, scenario=SCENARIO)
PAGE = 50  # the API's default page size
JOBCTL_RUNS = 20
# everyone's: the seeded jobs are other users' (the daemon's own user is an admin)
JOBS = "/v1/jobs?allUsers=true"
RUNS = "/v1/runs?allUsers=true"
MB = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    name: str  # as the figure names it
    path: str
    walk: bool = False  # follow nextCursor, from the first page again after the last
    count: int | None = None  # requests to time; None: --store-requests


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One repeat's measurements."""

    latencies: dict[str, list[float]]  # per query name, seconds
    jobctl: list[float]
    start: float
    start_empty: float
    rss: int


def run(report: Report, *, n: int, requests: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home) / "full")
        seeded = seed(daemon.data_dir / "jobd.db", n)
        samples = [
            _repeat(daemon, seeded, requests, Path(home) / f"empty-{i}") for i in range(repeats)
        ]
    _figures(report, samples, seeded)


def _repeat(daemon: BenchDaemon, seeded: Seeded, requests: int, empty_home: Path) -> Sample:
    empty = BenchDaemon(empty_home)
    try:
        start_empty = empty.start()
    finally:
        empty.stop()
    start = daemon.start()
    try:
        latencies = asyncio.run(_time_queries(daemon, seeded, requests))
        command = [str(BIN / "jobctl"), "ls", "--all-users"]
        runner = command_runner(command, {"JOBD_SOCKET": str(daemon.socket)})
        _, jobctl = asyncio.run(concurrently(JOBCTL_RUNS, 1, runner))
        rss = daemon.rss_bytes()
    finally:
        daemon.stop()
    return Sample(latencies=latencies, jobctl=jobctl, start=start, start_empty=start_empty, rss=rss)


def _queries(seeded: Seeded) -> list[Query]:
    middle = datetime.fromtimestamp((seeded.oldest + seeded.newest) / 2, UTC)
    window = urlencode(
        {
            "createdAfter": middle.isoformat(),
            "createdBefore": (middle + timedelta(days=1)).isoformat(),
        }
    )
    return [
        Query(name="GET /v1/jobs", path=JOBS),
        Query(name="GET /v1/jobs?status=failed", path=f"{JOBS}&status=failed"),
        Query(name="GET /v1/jobs?label (1 job in 5)", path=f"{JOBS}&label=team%3Dteam-1"),
        Query(name="GET /v1/jobs?label (100 oldest jobs)", path=f"{JOBS}&label=batch%3Db0"),
        Query(name="GET /v1/jobs?createdAfter&createdBefore (1 day)", path=f"{JOBS}&{window}"),
        Query(
            name="GET /v1/jobs, every page (cursor)",
            path=JOBS,
            walk=True,
            count=math.ceil(seeded.jobs / PAGE),  # the whole list, once
        ),
        Query(
            name=f"GET /v1/jobs/{{id}}/runs, every page of {seeded.many_runs:,} runs",
            path=f"/v1/jobs/{seeded.many_runs_job}/runs",
            walk=True,
        ),
        Query(name="GET /v1/runs", path=RUNS),
        Query(name="GET /v1/runs?status=failed", path=f"{RUNS}&status=failed"),
        Query(name="GET /v1/runs?label (1 job in 5)", path=f"{RUNS}&label=team%3Dteam-1"),
        Query(name="GET /v1/runs?label (100 oldest jobs)", path=f"{RUNS}&label=batch%3Db0"),
        Query(name="GET /v1/runs?trigger (no run)", path=f"{RUNS}&trigger=schedule"),
        Query(
            name="GET /v1/runs, every page (cursor)",
            path=RUNS,
            walk=True,
            count=math.ceil(seeded.runs / PAGE),
        ),
    ]


async def _time_queries(
    daemon: BenchDaemon, seeded: Seeded, requests: int
) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {}
    async with daemon.session(4) as http:
        for query in _queries(seeded):
            latencies[query.name] = await _time_query(http, query, query.count or requests)
        await _check_walk(http, seeded)
    return latencies


async def _time_query(http: aiohttp.ClientSession, query: Query, count: int) -> list[float]:
    latencies: list[float] = []
    cursor: str | None = None
    while len(latencies) < count:
        path = query.path
        if cursor:
            path += ("&" if "?" in path else "?") + urlencode({"cursor": cursor})
        began = time.perf_counter()
        page = await get_json(http, path)
        latencies.append(time.perf_counter() - began)
        cursor = page["nextCursor"] if query.walk else None
    return latencies


async def _check_walk(http: aiohttp.ClientSession, seeded: Seeded) -> None:
    """The whole list, at the largest page size, holds every seeded job exactly once: what
    was timed was the real thing."""
    listed: list[str] = []
    cursor: str | None = None
    while True:
        query = {"allUsers": "true", "limit": 1000, **({"cursor": cursor} if cursor else {})}
        page: dict[str, Any] = await get_json(http, f"/v1/jobs?{urlencode(query)}")
        listed += (job["id"] for job in page["jobs"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    if len(listed) != seeded.jobs or len(set(listed)) != seeded.jobs:
        raise RuntimeError(
            f"GET /v1/jobs listed {len(listed)} jobs ({len(set(listed))} distinct);"
            f" {seeded.jobs} were seeded"
        )


def _figures(report: Report, samples: list[Sample], seeded: Seeded) -> None:
    scale = f"{seeded.runs:,} runs"
    for name in samples[0].latencies:
        for pct in (50, 99):
            values = tuple(percentile(s.latencies[name], pct) * 1000 for s in samples)
            target = ("< 20 ms", max(values) < 20) if pct == 99 else None
            _add(report, f"{name} p{pct}, {scale}", "ms", values, target)
    jobctl = tuple(percentile(s.jobctl, 50) * 1000 for s in samples)
    _add(report, "jobctl ls wall time p50", "ms", jobctl, system="jobctl")
    starts = tuple(s.start for s in samples)
    _add(report, f"daemon start, {scale}", "s", starts, ("< 2 s", max(starts) < 2))
    _add(report, "daemon start, empty store", "s", tuple(s.start_empty for s in samples))
    rss = tuple(s.rss / MB for s in samples)
    _add(report, f"daemon RSS after the queries, {scale}", "MB", rss, ("< 150 MB", max(rss) < 150))
