"""Scenario 5: logs. One job writes SIZE bytes of output (default 1 GB: `yes | head` in ten
blocks, each followed by one rare marker line and a `::jobd progress i/10` line, after a
`::jobd phase` line: progress markers are looked for in all of it, and the run's progress is
checked to be 10/10); the daemon keeps all of it ([logs] max_bytes set well above the size,
checked: nothing omitted). Measured:

- the daemon's CPU while the job runs: the jobd process alone (not its podman service, not
  conmon), psutil user+system time over the job's wall time, submit to end, as % of one core;
  the bench polls the run every 0.5 s so as not to load the daemon itself;
- serving the full log (GET /v1/runs/{id}/logs?format=text; the bytes served must add up to
  what the job wrote): its time, and the daemon's peak RSS meanwhile (sampled every 50 ms);
- a filtered search for the marker (the `filter` param): with format=text, as `jobctl logs
  --grep` asks, and with format=json; MB/s is the log's size as text (what the job wrote) over
  the time. For reference, `grep -c -F` over the run's retained log files, which the daemon
  scans too (k8s-file lines, about twice SIZE), with the same numerator;
- follow latency: a job prints a line every 50 ms while a client follows (follow=true,
  format=ndjson); each line's time (conmon stamps it as it reads it) against the client's
  receive time;
- a flood of progress markers (progress_flood.py): the run's record written at most once a
  second while its job prints 10,000 of them a second.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psutil

from bench.daemon import IMAGE, BenchDaemon, get_json, post_json
from bench.report import Report
from bench.scenarios import progress_flood
from bench.scenarios.common import add_figure, percentile
from bench.scenarios.progress_flood import Flood

SCENARIO = "5 logs"
_add = functools.partial(add_figure, scenario=SCENARIO)
LINE = "a line of log output with some words 0123456789"
MARKER = "jobd-bench-needle"
PHASE = "::jobd phase writing"
BLOCKS = 10  # each block of `yes` output ends with one marker line
TICK = 0.05  # seconds between the followed job's lines
POLL = 0.5
MB = 1_000_000
ENDED = {"succeeded", "failed", "cancelled"}
NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=900)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    log_bytes: int  # what the job wrote: the log's size as text
    cpu_percent: float
    write_seconds: float
    serve_seconds: float
    serve_peak_rss: int
    search_text_seconds: float
    search_json_seconds: float
    grep_seconds: float
    follow: list[float]  # seconds, one per line
    flood: Flood


def run(report: Report, *, size: int, follow_lines: int, repeats: int) -> None:
    samples = [asyncio.run(_once(size, follow_lines)) for _ in range(repeats)]
    _figures(report, samples, size)


async def _once(size: int, follow_lines: int) -> Sample:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        # retained lines carry conmon's ~45-byte prefix: keep 4x the output, never drop any
        config = f"[logs]\nmax_bytes = {4 * size + 64 * MB}\n"
        daemon = BenchDaemon(Path(home), config=config)
        daemon.start()
        try:
            async with daemon.session(4) as http:
                return await _measure(http, daemon, size, follow_lines)
        finally:
            daemon.stop()


async def _measure(
    http: aiohttp.ClientSession, daemon: BenchDaemon, size: int, follow_lines: int
) -> Sample:
    await _run_to_end(http, ["true"])  # the first job builds jobd's image: not measured
    lines_per_block = size // BLOCKS // (len(LINE) + 1)
    assert daemon.process is not None
    jobd = psutil.Process(daemon.process.pid)
    cpu_before, began = _cpu_seconds(jobd), time.perf_counter()
    # plan pro: two CPUs, so the writer is not held back by its plan's CPU quota
    run_id = await _run_to_end(http, ["sh", "-c", _writer_script(lines_per_block)], plan="pro")
    write_seconds = time.perf_counter() - began
    cpu_percent = (_cpu_seconds(jobd) - cpu_before) / write_seconds * 100
    await _check_nothing_omitted(http, run_id)
    await _check_progress(http, run_id)
    expected = _expected_output(lines_per_block)
    serve_seconds, served, peak = await _serve_full(http, daemon, run_id)
    if served != expected:
        raise RuntimeError(f"the full log is {served} bytes; the job wrote {expected}")
    return Sample(
        log_bytes=expected,
        cpu_percent=cpu_percent,
        write_seconds=write_seconds,
        serve_seconds=serve_seconds,
        serve_peak_rss=peak,
        search_text_seconds=await _search_text(http, run_id),
        search_json_seconds=await _search_json(http, run_id),
        grep_seconds=_grep(daemon.data_dir / "logs" / run_id),
        follow=await _follow(http, follow_lines),
        flood=await progress_flood.measure(http, jobd),
    )


def _writer_script(lines_per_block: int) -> str:
    return (
        f"echo '{PHASE}'; for i in $(seq 1 {BLOCKS}); do yes '{LINE}' | head -n {lines_per_block};"
        f" echo '{MARKER}' $i; echo \"::jobd progress $i/{BLOCKS}\"; done"
    )


def _expected_output(lines_per_block: int) -> int:
    markers = sum(len(f"{MARKER} {i}\n") for i in range(1, BLOCKS + 1))
    progress = sum(len(f"::jobd progress {i}/{BLOCKS}\n") for i in range(1, BLOCKS + 1))
    return BLOCKS * lines_per_block * (len(LINE) + 1) + markers + progress + len(PHASE) + 1


async def _check_progress(http: aiohttp.ClientSession, run_id: str) -> None:
    """The markers in the bulk output were all seen (the last is written within a second)."""
    for _ in range(30):
        run = await get_json(http, f"/v1/runs/{run_id}")
        progress = run["progress"] or {}
        if progress.get("done") == BLOCKS and progress.get("phase") == "writing":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the 1 GB job's progress markers were not all seen: {run['progress']}")


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _run_to_end(
    http: aiohttp.ClientSession, command: list[str], plan: str = "starter"
) -> str:
    body = {"image": IMAGE, "command": command, "network": "none", "plan": plan}
    run_id: str = (await post_json(http, "/v1/jobs", body))["latestRunId"]
    async with asyncio.timeout(3600):
        while True:
            run = await get_json(http, f"/v1/runs/{run_id}")
            if run["status"] in ENDED:
                break
            await asyncio.sleep(POLL)
    if run["status"] != "succeeded":
        raise RuntimeError(f"{command}: run {run_id} ended {run['status']}: {run}")
    return run_id


async def _check_nothing_omitted(http: aiohttp.ClientSession, run_id: str) -> None:
    page = await get_json(http, f"/v1/runs/{run_id}/logs?format=json&limit=1")
    if page["omittedBytes"]:
        raise RuntimeError(f"jobd dropped {page['omittedBytes']} bytes: raise [logs] max_bytes")


async def _serve_full(
    http: aiohttp.ClientSession, daemon: BenchDaemon, run_id: str
) -> tuple[float, int, int]:
    """(seconds, bytes served, the daemon's peak RSS meanwhile)."""
    peak = daemon.rss_bytes()
    done = asyncio.Event()

    async def sample_rss() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, daemon.rss_bytes())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_rss())
    try:
        seconds, served, _ = await _read_text(http, run_id, {"format": "text"})
    finally:
        done.set()
        await sampler
    return seconds, served, peak


