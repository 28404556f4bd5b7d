"""Scenario 3: completion throughput. N trivial container jobs (`true` in jobd's busybox image),
P of them running at once: completed jobs per second, from the first submit until the last job
has ended, on each system at the same parallelism P.

- jobd: a plan with cpus = node CPUs / P (and little memory), so that exactly P runs fit on
  the node (jobd/scheduler/placement.py `place`). The N jobs are submitted by a few
  concurrent clients; the end is the latest terminal transition among the runs' events (GET
  /v1/runs/{id}/events), i.e. when jobd itself knew the last run had ended, not when the
  bench's poll noticed it (jobd removes that container just after; the other systems' ends
  include the removal).
  The bench polls slowly (one run every 0.25 s) so as not to take CPU from jobd on 2 cores.
  The runs' events also tell where jobd's time goes: each phase's median, the slowest run,
  and how long a freed slot stays empty before jobd places the next run.
- podman API (the floor): P threads, each a loop of create, start, wait, remove through
  podman-py on a private podman service (bench/scenarios/floor.py). It is the floor of the
  issue's definition, not a bound: a loop that learns of exits from the event stream, as
  jobd does, can beat its wait call.
- podman run: P concurrent loops of `podman run --rm`.
- tsp: N `tsp -n podman run --rm ...` with P slots (setup.sh --slots P), until `tsp -l` shows
  nothing queued or running.
- slurm: N `sbatch -c CPUs/P --wrap 'podman run --rm ...'`, until squeue lists none of them;
  Slurm gives out whole cores, so it can run only when P divides the CPU count.

Every container has the same limits (floor.py's ContainerLimits, from the jobd plan). Each
system's first container of a repeat is a warm-up outside the measured window. A jobd run that
does not succeed is left out of jobd's rate, counted in a figure of its own (target 0) and its
reason printed to stderr; a peer that fails is reported unavailable, with the error. The target:
jobd at least 90% of the floor's rate at the same parallelism, on the median over repeats.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.daemon import IMAGE, BenchDaemon, get_json, post_json, wait_for_status
from bench.report import Figure, Report
from bench.scenarios.common import (
    add_figure,
    command_runner,
    concurrently,
    failed_runs_figure,
    median,
    peers,
    split,
)
from bench.scenarios.floor import (
    WAIT_INTERVAL,
    ContainerLimits,
    client,
    podman_service,
    remove_labelled,
)

SCENARIO = "3 completion"
LABEL = "completion"
PLAN = "bench-completion"
COMMAND = ("true",)
CLIENTS = 8  # jobd's submitters
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
POLL_SECONDS = 0.25
TIMEOUT_SECONDS = 1800.0
TARGET_SHARE = 0.9
FLOOR = "podman API"
PEERS = frozenset({"tsp", "slurm"})
PLACED_TO_END = "placed → ended"
REFILL = "a run ended → the next placed"


def run(report: Report, *, n: int, parallelism: int, repeats: int) -> None:
    limits = plan_for(parallelism)
    jobd_repeats: list[JobdRepeat] = []
    runners = {
        "jobd": lambda: _keep(jobd_repeats, asyncio.run(_jobd(n, parallelism, limits))),
        FLOOR: lambda: _floor(n, parallelism, limits),
        "podman run": lambda: _podman_run(n, parallelism, limits),
        **_peer_runners(report, peers(slots=parallelism), n, parallelism, limits),
    }
    rates: dict[str, list[float]] = {system: [] for system in runners}
    try:
        for repeat in range(repeats):
            for system in _order(list(runners), repeat):
                _measure(report, rates, system, runners[system])
    finally:
        remove_labelled(LABEL)
    _figures(report, {system: r for system, r in rates.items() if r}, parallelism)
    _phase_figures(report, [r.phases for r in jobd_repeats])
    failed_runs_figure(report, SCENARIO, [len(r.failures) for r in jobd_repeats])


def _order(systems: list[str], repeat: int) -> list[str]:
    """jobd first in the first repeat (its first job builds the image every system runs),
    then a new order each repeat, so that a slow spell on the machine does not always hit
    the same system."""
    return systems if repeat == 0 else random.sample(systems, len(systems))


def _measure(
    report: Report, rates: dict[str, list[float]], system: str, one: Callable[[], float]
) -> None:
    """A peer that fails is reported, and not run again; jobd and podman must not fail."""
    if system in PEERS and system in {
        u.system for u in report.unavailable if u.scenario == SCENARIO
    }:
        return
    try:
        rates[system].append(one())
    except (RuntimeError, subprocess.CalledProcessError) as e:
        if system not in PEERS:
            raise
        report.missing(SCENARIO, system, f"failed: {e}")
        rates[system].clear()


def plan_for(parallelism: int) -> ContainerLimits:
    """A plan of which exactly `parallelism` runs fit on this node's CPUs."""
    return ContainerLimits(plan=PLAN, memory_mb=64, cpus=(os.cpu_count() or 1) / parallelism)


