"""Scenario 9: workflows. A blocker job takes every CPU of the node; then

- an array of ARRAY_SIZE (default 10,000) indices, parallelism 4, is created by one request,
  timed at the client (the request's round trip: the job, its 10,000 runs and their events in
  one write; target under a second);
- N jobs (default 10,000) queue behind the blocker, every other one waiting on the blocker
  (`after`, condition any), so half the queue is held by a dependency (and the array's
  9,996 runs past its parallelism are held too);
- placement passes are timed as in scenario 6 (submit and cancel, one job at a time, until
  1,000 passes were made with the queue full), from /v1/health: held runs are left out of the
  queue's index, so a pass never reads them (target p99 under 10 ms).

The daemon is then stopped with its containers (the queue is not drained: scenario 6 times
that)."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.daemon import BLOCKER_PLAN, BenchDaemon, post_json, wait_for_status
from bench.report import Report
from bench.scenarios.common import add_figure, concurrently
from bench.scenarios.scheduler import BLOCKER, JOB, _admitted_plans, _passes_with_node_full

SCENARIO = "9 workflows"
ARRAY_SIZE = 10_000
FILL_CLIENTS = 8
TARGET_MS = 10


def run(report: Report, *, queued: int, repeats: int) -> None:
    samples = [asyncio.run(_once(queued)) for _ in range(repeats)]
    create = tuple(s[0] for s in samples)
    add_figure(
        report, f"create an array of {ARRAY_SIZE:,} indices (one request)", "s", create,
        ("< 1 s", max(create) < 1.0), scenario=SCENARIO,
    )  # fmt: skip
    scale = f"{queued:,} queued, half held by a dependency, + the array"
    for figure, key in (("p50", "recentP50Ms"), ("p99", "recentP99Ms")):
        own = tuple(s[1][key] for s in samples)
        target = (f"< {TARGET_MS} ms", max(own) < TARGET_MS) if figure == "p99" else None
        add_figure(
            report, f"placement pass {figure}, {scale}", "ms", own, target, scenario=SCENARIO
        )


async def _once(queued: int) -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home))
        daemon.start()
        try:
            async with daemon.session(FILL_CLIENTS + 2) as http:
                return await _measure(http, queued)
        finally:
            daemon.stop()


async def _measure(http: aiohttp.ClientSession, queued: int) -> tuple[float, dict[str, Any]]:
    blocker = await post_json(http, "/v1/jobs", {**JOB, "plan": BLOCKER_PLAN, "command": BLOCKER})
    blocker_run = blocker["latestRunId"]
    await wait_for_status(http, blocker_run, {"running"})
    array = {**JOB, "array": {"indices": f"0-{ARRAY_SIZE - 1}", "parallelism": 4}}
    began = time.perf_counter()
    await post_json(http, "/v1/jobs", array)
    created = time.perf_counter() - began
    waiting = {**JOB, "after": [{"id": blocker_run, "condition": "any"}]}
    count = 0

    async def submit_one() -> None:
        nonlocal count
        count += 1
        await post_json(http, "/v1/jobs", waiting if count % 2 else JOB)

    await concurrently(queued, FILL_CLIENTS, submit_one)
    plans = await _admitted_plans(http)
    return created, await _passes_with_node_full(http, plans[0])
