"""What several scenarios share: percentiles, concurrent command runners, the peers' status."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import Figure, Report

PEERS_STATUS = Path("/run/jobd-bench/peers.json")
PEERS_SETUP = Path(__file__).resolve().parents[1] / "peers" / "setup.sh"


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def concurrently(
    n: int, clients: int, one: Callable[[], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one` n times from `clients` concurrent loops: (wall seconds, each call's latency)."""
    latencies: list[float] = []

    async def client(count: int) -> None:
        for _ in range(count):
            began = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(client(c) for c in split(n, clients)))
    return time.perf_counter() - began, latencies


def command_runner(
    command: Sequence[str], env: Mapping[str, str] | None = None
) -> Callable[[], Awaitable[None]]:
    environment = {**os.environ, **(env or {})}

    async def run() -> None:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=environment,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: exit {process.returncode}: {err.decode()}")

    return run


def peers(slots: int | None = None) -> dict[str, Any]:
    """The peers' status, after (re)running their setup: idempotent, and a quick no-op when
    they are already up. slots: task-spooler's jobs at once (default: setup.sh's, nproc)."""
    if PEERS_SETUP.exists():
        slots_args = ["--slots", str(slots)] if slots is not None else []
        subprocess.run(["bash", str(PEERS_SETUP), *slots_args], check=False)
    try:
        return json.loads(PEERS_STATUS.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError) as e:
        return {
            "tsp": {"available": False, "reason": f"no peer status: {e}"},
            "slurm": {"available": False, "reason": f"no peer status: {e}"},
        }


def add_figure(
    report: Report,
    name: str,
    unit: str,
    samples: Sequence[float],
    target: tuple[str, bool] | None = None,
    *,
    scenario: str,
    system: str = "jobd",
    higher: bool = False,
) -> None:
    """One figure; `target`: (the issue's target, whether the samples meet it)."""
    report.add(
        Figure(
            scenario=scenario,
            name=name,
            system=system,
            unit=unit,
            samples=tuple(samples),
            higher_is_better=higher,
            target=target[0] if target else None,
            met=target[1] if target else None,
        )
    )


def failed_runs_figure(report: Report, scenario: str, failed_runs: Sequence[int]) -> None:
    """jobd runs of a trivial job that did not succeed, per repeat (target: none)."""
    if failed_runs:
        report.add(
            Figure(
                scenario=scenario,
                name="jobd runs that failed, per repeat",
                system="jobd",
                unit="runs",
                samples=tuple(float(n) for n in failed_runs),
                higher_is_better=False,
                target="0",
                met=not any(failed_runs),
            )
        )