# -- jobd -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JobdRepeat:
    rate: float  # runs that succeeded, per second
    phases: dict[str, list[float]]  # seconds, per run (REFILL: per refilled slot)
    failures: list[str]  # the runs that did not succeed, and why


def _keep(repeats: list[JobdRepeat], repeat: JobdRepeat) -> float:
    """Keep a repeat's details for the figures; its rate, for the table's main row."""
    repeats.append(repeat)
    return repeat.rate


async def _jobd(n: int, parallelism: int, limits: ContainerLimits) -> JobdRepeat:
    job = {"image": IMAGE, "command": list(COMMAND), "network": "none", "plan": limits.plan}
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home), config=limits.toml())
        daemon.start()
        try:
            async with daemon.session(CLIENTS + 2) as http:
                warm_up = await post_json(http, "/v1/jobs", job)  # builds the image if need be
                await wait_for_status(http, warm_up["latestRunId"], set(TERMINAL))
                began = time.time()
                run_ids = await _submit(http, n, job)
                failures = await _wait_until_ended(http, run_ids)
                timelines = [await _timeline(http, run_id) for run_id in run_ids]
                wall = max(_end(t) for t in timelines) - began
                return JobdRepeat(
                    rate=(n - len(failures)) / wall,
                    phases=_phases(timelines, parallelism),
                    failures=failures,
                )
        finally:
            daemon.stop()


async def _submit(http: aiohttp.ClientSession, n: int, job: dict[str, Any]) -> list[str]:
    run_ids: list[str] = []

    async def one() -> None:
        run_ids.append((await post_json(http, "/v1/jobs", job))["latestRunId"])

    await concurrently(n, CLIENTS, one)
    return run_ids


async def _wait_until_ended(http: aiohttp.ClientSession, run_ids: list[str]) -> list[str]:
    """Until every run has ended; those that did not succeed, and why. The bench asks about
    one run at a time, newest first: the newest ends last, give or take P, so until then it
    asks once every POLL_SECONDS."""
    waiting, failures = list(run_ids), []
    async with asyncio.timeout(TIMEOUT_SECONDS):
        while waiting:
            run = await get_json(http, f"/v1/runs/{waiting[-1]}")
            if run["status"] not in TERMINAL:
                await asyncio.sleep(POLL_SECONDS)
                continue
            if run["status"] != "succeeded":
                failures.append(f"{run['id']} {run['status']}: {run.get('failureReason')}")
                print(f"{SCENARIO}: jobd run {failures[-1]}", file=sys.stderr)
            waiting.pop()
    return failures


@dataclass(frozen=True, slots=True)
class Event:
    to: str  # the status the run moved to
    name: str  # its detail
    at: float  # epoch seconds, as jobd recorded it (to the millisecond)


async def _timeline(http: aiohttp.ClientSession, run_id: str) -> list[Event]:
    events = (await get_json(http, f"/v1/runs/{run_id}/events"))["events"]
    return [
        Event(e["to"], e.get("detail") or e["to"], datetime.fromisoformat(e["at"]).timestamp())
        for e in events
    ]


def _placed(timeline: list[Event]) -> float:
    return next(e.at for e in timeline if e.to == "assigned")


def _end(timeline: list[Event]) -> float:
    """When jobd itself knew the run had ended: its terminal transition."""
    return next(e.at for e in timeline if e.to in TERMINAL)


