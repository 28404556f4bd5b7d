"""Scenario 2: dispatch latency. One job on an idle system, from submit until the job's process
runs in its container, sampled many times in a row; the median and p90 of each repeat.

Systems, each starting the same container (bench/scenarios/floor.py): jobd (POST /v1/jobs on
a fresh daemon), the podman API called directly through podman-py (create, start: the floor),
`podman run`, and the peers `tsp podman run` and `sbatch --wrap 'podman run'`. The target is
jobd's overhead over the floor: at most 50 ms between the medians (met on the median over
repeats). jobd's events (GET /v1/runs/{id}/events) split its latency into phases.

The timestamp: the job's first and only process is `busybox adjtimex`, which reads the kernel's
CLOCK_REALTIME with adjtimex(2) and prints it (in nanoseconds when the kernel reports STA_NANO,
else microseconds). Containers share the host's kernel and its realtime clock, so the stamp
compares directly with the host's `time.time()` taken just before the submit. busybox's `date`
here prints `%N` literally, so it cannot be used; /proc/uptime would only give 10 ms steps.
The stamp comes back through the system's own output path (jobd's log API, podman's logs, the
peers' output files); its value is the measurement, not when the bench reads it, so the bench
can wait gently: it polls jobd's run every 100 ms and the peers' output files every 10 ms.

Samples are taken in rounds: one of each system per round, in a new random order each round,
so that load from elsewhere on the machine falls on every system alike. Within a repeat jobd
and the floor's podman service stay up, idle but for the bench's own samples. Before each
sample the previous job has ended and its container is gone, and a short pause lets the system
settle; Slurm's pause is random over a second, so its 1 s scheduling tick is hit at every
phase. The first round is a warm-up and not counted (it may build jobd's image). jobd's
phases come from its event times, which it records to the millisecond. A jobd run that does
not succeed is taken again, counted in a figure of its own (target 0), its reason printed to
stderr.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.daemon import IMAGE, BenchDaemon, get_json, post_json, wait_for_status
from bench.report import Figure, Report
from bench.scenarios.common import failed_runs_figure, median, peers, percentile
from bench.scenarios.floor import (
    WAIT_INTERVAL,
    ContainerLimits,
    client,
    podman_service,
    remove_labelled,
)

SCENARIO = "2 dispatch"
LABEL = "dispatch"
LIMITS = ContainerLimits(plan="bench-dispatch", memory_mb=64, cpus=1.0)
STAMP = ("busybox", "adjtimex")
JOB = {"image": IMAGE, "command": list(STAMP), "network": "none", "plan": LIMITS.plan}
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
STA_NANO = 0x2000  # adjtimex status bit: time.tv_usec holds nanoseconds
SETTLE_SECONDS = 0.1
SLURM_DEPHASE_SECONDS = 1.0
RUN_POLL_SECONDS = 0.1  # polling jobd slowly, so that the poll does not load it
FILE_POLL_SECONDS = 0.01
PEER_TIMEOUT_SECONDS = 120.0
TARGET_OVERHEAD_MS = 50.0
FLOOR = "podman API"
MAX_FAILED_RUNS = 20  # per repeat: beyond, jobd is broken rather than flaky


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    latency: float  # seconds from submit to the job's process
    phases: dict[str, float] = field(default_factory=dict)  # jobd only: its events' intervals


Sampler = Callable[[], Awaitable[Sample]]


def run(report: Report, *, samples: int, repeats: int) -> None:
    blocking: dict[str, Callable[[Any], float]] = {
        FLOOR: floor_sample,
        "podman run": _podman_run_sample,
    }
    blocking |= _peer_samplers(report, peers())
    results: dict[str, list[list[Sample]]] = {}
    failed_runs: list[int] = []  # jobd's, per repeat
    try:
        for _ in range(repeats):
            taken, failures = asyncio.run(_repeat(samples, blocking))
            for system, series in taken.items():
                results.setdefault(system, []).append(series)
            failed_runs.append(len(failures))
    finally:
        remove_labelled(LABEL)
    _figures(report, results)
    failed_runs_figure(report, SCENARIO, failed_runs)


async def _repeat(
    samples: int, blocking: dict[str, Callable[[Any], float]]
) -> tuple[dict[str, list[Sample]], list[str]]:
    """A fresh jobd and a fresh podman service, both idle but for the bench's samples; the
    samples, and jobd's runs that failed."""
    failures: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="jobd-bench-") as home,
        podman_service() as socket,
        client(socket) as api,
    ):
        daemon = BenchDaemon(Path(home), config=LIMITS.toml())
        daemon.start()
        try:
            async with daemon.session(4) as http:
                samplers = {name: _in_thread(one, api) for name, one in blocking.items()}
                jobd = functools.partial(_jobd_sample, http, failures)
                return await _rounds(samples, {"jobd": jobd, **samplers}), failures
        finally:
            daemon.stop()


