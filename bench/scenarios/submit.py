"""Scenario 1: submit throughput. N trivial jobs submitted by 1, 8 and 64 concurrent clients
through jobd's API, and through `jobctl` as a shell loop would; peers: `sbatch --wrap true`
and `tsp true`. jobd's jobs queue behind a job that fills the node, so what is measured is
accepting work (and a queue that grows to N), not running it. Beside them, the HTTP floor:
an aiohttp server that only parses the body and answers, driven by the same client.

Users on the TCP port authenticate each request with an API token or a signature: at 8
clients one daemon takes the same submissions through the Unix socket's peer credentials,
a token, and signed requests (a new nonce and HMAC per request, on kept-alive connections),
in interleaved rounds.

Rates on this 2-core VM drift from run to run (the same build measured minutes apart can
differ by half), so beside them the scenario reports the CPU the server process spent per
job accepted: jobd's daemon and the floor's server, the work each does for a submission."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.daemon import (
    BIN,
    BLOCKER_PLAN,
    IMAGE,
    BenchDaemon,
    post_json,
    post_raw,
    wait_for_status,
)
from bench.report import Figure, Report
from bench.scenarios.common import command_runner, concurrently, peers, percentile
from jobctl.signing import signed_headers

SCENARIO = "1 submit"
JOB = {"image": IMAGE, "command": ["true"], "network": "none", "plan": "starter"}


Samples = dict[tuple[str, int], list[tuple[float, list[float]]]]  # (system, clients) -> runs


def run(
    report: Report, *, n: int, clients: list[int], repeats: int, jobctl_n: int, peer_n: int
) -> None:
    results: Samples = {}
    cpu: dict[tuple[str, int], list[float]] = {}  # server CPU seconds per job, each run
    status = peers()
    for _ in range(repeats):
        for c in clients:
            measured = {
                "jobd": asyncio.run(_jobd(n, c)),
                HTTP_FLOOR: asyncio.run(_http_floor(n, c)),
            }
            if c == AUTH_CLIENTS:
                measured.update(asyncio.run(_authenticated(n, c)))
            for system, (wall, latencies, seconds) in measured.items():
                results.setdefault((system, c), []).append((wall, latencies))
                cpu.setdefault((system, c), []).append(seconds / len(latencies))
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
    _cpu_figures(report, cpu)


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


async def _jobd(n: int, clients: int) -> tuple[float, list[float], float]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home))
        daemon.start()
        try:
            async with daemon.session(clients + 4) as http:
                await _fill_the_node(http)
                assert daemon.process is not None
                return await _measured(daemon.process.pid, n, clients, lambda: _submit(http))
        finally:
            daemon.stop()


async def _authenticated(n: int, clients: int) -> dict[str, tuple[float, list[float], float]]:
    """The same submissions through peer credentials (the socket), an API token and signed
    requests (the TCP port), on one daemon, in interleaved rounds, so that the drift of this
    VM and of a growing queue falls on all three alike."""
    body = json.dumps(JOB).encode()
    digest = hashlib.sha256(body).hexdigest()
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        daemon = BenchDaemon(Path(home), tcp=True)
        daemon.start()
        assert daemon.process is not None
        try:
            async with daemon.session(clients + 4) as unix, daemon.tcp_session(clients + 4) as tcp:
                await _fill_the_node(unix)
                bearer = await post_json(unix, "/v1/tokens", {"kind": "bearer"})
                key = await post_json(unix, "/v1/tokens", {"kind": "hmac"})

                async def with_token() -> None:
                    headers = {"Authorization": f"Bearer {bearer['secret']}"}
                    await post_json(tcp, "/v1/jobs", JOB, headers=headers)

                async def signed() -> None:
                    headers = signed_headers(
                        key["keyId"], key["secret"], "POST", "/v1/jobs", digest
                    )
                    headers["Content-Type"] = "application/json"
                    await post_raw(tcp, "/v1/jobs", body, headers)

                systems = {PEER: lambda: _submit(unix), TOKEN: with_token, SIGNED: signed}
                return await _rounds(daemon.process.pid, n, clients, systems)
        finally:
            daemon.stop()


async def _rounds(
    server: int, n: int, clients: int, systems: Mapping[str, Callable[[], Awaitable[None]]]
) -> dict[str, tuple[float, list[float], float]]:
    """n submissions per system, in AUTH_ROUNDS rounds, the order turned each round; each
    system's wall time, latencies and server CPU summed over its rounds."""
    totals: dict[str, tuple[float, list[float], float]] = {s: (0.0, [], 0.0) for s in systems}
    names = list(systems)
    for round_number in range(AUTH_ROUNDS):
        turned = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in turned:
            wall, latencies, seconds = await _measured(
                server, n // AUTH_ROUNDS, clients, systems[name]
            )
            total_wall, total_latencies, total_seconds = totals[name]
            totals[name] = (total_wall + wall, total_latencies + latencies, total_seconds + seconds)
    return totals


