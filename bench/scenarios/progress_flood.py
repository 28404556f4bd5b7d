"""Part of scenario 5 (logs): a job printing about 10,000 `::jobd progress` lines a second for
FLOOD_SECONDS (a thousand at a time, a tenth of a second apart). Measured: how many progress
records the daemon wrote for it a second, from the first to the last (each write is seen as a
change of the run's progress by polling it every POLL; their count is checked against
jobd_progress_writes_total in /metrics), and the shortest gap between two (the target: at
most one a second), the marker lines a second the job printed, and the daemon's CPU
meanwhile (the jobd process alone, as the 1 GB job's figure; the polling adds to it)."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import aiohttp
import psutil

from bench.daemon import IMAGE, get_json, post_json

FLOOD_SECONDS = 10
PER_TICK = 1000  # lines a tenth of a second: 10,000 a second
ENDED = {"succeeded", "failed", "cancelled"}
POLL = 0.05  # GET /v1/runs/{id}: each write of the run's progress is seen as a change


@dataclass(frozen=True, slots=True, kw_only=True)
class Flood:
    writes_per_second: float  # between the first write seen and the last
    shortest_gap: float  # seconds between two writes, as polling every POLL saw them
    lines_per_second: float
    cpu_percent: float


def _script(total: int) -> str:
    return (
        f"awk 'BEGIN {{ for (i = 1; i <= {total}; i++) {{"
        f' print "::jobd progress " i "/{total} line " i;'
        f' if (i % {PER_TICK} == 0) {{ fflush(); system("sleep 0.1") }} }} }}\''
    )


async def measure(http: aiohttp.ClientSession, jobd: psutil.Process) -> Flood:
    total = PER_TICK * 10 * FLOOD_SECONDS
    writes_before = await _writes(http)
    times = jobd.cpu_times()
    cpu_before, began = times.user + times.system, time.perf_counter()
    body = {"image": IMAGE, "command": ["sh", "-c", _script(total)], "network": "none"}
    run_id = (await post_json(http, "/v1/jobs", body))["latestRunId"]
    changes: list[float] = []  # when the run's progress was seen to change: a write each
    seen = None
    async with asyncio.timeout(600):
        while True:
            run = await get_json(http, f"/v1/runs/{run_id}")
            if run["progress"] != seen:
                seen = run["progress"]
                changes.append(time.perf_counter())
            if run["status"] in ENDED and (seen or {}).get("done") == total:
                break
            last_seen = changes[-1] if changes else began
            if run["status"] in ENDED and time.perf_counter() - last_seen > 5:
                raise RuntimeError(f"the flood's last marker never showed: {seen}")
            await asyncio.sleep(POLL)
    wall = time.perf_counter() - began
    times = jobd.cpu_times()
    cpu = (times.user + times.system - cpu_before) / wall * 100
    if run["status"] != "succeeded":
        raise RuntimeError(f"the flood's run {run_id} ended {run['status']}")
    writes = await _writes(http) - writes_before
    gaps = [b - a for a, b in itertools.pairwise(changes)]
    if writes != len(changes):
        raise RuntimeError(f"{writes} writes, but the progress changed {len(changes)} times")
    return Flood(
        writes_per_second=(len(gaps)) / sum(gaps) if gaps else 0.0,
        shortest_gap=min(gaps) if gaps else 0.0,
        lines_per_second=total / run["runningSeconds"],
        cpu_percent=cpu,
    )


async def _writes(http: aiohttp.ClientSession) -> float:
    async with http.get("http://jobd/metrics") as response:
        text = await response.text()
    for row in text.splitlines():
        if row.startswith("jobd_progress_writes_total "):
            return float(row.split()[-1])
    raise RuntimeError("/metrics has no jobd_progress_writes_total")