async def _read_text(
    http: aiohttp.ClientSession, run_id: str, query: dict[str, str]
) -> tuple[float, int, int]:
    """(seconds, bytes, lines) of a streamed log response."""
    size = lines = 0
    began = time.perf_counter()
    url = f"http://jobd/v1/runs/{run_id}/logs?{urlencode(query)}"
    async with http.get(url, timeout=NO_TIMEOUT) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
        async for chunk in response.content.iter_chunked(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return time.perf_counter() - began, size, lines


async def _search_text(http: aiohttp.ClientSession, run_id: str) -> float:
    seconds, _, found = await _read_text(http, run_id, {"format": "text", "filter": MARKER})
    _check_found(found, "format=text")
    return seconds


async def _search_json(http: aiohttp.ClientSession, run_id: str) -> float:
    query = urlencode({"format": "json", "filter": MARKER})
    began = time.perf_counter()
    async with http.get(f"http://jobd/v1/runs/{run_id}/logs?{query}", timeout=NO_TIMEOUT) as r:
        page: dict[str, Any] = await r.json()
    seconds = time.perf_counter() - began
    _check_found(len(page["lines"]), "format=json")
    return seconds


def _grep(log_dir: Path) -> float:
    files = sorted(log_dir.glob("*.log"))  # the retained log, whatever jobd's file layout
    began = time.perf_counter()
    counted = subprocess.run(
        ["grep", "-c", "-h", "-F", MARKER, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,  # grep exits 1 for a file without a match
    )
    seconds = time.perf_counter() - began
    _check_found(sum(int(c) for c in counted.stdout.split()), "grep -c")
    return seconds


def _check_found(found: int, how: str) -> None:
    if found != BLOCKS:
        raise RuntimeError(f"{how} found {found} marker lines; the job wrote {BLOCKS}")


async def _follow(http: aiohttp.ClientSession, lines: int) -> list[float]:
    """Seconds from each line's conmon timestamp to its arrival at a following client."""
    script = f"for i in $(seq 1 {lines}); do echo tick $i; sleep {TICK}; done"
    body = {"image": IMAGE, "command": ["sh", "-c", script], "network": "none", "plan": "starter"}
    run_id = (await post_json(http, "/v1/jobs", body))["latestRunId"]
    latencies: list[float] = []
    query = urlencode({"follow": "true", "format": "ndjson"})
    async with http.get(f"http://jobd/v1/runs/{run_id}/logs?{query}", timeout=NO_TIMEOUT) as r:
        async for raw in r.content:
            received = time.time()
            line = json.loads(raw)
            if line["stream"] == "stdout":
                latencies.append(received - datetime.fromisoformat(line["time"]).timestamp())
    if len(latencies) != lines:
        raise RuntimeError(f"the follower got {len(latencies)} lines; the job printed {lines}")
    return latencies


def _figures(report: Report, samples: list[Sample], size: int) -> None:
    amount = f"{size / 1e9:g} GB" if size >= 1e9 else f"{size / MB:g} MB"
    cpu = tuple(s.cpu_percent for s in samples)
    _add(
        report,
        f"daemon CPU while a job writes {amount}",
        "% of a core",
        cpu,
        ("< 5%", max(cpu) < 5),
    )
    _add(
        report,
        f"wall time of the job writing {amount}",
        "s",
        tuple(s.write_seconds for s in samples),
    )
    _add(report, f"serve the full {amount} log", "s", tuple(s.serve_seconds for s in samples))
    _add(
        report,
        f"daemon peak RSS while serving {amount}",
        "MB",
        tuple(s.serve_peak_rss / MB for s in samples),
    )
    text = tuple(s.log_bytes / MB / s.search_text_seconds for s in samples)
    _add(report, "filtered search", "MB/s", text, (">= 200 MB/s", min(text) >= 200), higher=True)
    json_rates = tuple(s.log_bytes / MB / s.search_json_seconds for s in samples)
    _add(
        report,
        "filtered search, format=json",
        "MB/s",
        json_rates,
        (">= 200 MB/s", min(json_rates) >= 200),
        higher=True,
    )
    grep = tuple(s.log_bytes / MB / s.grep_seconds for s in samples)
    _add(report, "filtered search", "MB/s", grep, system="grep -c", higher=True)
    for pct in (50, 99):
        values = tuple(percentile(s.follow, pct) * 1000 for s in samples)
        _add(report, f"follow latency p{pct}", "ms", values)
    writes = tuple(s.flood.writes_per_second for s in samples)
    gaps = tuple(s.flood.shortest_gap for s in samples)
    lines = tuple(s.flood.lines_per_second for s in samples)
    _add(report, "progress markers printed by the flood job", "lines/s", lines, higher=True)
    _add(report, "progress records written while it floods", "writes/s", writes)
    _add(
        report,
        "shortest gap between two writes of its record",
        "s",
        gaps,
        (">= 0.95 s (one a second; polled every 50 ms)", min(gaps) >= 0.95),
        higher=True,
    )
    flood_cpu = tuple(s.flood.cpu_percent for s in samples)
    _add(report, "daemon CPU while it floods", "% of a core", flood_cpu)