async def _measured(
    server: int, n: int, clients: int, one: Callable[[], Awaitable[None]]
) -> tuple[float, list[float], float]:
    """`concurrently`'s wall time and latencies, and the CPU seconds process `server` spent
    meanwhile (its own, not its children's: jobd's podman service is idle while it accepts)."""
    process = psutil.Process(server)
    before = sum(process.cpu_times()[:2])
    wall, latencies = await concurrently(n, clients, one)
    return wall, latencies, sum(process.cpu_times()[:2]) - before


# The HTTP floor: an aiohttp server on a Unix socket that reads the body as JSON and answers
# 201 with a small JSON document, nothing else; the same client drives it. No job runner
# served by aiohttp in one Python process accepts faster on this machine.
HTTP_FLOOR = "aiohttp floor"
PEER = "jobd, peer credentials"
TOKEN = "jobd, API token"
SIGNED = "jobd, signed"
AUTH_CLIENTS = 8  # the ways to authenticate are compared at this many clients
AUTH_ROUNDS = 30  # fine interleaving: this VM drifts within seconds (see the README)
FLOOR_SERVER = """
import sys
from aiohttp import web

async def accept(request):
    body = await request.json()
    return web.json_response({"id": "job_" + "0" * 32, "image": body["image"]}, status=201)

app = web.Application()
app.router.add_post("/v1/jobs", accept)
app.router.add_get("/v1/plans", lambda request: web.json_response({}))
web.run_app(app, path=sys.argv[1], print=None, access_log=None)
"""


def _start_floor(socket_path: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(socket_path)])
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the aiohttp floor server did not start")
        time.sleep(0.01)
    return server


async def _http_floor(n: int, clients: int) -> tuple[float, list[float], float]:
    with tempfile.TemporaryDirectory(prefix="jobd-bench-") as home:
        socket_path = Path(home) / "floor.sock"
        server = await asyncio.to_thread(_start_floor, socket_path)
        try:
            connector = aiohttp.UnixConnector(path=str(socket_path), limit=clients + 4)
            async with aiohttp.ClientSession(connector=connector) as http:
                return await _measured(server.pid, n, clients, lambda: _submit(http))
        finally:
            server.terminate()
            server.wait(10)


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


def _figures(report: Report, results: Samples, n: int) -> None:
    sbatch = results.get(("slurm", 8))
    sbatch_rate = statistics.median(len(lat) / wall for wall, lat in sbatch) if sbatch else None
    peer = results.get((PEER, AUTH_CLIENTS))
    peer_rate = statistics.median(len(lat) / wall for wall, lat in peer) if peer else None
    for (system, c), samples in results.items():
        label = f"{c} client{'s' if c > 1 else ''}"
        rates = tuple(len(lat) / wall for wall, lat in samples)
        target, met = None, None
        if system in (TOKEN, SIGNED) and peer_rate is not None:
            target = ">= 90% of peer credentials' rate, same daemon"
            met = statistics.median(rates) >= 0.9 * peer_rate
        if system == "jobd" and c == 8:
            target = ">= 1,000 jobs/s and >= 10x sbatch"
            rate = statistics.median(rates)
            met = rate >= 1000 and (sbatch_rate is None or rate >= 10 * sbatch_rate)
            if sbatch_rate is not None:
                target += f" ({10 * sbatch_rate:,.0f} here)"
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


def _cpu_figures(report: Report, cpu: dict[tuple[str, int], list[float]]) -> None:
    for (system, c), per_job in cpu.items():
        report.add(
            Figure(
                scenario=SCENARIO,
                name=f"server CPU per job, {c} client{'s' if c > 1 else ''}",
                system=system,
                unit="µs",
                samples=tuple(seconds * 1e6 for seconds in per_job),
                higher_is_better=False,
            )
        )
