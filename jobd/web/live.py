"""The pages' live updates, over Server-Sent Events (htmx's SSE extension swaps them in).

- The jobs page and the node page get a fresh snapshot of their rows when something changed:
  the newest run event's id and the runs' progress times (read at most twice a second for all
  open pages, store/changes.py) say whether any run changed or moved on. A slow client gets
  the latest snapshot, never a backlog.
- A run page gets its new log lines as they are written (escaped HTML), its status, state
  changes and progress when they change (progress is written at most once a second, and a
  moment after the run ends its last), and its new metric samples (JSON, for the charts). A
  client that falls more than SKIP_BYTES behind the log skips to its end, with a line saying
  so.

Each stream is one of its user's streaming connections (max_streams_per_user), ends when the
client goes or jobd shuts down, and writes nothing it has not been asked for but a keep-alive
comment now and then."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from jobd.api.context import SERVICES, STREAMS
from jobd.api.middleware import caller, reach
from jobd.domain.jobs import JobFilter
from jobd.domain.metrics import MINUTE
from jobd.errors import InvalidRequest, NotFound
from jobd.logs.follower import LogFollower
from jobd.logs.lines import LogLine, LogQuery
from jobd.web.pages import (
    job_filter,
    job_rows,
    listing_reach_of,
    node_values,
    run_metrics_query,
    run_values,
)
from jobd.web.render import fragment

TICK = 0.5  # how often a stream looks for news
KEEP_ALIVE = 15.0
SKIP_BYTES = 1024 * 1024  # a run page further behind its log than this skips to the end
PIECE = 256 * 1024
LAST_PROGRESS = 5.0  # seconds an ended run's page still looks for its last progress
CLOSING = web.AppKey("live_closing", asyncio.Event)


Version = tuple[int, float]


class Changes:
    """What says that runs changed (Runs.latest_change), read at most every TICK for every
    stream together."""

    def __init__(self, latest: Callable[[], Awaitable[Version]]) -> None:
        self.latest = latest
        self._version: Version = (0, 0.0)
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def version(self) -> Version:
        async with self._lock:
            if time.monotonic() - self._read_at >= TICK:
                self._version = await self.latest()
                self._read_at = time.monotonic()
            return self._version


CHANGES = web.AppKey("live_changes", Changes)


def event(name: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {name}\n{lines}\n".encode()


@asynccontextmanager
async def stream(request: web.Request) -> AsyncIterator[web.StreamResponse]:
    """An event stream, held as one of the caller's streaming connections."""
    with request.app[STREAMS].held(caller(request)):
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page went away mid-write
            yield response


