"""/v1/runs/{id}/logs and /v1/jobs/{id}/logs: a run's log, whole, filtered, its tail, or
followed as it grows; the logs of a job's runs merged in time order."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import orjson
from aiohttp import web

from jobd.api.context import SERVICES, STREAMS
from jobd.api.middleware import caller, reach
from jobd.api.requests import int_param, json_response, time_synonym
from jobd.errors import InvalidRequest
from jobd.logs.follower import LogFollower
from jobd.logs.lines import LogLine, LogQuery, k8s_text, parse_time
from jobd.logs.run_log import RunLog

T = TypeVar("T")
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 100_000
STREAM_PIECE = 4 * 1024 * 1024  # bytes of log read per write to a streaming response
# text in one response that is not a stream of the whole log (lines are cut at 64 KiB each)
MAX_LOG_RESPONSE_CHARS = 16 * 1024 * 1024
EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRequest:
    query: LogQuery
    limit: int
    limited: bool  # limit given explicitly: it applies to streams too
    tail: int | None
    follow: bool
    format: str


def _log_request(request: web.Request) -> LogRequest:
    limit = int_param(request, "limit", DEFAULT_LOG_LIMIT)
    tail = int_param(request, "tail", 0) or None
    if not 1 <= limit <= MAX_LOG_LIMIT or (tail is not None and not 1 <= tail <= MAX_LOG_LIMIT):
        raise InvalidRequest(f"limit and tail must be between 1 and {MAX_LOG_LIMIT}")
    fmt = request.query.get("format", "json")
    if fmt not in {"json", "ndjson", "text"}:
        raise InvalidRequest("format: one of json, ndjson, text")
    follow = request.query.get("follow", "false").lower() in {"1", "true", "yes"}
    return LogRequest(
        query=LogQuery(
            since=time_synonym(request, "since", "start"),  # start, end: the cron seed's
            until=time_synonym(request, "until", "end"),
            contains=request.query.get("filter") or None,
        ),
        limit=limit,
        limited="limit" in request.query,
        tail=tail,
        follow=follow,
        format=fmt,
    )


async def get_run_logs(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    run = await services.runs.get(request.match_info["run_id"], reach(request))
    wanted = _log_request(request)
    run_log = services.logs.open(run.id)
    if wanted.follow:  # open as long as the run runs: one of the caller's streams
        with request.app[STREAMS].held(caller(request)):
            return await _stream_logs(request, run.id, run_log, wanted)
    if wanted.format != "json":
        return await _stream_logs(request, run.id, run_log, wanted)
    lines, truncated = await asyncio.to_thread(_collect, run_log, wanted)
    return json_response(
        {
            "runId": run.id,
            "lines": [line.to_api(run.id) for line in lines],
            "omittedBytes": run_log.omitted_bytes,
            "truncated": truncated,
        }
    )


def _collect(run_log: RunLog, wanted: LogRequest) -> tuple[list[LogLine], bool]:
    return _first_or_last(run_log.lines(wanted.query), wanted, lambda line: len(line.text))


def _first_or_last(
    lines: Iterable[T], wanted: LogRequest, size: Callable[[T], int]
) -> tuple[list[T], bool]:
    """The last `tail` lines, or the first `limit` and whether more were left out; either
    way no more than MAX_LOG_RESPONSE_CHARS of text (the newest lines kept of a tail), so a
    response, and what building it holds, stays bounded whatever the lines' length."""
    if wanted.tail is not None:
        last: collections.deque[T] = collections.deque()
        held = 0
        for line in lines:
            last.append(line)
            held += size(line)
            while len(last) > wanted.tail or (held > MAX_LOG_RESPONSE_CHARS and len(last) > 1):
                held -= size(last.popleft())
        return list(last), False
    first: list[T] = []
    held = 0
    for line in lines:
        held += size(line)
        if len(first) == wanted.limit or (held > MAX_LOG_RESPONSE_CHARS and first):
            return first, True
        first.append(line)
    return first, False


async def get_job_logs(request: web.Request) -> web.StreamResponse:
    """The lines of every run of the job in the time window, in time order, each tagged with
    its run id (runs of an `allow` schedule may overlap)."""
    services = request.app[SERVICES]
    wanted = _log_request(request)
    if wanted.follow:
        raise InvalidRequest("follow: follow one run's log (GET /v1/runs/{id}/logs)")
    job, logs = await services.logs.of_job(
        request.match_info["job_id"],
        reach(request),
        since=wanted.query.since,
        until=wanted.query.until,
    )
    tagged, truncated = await asyncio.to_thread(_collect_runs, logs, wanted)
    if wanted.format == "json":
        lines = [line.to_api(run_id) for run_id, line in tagged]
        return json_response({"jobId": job.id, "lines": lines, "truncated": truncated})
    content_type = "text/plain" if wanted.format == "text" else "application/x-ndjson"
    if wanted.format == "text":  # each line after its run's id, as `podman logs` of a pod
        body = b"".join(f"{run_id} {line.text}\n".encode() for run_id, line in tagged)
    else:
        body = b"".join(_render(line, run_id, wanted.format) for run_id, line in tagged)
    return web.Response(body=body, headers={"Content-Type": f"{content_type}; charset=utf-8"})