def _phases(timelines: list[list[Event]], parallelism: int) -> dict[str, list[float]]:
    """Each run's time between consecutive events from its placement on (before it, the run
    only waits its turn), its whole time from placement to the end, and how long a slot stayed
    empty: the k-th placement after the first P refills the slot the (k-P)-th end freed."""
    phases: dict[str, list[float]] = {}
    for timeline in timelines:
        placed = list(itertools.dropwhile(lambda e: e.to != "assigned", timeline))
        for a, b in itertools.pairwise(placed):
            phases.setdefault(f"{a.name} → {b.name}", []).append(b.at - a.at)
        phases.setdefault(PLACED_TO_END, []).append(_end(timeline) - _placed(timeline))
    placements = sorted(_placed(t) for t in timelines)[parallelism:]
    ends = sorted(_end(t) for t in timelines)
    phases[REFILL] = [start - end for start, end in zip(placements, ends, strict=False)]
    return phases


# -- podman, directly -------------------------------------------------------------------


def _floor(n: int, parallelism: int, limits: ContainerLimits) -> float:
    with podman_service() as socket:
        _floor_worker(socket, 1, limits)  # warm-up
        began = time.perf_counter()
        with ThreadPoolExecutor(parallelism, thread_name_prefix="floor") as pool:
            done = pool.map(
                lambda count: _floor_worker(socket, count, limits), split(n, parallelism)
            )
            list(done)  # raises the first worker's error, if any
        return n / (time.perf_counter() - began)


def _floor_worker(socket: Path, count: int, limits: ContainerLimits) -> None:
    options = limits.api_options(LABEL)
    with client(socket) as api:
        for _ in range(count):
            container = api.containers.create(IMAGE, command=list(COMMAND), **options)
            try:
                container.start()
                code = container.wait(interval=WAIT_INTERVAL)
            finally:
                container.remove(force=True)
            if code != 0:
                raise RuntimeError(f"podman API: the container exited {code}")


def _podman_run(n: int, parallelism: int, limits: ContainerLimits) -> float:
    one = command_runner(limits.podman_run(LABEL, COMMAND))
    asyncio.run(concurrently(1, 1, one))  # warm-up
    wall, _ = asyncio.run(concurrently(n, parallelism, one))
    return n / wall


# -- the peers --------------------------------------------------------------------------