class Quiet:
    """A stream's writes, and a keep-alive comment after KEEP_ALIVE seconds without one (a
    proxy or a browser may drop a silent connection)."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.since = time.monotonic()

    async def write(self, data: bytes) -> None:
        self.since = time.monotonic()
        await self.response.write(data)

    async def keep_alive(self) -> None:
        if time.monotonic() - self.since > KEEP_ALIVE:
            await self.write(b": keep-alive\n\n")


def open_(request: web.Request) -> bool:
    transport = request.transport
    gone = transport is None or transport.is_closing()
    return not gone and not request.app[CLOSING].is_set()


async def jobs_stream(request: web.Request) -> web.StreamResponse:
    try:
        where = job_filter(request)
    except InvalidRequest:  # the page says what is wrong; its rows are the unfiltered ones
        where = JobFilter(reach=listing_reach_of(request))
    changes = request.app[CHANGES]
    async with stream(request) as response:
        # the rows at once: the page may be a moment old
        seen: Version | None = None
        quiet = Quiet(response)
        while open_(request):
            await asyncio.sleep(TICK)
            version = await changes.version()
            if version != seen:
                seen = version
                docs, _ = await job_rows(request, where)
                rows = fragment("_job_rows.html", jobs=docs, admin=caller(request).admin)
                await quiet.write(event("jobs", rows))
            else:
                await quiet.keep_alive()
    return response


async def node_stream(request: web.Request) -> web.StreamResponse:
    async with stream(request) as response:
        shown, quiet = "", Quiet(response)
        while open_(request):
            html = fragment("_node.html", **await node_values(request))
            if html != shown:
                shown = html
                await quiet.write(event("node", html))
            else:
                await quiet.keep_alive()
            await asyncio.sleep(2 * TICK)
    return response


async def run_stream(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    run = await services.runs.get(request.match_info["run_id"], reach(request))
    follower = LogFollower(lambda: services.logs.open(run.id), LogQuery(), skip_existing=True)
    async with stream(request) as response:
        state = RunState(request, run.id)
        while open_(request):
            changed = services.logs.changed(run.id)
            await _send_log(response, follower, services.logs.open(run.id).kept().ranges[-1][1])
            await state.news(response)
            if state.ended_and_read:
                await _send_log(response, follower, services.logs.open(run.id).kept().ranges[-1][1])
                last = follower.ended()  # a last line without its newline
                if last:
                    html = "".join(fragment("_log_line.html", line=line) for line in last)
                    await response.write(event("log", html))
                await response.write(b": the run has ended\n\n")
                await _idle(request, response, state)
                break
            await _wait(changed)
    return response


async def _wait(changed: asyncio.Event) -> None:
    """Until the log grows, or a moment passes (the run's state may change meanwhile)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(TICK * 2):
            await changed.wait()


async def _idle(request: web.Request, response: web.StreamResponse, state: RunState) -> None:
    """Keep an ended run's stream open (an EventSource would otherwise reconnect), sending
    its last progress if it is written after the run ended."""
    quiet = Quiet(response)
    ended = time.monotonic()
    while open_(request):
        await asyncio.sleep(TICK * 2)
        if time.monotonic() - ended < LAST_PROGRESS:
            await state.last_progress(quiet)
        await quiet.keep_alive()


async def _send_log(response: web.StreamResponse, follower: LogFollower, end: int) -> None:
    if end - follower.position > SKIP_BYTES:
        skipped = end - follower.position
        follower.position = end
        marker = LogLine(
            time="", stream="jobd", text=f"[{skipped} bytes not shown live: download the log]"
        )
        await response.write(event("log", fragment("_log_line.html", line=marker)))
    more = True
    while more:
        items, more = await asyncio.to_thread(follower.read, PIECE)
        lines = follower.lines(items)
        if lines:
            html = "".join(fragment("_log_line.html", line=line) for line in lines)
            await response.write(event("log", html))


class RunState:
    """What a run page has been sent of the run's state, and its metrics."""

    def __init__(self, request: web.Request, run_id: str) -> None:
        self.request = request
        self.run_id = run_id
        # None: the state is sent at once (it may have moved since the page was rendered)
        self.key: tuple[Any, ...] | None = None
        self.progress_key: tuple[Any, ...] | None = None
        self.metrics_at = time.time()
        self.ended_and_read = False

    async def news(self, response: web.StreamResponse) -> None:
        values = await run_values(self.request, self.run_id)
        key = _key(values)
        if key != self.key:
            self.key = key
            await response.write(event("status", fragment("_run_status.html", **values)))
            await response.write(event("events", fragment("_run_events.html", **values)))
        await self._progress(response.write, values["run"])
        await self._metrics(response)
        self.ended_and_read = values["run"]["finishedAt"] is not None

    async def last_progress(self, quiet: Quiet) -> None:
        """The ended run's progress, if it moved since it was last sent."""
        try:
            run = await self.request.app[SERVICES].runs.get(self.run_id, reach(self.request))
        except NotFound:  # its job was deleted meanwhile: nothing more to show
            return
        await self._progress(quiet.write, run.to_api())

    async def _progress(
        self, write: Callable[[bytes], Awaitable[None]], run: dict[str, Any]
    ) -> None:
        phases = [(p["name"], p["startedAt"]) for p in run["phases"]]
        key = (run["progress"], phases, run["finishedAt"])
        if key != self.progress_key:
            self.progress_key = key
            await write(event("progress", fragment("_run_progress.html", run=run)))

    async def _metrics(self, response: web.StreamResponse) -> None:
        services = self.request.app[SERVICES]
        if time.time() - self.metrics_at < services.config.metrics.sample_seconds:
            return
        since, self.metrics_at = self.metrics_at, time.time()
        query = run_metrics_query(self.request, since=since - MINUTE)
        doc = await services.metrics.of_run(self.run_id, query, reach(self.request))
        await response.write(event("metrics", orjson.dumps(doc).decode()))


def _key(values: dict[str, Any]) -> tuple[Any, ...]:
    run = values["run"]
    usage = run.get("usage") or {}
    return (
        run["status"],
        run["finishedAt"],
        len(values["events"]),
        usage.get("samples"),
        str(values["queue"]),
    )