async def _rounds(samples: int, samplers: dict[str, Sampler]) -> dict[str, list[Sample]]:
    """One sample of each system per round, in a new random order each round, so that load
    from elsewhere falls on all of them alike. The first round warms up and is dropped; in it
    jobd goes first, since its first job builds the image every system runs."""
    taken: dict[str, list[Sample]] = {name: [] for name in samplers}
    order = list(samplers)  # jobd first
    for round_ in range(samples + 1):
        if round_:
            random.shuffle(order)
        for name in order:
            dephase = random.uniform(0, SLURM_DEPHASE_SECONDS) if name == "slurm" else 0.0
            await asyncio.sleep(SETTLE_SECONDS + dephase)
            taken[name].append(await samplers[name]())
    return {name: series[1:] for name, series in taken.items()}


def _in_thread(one: Callable[[Any], float], api: Any) -> Sampler:
    async def sample() -> Sample:
        return Sample(latency=await asyncio.to_thread(one, api))

    return sample


# -- the job's timestamp ----------------------------------------------------------------


def parse_stamp(output: str) -> float | None:
    """The realtime clock `busybox adjtimex` printed, or None until its output is complete."""
    fields = dict(re.findall(r"^\s*([\w.]+):\s+(-?\d+)", output, flags=re.MULTILINE))
    if "return value" not in output or not {"status", "time.tv_sec", "time.tv_usec"} <= set(fields):
        return None
    fraction = int(fields["time.tv_usec"]) / (1e9 if int(fields["status"]) & STA_NANO else 1e6)
    return int(fields["time.tv_sec"]) + fraction


def _stamp(output: str, where: str) -> float:
    stamp = parse_stamp(output)
    if stamp is None:
        raise RuntimeError(f"{where}: no timestamp in the job's output: {output!r}")
    return stamp


# -- jobd -------------------------------------------------------------------------------


async def _jobd_sample(http: aiohttp.ClientSession, failures: list[str]) -> Sample:
    """One run that succeeded. A run that failed is noted in `failures` and taken again: its
    latency would not be a dispatch's."""
    while True:
        began = time.time()
        run_id = (await post_json(http, "/v1/jobs", JOB))["latestRunId"]
        ended = await wait_for_status(http, run_id, set(TERMINAL), interval=RUN_POLL_SECONDS)
        if ended["status"] == "succeeded":
            return await _jobd_result(http, run_id, began)
        failures.append(f"{run_id} {ended['status']}: {ended.get('failureReason')}")
        print(f"{SCENARIO}: jobd run {failures[-1]}", file=sys.stderr)
        if len(failures) > MAX_FAILED_RUNS:
            raise RuntimeError(f"{len(failures)} jobd runs failed, the last: {failures[-1]}")
        await asyncio.sleep(SETTLE_SECONDS)


async def _jobd_result(http: aiohttp.ClientSession, run_id: str, began: float) -> Sample:
    logs = await get_json(http, f"/v1/runs/{run_id}/logs")
    stamp = _stamp("\n".join(line["text"] for line in logs["lines"]), f"jobd run {run_id}")
    events = await get_json(http, f"/v1/runs/{run_id}/events")
    return Sample(latency=stamp - began, phases=_phases(began, events["events"], stamp))


def _phases(began: float, events: list[dict[str, Any]], stamp: float) -> dict[str, float]:
    """The time between consecutive milestones: the submit, each event (named by its detail)
    before the run's transition to running, the process's start. jobd records that transition
    only once podman's start call has returned, which races with the process's own first
    instruction, so it is no milestone on the way to it."""
    marks = [("submit", began)]
    for event in itertools.takewhile(lambda e: e["to"] != "running", events):
        marks.append((event.get("detail") or event["to"], _epoch(event["at"])))
    marks.append(("process started", stamp))
    return {f"{a} → {b}": tb - ta for (a, ta), (b, tb) in itertools.pairwise(marks)}


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


# -- the others, one blocking call per sample (each given the floor's podman client) --


def floor_sample(api: Any, *, init: bool = False, label: str = LABEL) -> float:
    """Seconds from create to the container's process reading the clock, through the podman
    API; `init`: with podman's --init (catatonit as PID 1), as jobd runs every container."""
    began = time.time()
    container = api.containers.create(
        IMAGE, command=list(STAMP), init=init, **LIMITS.api_options(label)
    )
    try:
        container.start()
        container.wait(interval=WAIT_INTERVAL)
        logs = container.logs(stdout=True, stderr=False)
        output = logs if isinstance(logs, bytes) else b"".join(logs)
    finally:
        container.remove(force=True)
    return _stamp(output.decode(), "podman API") - began


def _podman_run_sample(_: Any) -> float:
    command = LIMITS.podman_run(LABEL, STAMP)
    began = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return _stamp(done.stdout, "podman run") - began


