"""Scenario 1: submit throughput. N trivial jobs submitted by 1, 8 and 64 concurrent clients
through jobd's API, and through `jobctl` as a shell loop would; peers: `sbatch --wrap true`
and `tsp true`. jobd's jobs queue behind a job that fills the node, so what is measured is
accepting work (and a queue that grows to N), not running it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.daemon import BIN, BLOCKER_PLAN, IMAGE, BenchDaemon, post_json, wait_for_status
from bench.report import Figure, Report
from bench.scenarios.common import command_runner, concurrently, peers, percentile

SCENARIO = "1 submit"
JOB = {"image": IMAGE, "command": ["true"], "network": "none", "plan": "starter"}


def run(
    report: Report, *, n: int, clients: list[int], repeats: int, jobctl_n: int, peer_n: int
) -> None:
    results: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
    status = peers()
    for _ in range(repeats):
        for c in clients:
            results.setdefault(("jobd", c), []).append(asyncio.run(_jobd(n, c)))
        results.setdefault(("jobctl", 1), []).append(asyncio.run(_jobctl(jobctl_n)))
        for peer, command, env in _peer_commands(status):
            for c in clients:
                results.setdefault((peer, c), []).append(
                    asyncio.run(concurrently(peer_n, c, command_runner(command, env)))
                )
                _clear_peer_queues(status)
    for peer in ("tsp", "slurm"):
        if not status.get(peer, {}).get("available"):
            report.missing(SCENARIO, peer, status.get(peer, {}).get("reason", "not set up"))
    _figures(report, results, n)


def _peer_commands(status: dict[str, Any]) -> list[tuple[str, list[str], dict[str, str]]]:
    commands = []
    tsp = status.get("tsp", {})
    if tsp.get("available"):
        # -n: no output file per job; tsp queues at most ~990 jobs (keep --peer-n below)
        commands.append(("tsp", ["tsp", "-n", "true"], {"TS_SOCKET": tsp["socket"]}))
    if status.get("slurm", {}).get("available"):
        commands.append(
            (
                "slurm",
                ["sbatch", "--parsable", "-Q", "-p", "bench", "-o", "/dev/null", "--wrap", "true"],
                {},
            )
        )
    return commands


def _clear_peer_queues(status: dict[str, Any]) -> None:
    """Slurm drains ~30 jobs/s: a run's leftovers must not slow the next one."""
    if status.get("slurm", {}).get("available"):
        subprocess.run(["scancel", "-p", "bench"], check=False, capture_output=True)
    tsp = status.get("tsp", {})
    if tsp.get("available"):
        subprocess.run(
            ["tsp", "-C"],
            env={**os.environ, "TS_SOCKET": tsp["socket"]},
            check=False,
            capture_output=True,
        )


async def _jobd(n: int, clients: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home))
        daemon.start()
        try:
            async with daemon.session(clients + 4) as http:
                await _fill_the_node(http)
                return await concurrently(n, clients, lambda: _submit(http))
        finally:
            daemon.stop()


async def _submit(http: Any) -> None:
    await post_json(http, "/v1/jobs", JOB)


async def _fill_the_node(http: Any) -> None:
    blocker = await post_json(
        http, "/v1/jobs", {**JOB, "plan": BLOCKER_PLAN, "command": ["sleep", "3600"]}
    )
    await wait_for_status(http, blocker["latestRunId"], {"running"})


async def _jobctl(n: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home))
        daemon.start()
        try:
            async with daemon.session() as http:
                await _fill_the_node(http)
            command = [
                str(BIN / "jobctl"),
                "run",
                "--network",
                "none",
                "--plan",
                "starter",
                IMAGE,
                "--",
                "true",
            ]
            env = {"JOBD_SOCKET": str(daemon.socket)}
            return await concurrently(n, 1, command_runner(command, env))
        finally:
            daemon.stop()


def _figures(
    report: Report, results: dict[tuple[str, int], list[tuple[float, list[float]]]], n: int
) -> None:
    for (system, c), samples in results.items():
        label = f"{c} client{'s' if c > 1 else ''}"
        rates = tuple(len(lat) / wall for wall, lat in samples)
        target, met = None, None
        if system == "jobd" and c == 8:
            target = ">= 1,000 jobs/s and >= 10x sbatch"
            met = min(rates) >= 1000
        report.add(
            Figure(
                scenario=SCENARIO,
                name=f"submit rate, {label}",
                system=system,
                unit="jobs/s",
                samples=rates,
                higher_is_better=True,
                target=target,
                met=met,
            )
        )
        for pct in (50, 99):
            report.add(
                Figure(
                    scenario=SCENARIO,
                    name=f"submit latency p{pct}, {label}",
                    system=system,
                    unit="ms",
                    samples=tuple(percentile(lat, pct) * 1000 for _, lat in samples),
                    higher_is_better=False,
                )
            )
