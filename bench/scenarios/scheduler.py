"""Scenario 6: the scheduler with a long queue. A blocker job takes every CPU of the node, then
N jobs (default 10,000) of mixed plans (every plan the node admits, drawn at random) queue behind
it. jobd times each placement pass and serves the figures at GET /v1/health ("scheduler":
percentiles over the last 1,000 passes, the slowest of its lifetime): the pass's own time (its
reads, decision and writes, in the store's writer: the target) and, beside it, the time the
supervisor waited for it (the writer busy with other writes, the event loop with other work,
and on 2 cores, podman starting containers). Two windows of 1,000 passes each are read:

- node full: the bench submits a job (each submission wakes the supervisor: one pass) and
  cancels it again (a pending run's cancel does not wake it), so the queue stays at N, until
  1,000 passes have been timed since the queue was full;
- draining: the blocker is cancelled (it exits on SIGTERM at once) and the queue's `true` jobs
  run, a few at a time; every exit frees capacity and the next pass places work, every launch
  wakes one more. The window is read once 1,000 passes have been timed since the cancel, with
  the queue still about N long.

The slowest pass of the daemon's lifetime (queue filling and draining included) is read last.

Quotas and fair share are on (issue 14): the daemon has quotas that every run is checked
against, and the queue is spread over OWNERS users, with 28 days of use each to weigh. The
bench's client is one user, so once the queue is full the bench spreads its runs over OWNERS
owners in the database itself (a pass reads `runs.owner_uid`; the jobs, and so who each run is
on the host, stay the bench user's) and writes their use (`use_days`). Each pass then merges
OWNERS queues, read from their own index, and checks each run it looks at against quotas.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.daemon import BLOCKER_PLAN, IMAGE, BenchDaemon, get_json, post_json, wait_for_status
from bench.report import Report
from bench.scenarios.common import add_figure, concurrently
from jobd.scheduler.passes import RECENT_PASSES

SCENARIO = "6 scheduler"
JOB = {"image": IMAGE, "command": ["true"], "network": "none"}
# sh as PID 1 ignores SIGTERM unless it traps it: without the trap a cancel waits out the grace
BLOCKER = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
CHECK_EVERY = 100  # pairs of submit + cancel between readings of /v1/health
OWNERS = 20  # the queue's runs are spread over this many users
FIRST_UID = 60000
QUOTAS = """
[quotas.default]
max_running = 4
max_queued = 1000000
max_gpus = 8
gpu_hours_per_day = 1000
"""
FILL_CLIENTS = 8
TARGET_MS = 10
DRAIN_SECONDS = 900


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    windows: dict[str, dict[str, Any]]  # window -> /v1/health's scheduler figures then
    slowest: float  # ms
    slowest_waited: float  # ms


def run(report: Report, *, queued: int, repeats: int) -> None:
    samples = [asyncio.run(_once(queued)) for _ in range(repeats)]
    _figures(report, samples, queued)


async def _once(queued: int) -> Sample:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home), config=QUOTAS)
        daemon.start()
        try:
            async with daemon.session(FILL_CLIENTS + 2) as http:
                return await _measure(http, queued, daemon.data_dir / "jobd.db")
        finally:
            daemon.stop()


async def _measure(http: aiohttp.ClientSession, queued: int, database: Path) -> Sample:
    blocker = await post_json(http, "/v1/jobs", {**JOB, "plan": BLOCKER_PLAN, "command": BLOCKER})
    await wait_for_status(http, blocker["latestRunId"], {"running"})
    plans = await _admitted_plans(http)
    head, tail = await _queue(http, queued, plans)
    await asyncio.to_thread(_spread_owners, database, head, tail)
    full = await _passes_with_node_full(http, plans[0])
    windows = {"node full": full}
    draining = await _passes_while_draining(http, blocker["latestRunId"], tail)
    if draining is not None:
        windows["draining"] = draining
    if await _pending(http, head):
        raise RuntimeError("the queue did not drain: its head is still pending")
    last = await _scheduler(http)
    return Sample(
        windows=windows,
        slowest=last["slowestPassMs"],
        slowest_waited=last["waited"]["slowestMs"],
    )


async def _admitted_plans(http: aiohttp.ClientSession) -> list[str]:
    """Every plan that fits the node (the API refuses the others), but the blocker's."""
    node = (await get_json(http, "/v1/health"))["node"]
    plans = (await get_json(http, "/v1/plans"))["plans"]
    return [
        p["id"]
        for p in plans
        if p["cpus"] <= node["cpus"]
        and p["memoryBytes"] <= node["memoryBytes"]
        and p["id"] != BLOCKER_PLAN
    ]