def _peer_runners(
    report: Report, status: dict[str, Any], n: int, parallelism: int, limits: ContainerLimits
) -> dict[str, Callable[[], float]]:
    """The peers that can run P podman jobs at once; the others reported as unavailable."""
    runners: dict[str, Callable[[], float]] = {}
    tsp, slurm = status.get("tsp", {}), status.get("slurm", {})
    if _usable(report, "tsp", tsp):
        if tsp.get("slots") != parallelism:
            report.missing(SCENARIO, "tsp", f"has {tsp.get('slots')} slots, not {parallelism}")
        else:
            runners["tsp"] = lambda: _tsp(n, limits, tsp["socket"])
    if _usable(report, "slurm", slurm):
        cpus = int(slurm.get("cpus") or os.cpu_count() or 1)
        if cpus % parallelism:
            why = f"gives out whole cores: {cpus} CPUs do not split into {parallelism} jobs"
            report.missing(SCENARIO, "slurm", why)
        else:
            runners["slurm"] = lambda: _slurm(n, limits, slurm, cpus // parallelism)
    return runners


def _usable(report: Report, peer: str, peer_status: dict[str, Any]) -> bool:
    if not peer_status.get("available"):
        report.missing(SCENARIO, peer, peer_status.get("reason", "not set up"))
        return False
    if peer_status.get("podman_ok") is False:
        why = peer_status.get("podman_reason") or "unknown reason"
        report.missing(SCENARIO, peer, f"podman under {peer} failed: {why}")
        return False
    return True


def _tsp(n: int, limits: ContainerLimits, socket: str) -> float:
    env = {**os.environ, "TS_SOCKET": socket}
    submit = ["tsp", "-n", *limits.podman_run(LABEL, COMMAND)]

    def tsp(*args: str) -> str:
        done = subprocess.run(["tsp", *args], env=env, capture_output=True, text=True, check=False)
        return done.stdout

    tsp("-C")
    warm_up = subprocess.run(submit, env=env, capture_output=True, text=True, check=True)
    tsp("-w", warm_up.stdout.strip())
    tsp("-C")
    began = time.perf_counter()
    for _ in range(n):
        subprocess.run(submit, env=env, capture_output=True, check=True)
    tsp("-w")  # the last job queued
    _poll_until(lambda: not _tsp_unfinished(tsp("-l")), "tsp jobs")
    wall = time.perf_counter() - began
    failed = _tsp_failed(tsp("-l"))
    tsp("-C")
    if failed:
        raise RuntimeError(f"tsp: {failed} of {n} podman jobs failed")
    return n / wall


def _tsp_rows(listing: str) -> list[list[str]]:
    """`tsp -l` without its header; columns: ID State Output E-Level Times Command."""
    return [row for row in (line.split() for line in listing.splitlines()[1:]) if len(row) > 3]


def _tsp_unfinished(listing: str) -> bool:
    return any(row[1] in {"queued", "running"} for row in _tsp_rows(listing))


def _tsp_failed(listing: str) -> int:
    return sum(1 for row in _tsp_rows(listing) if row[1] == "finished" and row[3] != "0")


def _slurm(n: int, limits: ContainerLimits, slurm: dict[str, Any], cpus_per_job: int) -> float:
    partition, jobcomp = slurm["partition"], Path(slurm["jobcomp_log"])
    with tempfile.TemporaryDirectory(prefix="jobd-bench-slurm-") as directory:
        submit = ["sbatch", "--parsable", "-Q", "-p", partition, "-c", str(cpus_per_job)]
        submit += ["-D", directory, "-o", "/dev/null", "-J", f"jobd-bench-{LABEL}"]
        submit += ["--wrap", shlex.join(limits.podman_run(LABEL, COMMAND))]
        subprocess.run(submit, capture_output=True, check=True)  # warm-up
        _poll_until(lambda: not _slurm_unfinished(partition), "the slurm warm-up job")
        offset = jobcomp.stat().st_size
        began = time.perf_counter()
        for _ in range(n):
            subprocess.run(submit, capture_output=True, check=True)
        _poll_until(lambda: not _slurm_unfinished(partition), "slurm jobs")
        wall = time.perf_counter() - began
    states = _slurm_states(jobcomp, offset)
    if len(states) != n or set(states) != {"COMPLETED"}:
        raise RuntimeError(f"slurm: of {n} podman jobs, the jobcomp log has {Counter(states)}")
    return n / wall


def _slurm_states(jobcomp: Path, offset: int) -> list[str]:
    """The JobState of each job the jobcomp log recorded after `offset` (one line per job)."""
    with jobcomp.open("rb") as log:
        log.seek(offset)
        added = log.read().decode(errors="replace")
    return re.findall(r"\bJobState=(\S+)", added)


def _slurm_unfinished(partition: str) -> bool:
    """squeue lists pending, running and completing jobs; ended ones are not shown."""
    listed = subprocess.run(
        ["squeue", "-h", "-p", partition, "-o", "%i"], capture_output=True, text=True, check=True
    )
    return bool(listed.stdout.strip())


def _poll_until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} still unfinished after {TIMEOUT_SECONDS:g} s")
        time.sleep(POLL_SECONDS)


# -- the table --------------------------------------------------------------------------


def _figures(report: Report, rates: dict[str, list[float]], parallelism: int) -> None:
    floor = median(rates[FLOOR]) if rates.get(FLOOR) else None
    for system, samples in rates.items():
        target, met = None, None
        if system == "jobd" and floor is not None:
            target = f">= {TARGET_SHARE:.0%} of the podman API floor ({floor:.2f} jobs/s)"
            met = median(samples) >= TARGET_SHARE * floor
        report.add(
            Figure(
                scenario=SCENARIO,
                name=f"completed jobs/s, {parallelism} at a time",
                system=system,
                unit="jobs/s",
                samples=tuple(samples),
                higher_is_better=True,
                target=target,
                met=met,
            )
        )


def _phase_figures(report: Report, phases: list[dict[str, list[float]]]) -> None:
    """Where jobd's time goes: each phase's median over the runs of a repeat, and the slowest
    run from placement to its end (a run that waited for a periodic reconcile shows here)."""
    names = list(dict.fromkeys(name for repeat in phases for name in repeat))
    for name in names:
        per_repeat = [repeat[name] for repeat in phases if name in repeat]
        _phase_figure(report, f"jobd phase: {name}, median", [median(p) for p in per_repeat])
    slowest = [max(repeat[PLACED_TO_END]) for repeat in phases if PLACED_TO_END in repeat]
    if slowest:
        _phase_figure(report, f"jobd phase: {PLACED_TO_END}, slowest run", slowest)


def _phase_figure(report: Report, name: str, seconds: list[float]) -> None:
    add_figure(report, name, "ms", [s * 1000 for s in seconds], scenario=SCENARIO)
