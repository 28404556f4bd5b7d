"""Part of scenario 5 (logs): a job printing about 10,000 `::jobd progress` lines a second for
FLOOD_SECONDS (a thousand at a time, a tenth of a second apart). Measured: how many progress
records the daemon wrote for it per second of its run (jobd_progress_writes_total in /metrics:
the target is at most one a second), the marker lines a second the job printed, and the
daemon's CPU meanwhile (the jobd process alone, as the 1 GB job's figure)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
import psutil

from bench.daemon import IMAGE, get_json, post_json

FLOOD_SECONDS = 10
PER_TICK = 1000  # lines a tenth of a second: 10,000 a second
ENDED = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Flood:
    writes_per_second: float
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
    async with asyncio.timeout(600):
        while True:
            run = await get_json(http, f"/v1/runs/{run_id}")
            if run["status"] in ENDED:
                break
            await asyncio.sleep(0.5)
    wall = time.perf_counter() - began
    times = jobd.cpu_times()
    cpu = (times.user + times.system - cpu_before) / wall * 100
    if run["status"] != "succeeded":
        raise RuntimeError(f"the flood's run {run_id} ended {run['status']}")
    for _ in range(30):  # its last word is written within a second of its end
        progress = (await get_json(http, f"/v1/runs/{run_id}"))["progress"] or {}
        if progress.get("done") == total:
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"the flood's last marker never showed: {progress}")
    writes = await _writes(http) - writes_before
    seconds = run["runningSeconds"]
    return Flood(
        writes_per_second=writes / seconds,
        lines_per_second=total / seconds,
        cpu_percent=cpu,
    )


async def _writes(http: aiohttp.ClientSession) -> float:
    async with http.get("http://jobd/metrics") as response:
        text = await response.text()
    for row in text.splitlines():
        if row.startswith("jobd_progress_writes_total "):
            return float(row.split()[-1])
    raise RuntimeError("/metrics has no jobd_progress_writes_total")