def _collect_runs(
    logs: list[tuple[str, RunLog]], wanted: LogRequest
) -> tuple[list[tuple[str, LogLine]], bool]:
    def tagged(run_id: str, run_log: RunLog) -> Iterator[tuple[str, LogLine]]:
        return ((run_id, line) for line in run_log.lines(wanted.query))

    def moment(item: tuple[str, LogLine]) -> datetime:
        return parse_time(item[1].time) or EPOCH  # jobd's own marker lines carry no time

    merged = heapq.merge(*(tagged(*log) for log in logs), key=moment)
    return _first_or_last(merged, wanted, lambda item: len(item[1].text))


def _render(line: LogLine, run_id: str, fmt: str) -> bytes:
    if fmt == "text":
        return (line.text + "\n").encode()
    return orjson.dumps(line.to_api(run_id)) + b"\n"


async def _stream_logs(
    request: web.Request, run_id: str, run_log: RunLog, wanted: LogRequest
) -> web.StreamResponse:
    services = request.app[SERVICES]
    content_type = "text/plain" if wanted.format == "text" else "application/x-ndjson"
    response = web.StreamResponse(headers={"Content-Type": f"{content_type}; charset=utf-8"})
    await response.prepare(request)
    if wanted.tail is not None:
        lines, _ = await asyncio.to_thread(_collect, run_log, wanted)
        await response.write(b"".join(_render(line, run_id, wanted.format) for line in lines))
        if not wanted.follow:
            await response.write_eof()
            return response
    follower = LogFollower(
        lambda: services.logs.open(run_id), wanted.query, skip_existing=wanted.tail is not None
    )
    # plain text of a whole log: k8s lines to text a block at a time, not line by line
    as_text = wanted.format == "text" and wanted.query == LogQuery() and not wanted.limited
    remaining = wanted.limit if wanted.limited else None
    budget = MAX_LOG_RESPONSE_CHARS  # of a limited stream's text
    while remaining is None or remaining > 0:
        changed = services.logs.changed(run_id)
        over = await services.logs.ended(run_id)  # then one more read gets everything
        more = True
        while more and (remaining is None or remaining > 0):
            items, more = await asyncio.to_thread(follower.read, STREAM_PIECE)
            if as_text:
                text = (
                    k8s_text(i) if isinstance(i, bytes) else _render(i, run_id, "text")
                    for i in items
                )
                await response.write(b"".join(text))
                continue
            remaining, budget = await _write_lines(
                response, follower.lines(items), wanted, run_id, (remaining, budget)
            )
        if over and not as_text:  # a last line without its newline, read to the end
            remaining, budget = await _write_lines(
                response, follower.ended(), wanted, run_id, (remaining, budget)
            )
        if not wanted.follow or over or _gone(request):
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await changed.wait()
    with contextlib.suppress(ConnectionResetError):  # the client hung up
        await response.write_eof()
    return response


async def _write_lines(
    response: web.StreamResponse,
    batch: list[LogLine],
    wanted: LogRequest,
    run_id: str,
    left: tuple[int | None, int],
) -> tuple[int | None, int]:
    """A batch of lines written, as many as a limited stream still sends; what is left of
    its lines and characters."""
    remaining, budget = left
    if remaining is not None:
        batch, remaining, budget = _limited(batch, remaining, budget)
    if batch:
        await response.write(b"".join(_render(line, run_id, wanted.format) for line in batch))
    return remaining, budget


def _limited(batch: list[LogLine], remaining: int, budget: int) -> tuple[list[LogLine], int, int]:
    """As much of `batch` as a limited stream still sends: `remaining` lines, `budget`
    characters of text (at least one line in all); what is left of both after it (0 lines:
    done)."""
    if budget <= 0:
        return [], 0, 0
    taken: list[LogLine] = []
    for line in batch[:remaining]:
        if taken and len(line.text) > budget:
            return taken, 0, 0
        taken.append(line)
        budget -= len(line.text)
    return taken, remaining - len(taken), budget


def _gone(request: web.Request) -> bool:
    """Whether the client hung up: a follower of a quiet run would not learn it from a write
    (and would hold its stream, and its slot, until the run ended)."""
    transport = request.transport
    return transport is None or transport.is_closing()