async def _queue(http: aiohttp.ClientSession, queued: int, plans: list[str]) -> tuple[str, str]:
    """Queue `queued` (at least 2) jobs of random plans; the ids of the runs at the head and
    at the end of the queue."""
    rng = random.Random(6)

    async def submit() -> str:
        job = await post_json(http, "/v1/jobs", {**JOB, "plan": rng.choice(plans)})
        return str(job["latestRunId"])

    async def submit_one() -> None:
        await submit()

    head = await submit()
    await concurrently(queued - 2, FILL_CLIENTS, submit_one)
    return head, await submit()


def _spread_owners(database: Path, head: str, tail: str) -> None:
    """Give the queued runs OWNERS owners, in turn, and each owner 28 days of use, more for
    each next one: the head goes to the first (who used least: it starts first, as the
    drain expects) and the tail to the last (who used most: it starts last)."""
    db = sqlite3.connect(database, timeout=60)
    try:
        with db:
            db.execute(
                f"UPDATE runs SET owner_uid = {FIRST_UID} + rowid % {OWNERS}"
                " WHERE status = 'pending'"
            )
            last = FIRST_UID + OWNERS - 1
            db.execute("UPDATE runs SET owner_uid = ? WHERE id = ?", (FIRST_UID, head))
            db.execute("UPDATE runs SET owner_uid = ? WHERE id = ?", (last, tail))
            today = int(time.time() // 86400)
            db.executemany(
                "INSERT OR REPLACE INTO use_days (day, owner_uid, cpu_seconds, gpu_seconds)"
                " VALUES (?, ?, ?, ?)",
                [
                    (today - day, FIRST_UID + owner, 3600.0 * (owner + 1), 60.0 * owner)
                    for owner in range(OWNERS)
                    for day in range(28)
                ],
            )
    finally:
        db.close()


async def _passes_with_node_full(http: aiohttp.ClientSession, plan: str) -> dict[str, Any]:
    """Submit and cancel, one job at a time, until the recent window holds only passes made
    with the queue full; then /v1/health's scheduler figures."""
    before = (await _scheduler(http))["passes"]
    scheduler: dict[str, Any] = {"passes": before}
    for _ in range(20 * RECENT_PASSES // CHECK_EVERY):  # a bound, should passes not come
        if scheduler["passes"] - before >= RECENT_PASSES:
            return scheduler
        for _ in range(CHECK_EVERY):
            job = await post_json(http, "/v1/jobs", {**JOB, "plan": plan})
            await post_json(http, f"/v1/runs/{job['latestRunId']}/cancel", {})
        scheduler = await _scheduler(http)
    raise RuntimeError(
        f"only {scheduler['passes'] - before} passes in {20 * RECENT_PASSES} submits"
    )


async def _passes_while_draining(
    http: aiohttp.ClientSession, blocker: str, tail: str
) -> dict[str, Any] | None:
    """Free the node and let the queue run until the recent window holds only passes made
    since; then /v1/health's scheduler figures. None if the queue ran out first."""
    before = (await _scheduler(http))["passes"]
    await post_json(http, f"/v1/runs/{blocker}/cancel", {})
    async with asyncio.timeout(DRAIN_SECONDS):
        while True:
            await asyncio.sleep(1)
            scheduler = await _scheduler(http)
            if scheduler["passes"] - before >= RECENT_PASSES:
                return scheduler
            if not await _pending(http, tail):
                return None


async def _pending(http: aiohttp.ClientSession, run_id: str) -> bool:
    return bool((await get_json(http, f"/v1/runs/{run_id}"))["status"] == "pending")


async def _scheduler(http: aiohttp.ClientSession) -> dict[str, Any]:
    return (await get_json(http, "/v1/health"))["scheduler"]  # type: ignore[no-any-return]


def _figures(report: Report, samples: list[Sample], queued: int) -> None:
    scale = f"{queued:,} queued"
    for window in ("node full", "draining"):
        timed = [s.windows[window] for s in samples if window in s.windows]
        if len(timed) < len(samples):
            report.missing(
                SCENARIO,
                "jobd",
                f"{window} in {len(samples) - len(timed)} repeat(s): the queue ran out before"
                f" {RECENT_PASSES:,} passes (queue more: --queued-n)",
            )
        if not timed:
            continue
        for figure, key in (("p50", "recentP50Ms"), ("p99", "recentP99Ms")):
            own = tuple(t[key] for t in timed)
            met = max(own) < TARGET_MS if figure == "p99" else None
            _add(report, f"placement pass {figure}, {scale}, {window}", own, met)
            waited = tuple(t["waited"][key] for t in timed)
            _add(report, f"placement pass as waited for, {figure}, {scale}, {window}", waited)
    _add(report, "slowest placement pass (daemon lifetime)", tuple(s.slowest for s in samples))
    _add(
        report,
        "slowest placement pass as waited for (daemon lifetime)",
        tuple(s.slowest_waited for s in samples),
    )


def _add(report: Report, name: str, samples: tuple[float, ...], met: bool | None = None) -> None:
    target = (f"< {TARGET_MS} ms", met) if met is not None else None
    add_figure(report, name, "ms", samples, target, scenario=SCENARIO)