def _peer_samplers(report: Report, status: dict[str, Any]) -> dict[str, Callable[[Any], float]]:
    """The peers that can run podman, each as a one-sample function; the others reported."""
    samplers: dict[str, Callable[[Any], float]] = {}
    for peer, sampler in (("tsp", _tsp_sample), ("slurm", _slurm_sample)):
        peer_status = status.get(peer, {})
        if not peer_status.get("available"):
            report.missing(SCENARIO, peer, peer_status.get("reason", "not set up"))
        elif peer_status.get("podman_ok") is False:
            report.missing(SCENARIO, peer, f"podman under {peer} failed: {_why(peer_status)}")
        else:
            samplers[peer] = functools.partial(sampler, peer_status)
    return samplers


def _why(peer_status: dict[str, Any]) -> str:
    return str(peer_status.get("podman_reason") or "unknown reason")


def _tsp_sample(tsp: dict[str, Any], _: Any) -> float:
    env = {**os.environ, "TS_SOCKET": tsp["socket"]}
    with tempfile.TemporaryDirectory(prefix="jobd-bench-tsp-") as directory:
        out = Path(directory) / "stamp"
        script = f"exec {shlex.join(LIMITS.podman_run(LABEL, STAMP))} > {shlex.quote(str(out))}"
        began = time.time()
        submitted = subprocess.run(
            ["tsp", "-n", "sh", "-c", script], env=env, capture_output=True, text=True, check=True
        )
        stamp = _wait_for_stamp(out, "tsp")
        # the job ends (its container removed) before the next sample
        subprocess.run(
            ["tsp", "-w", submitted.stdout.strip()], env=env, capture_output=True, check=False
        )
        subprocess.run(["tsp", "-C"], env=env, capture_output=True, check=False)
    return stamp - began


def _slurm_sample(slurm: dict[str, Any], _: Any) -> float:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-slurm-") as directory:
        out = Path(directory) / "stamp"
        command = ["sbatch", "--parsable", "-Q", "-p", slurm["partition"], "-c", "1"]
        command += ["-D", directory, "-o", str(out)]
        command += ["--wrap", shlex.join(LIMITS.podman_run(LABEL, STAMP))]
        began = time.time()
        submitted = subprocess.run(command, capture_output=True, text=True, check=True)
        stamp = _wait_for_stamp(out, "slurm")
        _wait_for_slurm_job(submitted.stdout.strip().split(";")[0])
    return stamp - began


def _wait_for_stamp(out: Path, where: str) -> float:
    deadline = time.monotonic() + PEER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if out.exists():
            stamp = parse_stamp(out.read_text(errors="replace"))
            if stamp is not None:
                return stamp
        time.sleep(FILE_POLL_SECONDS)
    raise RuntimeError(f"{where}: the job printed no timestamp within {PEER_TIMEOUT_SECONDS} s")


def _wait_for_slurm_job(job_id: str) -> None:
    """Until squeue no longer lists it (pending, running or completing)."""
    deadline = time.monotonic() + PEER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, check=True
        )
        if not listed.stdout.strip():
            return
        time.sleep(RUN_POLL_SECONDS)
    raise RuntimeError(f"slurm job {job_id} still listed after {PEER_TIMEOUT_SECONDS} s")


# -- the table --------------------------------------------------------------------------


def _figures(report: Report, results: dict[str, list[list[Sample]]]) -> None:
    for system, repeats in results.items():
        for name, pct in (("median", 50.0), ("p90", 90.0)):
            report.add(
                Figure(
                    scenario=SCENARIO,
                    name=f"submit → process start, {name}",
                    system=system,
                    unit="ms",
                    samples=tuple(percentile(_latencies(r), pct) * 1000 for r in repeats),
                    higher_is_better=False,
                )
            )
    if "jobd" in results and FLOOR in results:
        _overhead_figure(report, results["jobd"], results[FLOOR])
    _phase_figures(report, results.get("jobd", []))


def _latencies(samples: list[Sample]) -> list[float]:
    return [s.latency for s in samples]


def _overhead_figure(report: Report, jobd: list[list[Sample]], floor: list[list[Sample]]) -> None:
    overheads = tuple(
        (median(_latencies(mine)) - median(_latencies(base))) * 1000
        for mine, base in zip(jobd, floor, strict=True)
    )
    report.add(
        Figure(
            scenario=SCENARIO,
            name="dispatch overhead over the podman API, median",
            system="jobd",
            unit="ms",
            samples=overheads,
            higher_is_better=False,
            target=f"<= {TARGET_OVERHEAD_MS:g} ms",
            met=median(overheads) <= TARGET_OVERHEAD_MS,
        )
    )


def _phase_figures(report: Report, repeats: list[list[Sample]]) -> None:
    """Where jobd's latency goes: each phase's median per repeat, in the order they happen."""
    names = list(dict.fromkeys(name for r in repeats for s in r for name in s.phases))
    for name in names:
        per_repeat = [[s.phases[name] for s in r if name in s.phases] for r in repeats]
        report.add(
            Figure(
                scenario=SCENARIO,
                name=f"jobd phase: {name}, median",
                system="jobd",
                unit="ms",
                samples=tuple(median(p) * 1000 for p in per_repeat if p),
                higher_is_better=False,
            )
        )
