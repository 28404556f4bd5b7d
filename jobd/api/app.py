"""The HTTP API (JSON, under /v1). Handlers parse, call, respond; errors become
`{"error": {"code", "message"}}` in one middleware; the TCP listener needs the bearer token and
the Unix socket identifies callers by their peer credentials."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import hmac
import logging
import os
import pwd
import socket
import struct
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from aiohttp import WSMsgType, web

from jobd import __version__
from jobd.config import Config
from jobd.doctor import checks
from jobd.errors import Conflict, InvalidRequest, JobdError, RuntimeFailure, Unauthorized
from jobd.inventory import Inventory
from jobd.jobs import Jobs, openapi_document
from jobd.logs import LogFollower, LogLine, LogPump, LogQuery, RunLog, k8s_text, parse_time
from jobd.models import (
    ACTIVE_STATUSES,
    Job,
    Owner,
    PassTimes,
    Run,
    RunStatus,
    from_epoch,
    now,
    rfc3339,
)
from jobd.placement import free_on, node_doc
from jobd.recipes import Recipes
from jobd.runtime.exec import ExecStream
from jobd.runtime.podman import PodmanRuntime
from jobd.runtime.types import RuntimeInfo
from jobd.store import JobFilter, Store

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
DEFAULT_PAGE = 50
MAX_PAGE = 1000
DEFAULT_LOG_LIMIT = 1000
MAX_LOG_LIMIT = 100_000
HEALTH_INFO_SECONDS = 5.0  # how stale the podman facts /v1/health serves may be
STREAM_PIECE = 4 * 1024 * 1024  # bytes of log read per write to a streaming response
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    config: Config
    store: Store
    jobs: Jobs
    recipes: Recipes
    pump: LogPump
    runtime: PodmanRuntime
    info: RuntimeInfo
    inventory: Inventory
    waiting: Callable[[], Mapping[str, str]]  # why queued runs wait, as placement last saw
    token: str
    started: float
    passes: PassTimes
    pass_waits: PassTimes


SERVICES = web.AppKey("services", Services)


def create_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[error_middleware, auth_middleware])
    app[SERVICES] = services
    app.router.add_post("/v1/jobs", create_job)
    app.router.add_get("/v1/jobs", list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    app.router.add_patch("/v1/jobs/{job_id}", update_job)
    app.router.add_delete("/v1/jobs/{job_id}", delete_job)
    app.router.add_get("/v1/jobs/{job_id}/status", job_status)
    app.router.add_get("/v1/jobs/{job_id}/runs", list_runs)
    app.router.add_get("/v1/jobs/{job_id}/logs", get_job_logs)
    app.router.add_post("/v1/jobs/{job_id}/runs", rerun_job)
    app.router.add_get("/v1/runs/{run_id}", get_run)
    app.router.add_get("/v1/runs/{run_id}/events", get_run_events)
    app.router.add_post("/v1/runs/{run_id}/cancel", cancel_run)
    app.router.add_post("/v1/runs/{run_id}/stop", stop_run)
    app.router.add_get("/v1/runs/{run_id}/exec", exec_in_run)
    app.router.add_get("/v1/runs/{run_id}/logs", get_run_logs)
    app.router.add_get("/v1/recipes", list_recipes)
    app.router.add_post("/v1/recipes", create_recipe)
    app.router.add_get("/v1/recipes/{name}", get_recipe)
    app.router.add_put("/v1/recipes/{name}", put_recipe)
    app.router.add_patch("/v1/recipes/{name}", update_recipe)
    app.router.add_delete("/v1/recipes/{name}", delete_recipe)
    app.router.add_get("/v1/plans", list_plans)
    app.router.add_get("/v1/node", get_node)
    app.router.add_get("/v1/doctor", doctor)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    return app


# -- middleware -----------------------------------------------------------------------


def _json(data: Any, *, status: int = 200) -> web.Response:
    """A JSON response, encoded by orjson: a tenth of json.dumps's time for a job."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JobdError as e:
        return _json(error_body(e.code, e.message), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            e.status, "http_error"
        )
        message = e.text if e.status != 413 else f"request body over {MAX_BODY} bytes"
        return _json(error_body(code, message or e.reason), status=e.status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if caller(request).via != "unix":
        token = request.app[SERVICES].token
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized()
    return await handler(request)


# per connection: a client's requests on one connection come from the same peer
_callers: weakref.WeakKeyDictionary[asyncio.BaseTransport, Owner] = weakref.WeakKeyDictionary()


def caller(request: web.Request) -> Owner:
    """Who is asking: the peer's uid on the Unix socket, the daemon's user over TCP."""
    transport = request.transport
    if transport is None:  # the connection is gone: no peer to ask
        return _peer(None)
    owner = _callers.get(transport)
    if owner is None:
        owner = _callers[transport] = _peer(transport.get_extra_info("socket"))
    return owner


def _peer(sock: Any) -> Owner:
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return Owner(uid=uid, user=_user_name(uid), via="unix")
    uid = os.getuid()
    return Owner(uid=uid, user=_user_name(uid), via="tcp")


@functools.lru_cache(maxsize=256)
def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- jobs -----------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"body: invalid JSON: {e}") from e


async def create_job(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    job, run = await services.jobs.create(await _json_body(request), caller(request))
    return _json(job.to_api(latest_run=run), status=201)


async def list_jobs(request: web.Request) -> web.Response:
    store = request.app[SERVICES].store
    limit, cursor = _page(request)
    page = await store.list_jobs(_job_filter(request), limit=limit, cursor=cursor)
    latest = await store.get_runs(j.latest_run_id for j in page.items if j.latest_run_id)
    jobs = [j.to_api(latest_run=latest.get(j.latest_run_id or "")) for j in page.items]
    return _json({"jobs": jobs, "nextCursor": page.next_cursor})


async def get_job(request: web.Request) -> web.Response:
    store = request.app[SERVICES].store
    return _json(await _job_doc(store, await store.get_job(request.match_info["job_id"])))


async def update_job(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await _json_body(request)
    job = await services.jobs.update(request.match_info["job_id"], body, caller(request))
    return _json(await _job_doc(services.store, job))


async def delete_job(request: web.Request) -> web.Response:
    await request.app[SERVICES].jobs.delete(request.match_info["job_id"])
    return web.Response(status=202)


async def job_status(request: web.Request) -> web.Response:
    return _json(await request.app[SERVICES].jobs.status(request.match_info["job_id"]))


async def _job_doc(store: Store, job: Job) -> dict[str, Any]:
    runs = await store.get_runs([job.latest_run_id] if job.latest_run_id else [])
    return job.to_api(latest_run=runs.get(job.latest_run_id or ""))


async def list_runs(request: web.Request) -> web.Response:
    limit, cursor = _page(request)
    page = await request.app[SERVICES].store.list_runs(
        request.match_info["job_id"], limit=limit, cursor=cursor
    )
    return _json({"runs": [r.to_api() for r in page.items], "nextCursor": page.next_cursor})


async def rerun_job(request: web.Request) -> web.Response:
    run = await request.app[SERVICES].jobs.rerun(request.match_info["job_id"])
    return _json(run.to_api(), status=201)


def _page(request: web.Request) -> tuple[int, str | None]:
    limit = _int_param(request, "limit", DEFAULT_PAGE)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_PAGE}")
    return limit, request.query.get("cursor") or None


def _job_filter(request: web.Request) -> JobFilter:
    status = request.query.get("status")
    if status is not None and status not in RunStatus.__members__.values():
        raise InvalidRequest(f"status: unknown status {status!r}")
    labels = {}
    for item in request.query.getall("label", []):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label: expected key=value, got {item!r}")
        labels[key] = value
    scheduled = request.query.get("scheduled", "false").lower()
    if scheduled not in {"true", "false"}:
        raise InvalidRequest(f"scheduled: true or false, not {scheduled!r}")
    return JobFilter(
        status=RunStatus(status) if status else None,
        scheduled=scheduled == "true",
        labels=labels,
        created_after=_time_param(request, "createdAfter"),
        created_before=_time_param(request, "createdBefore"),
    )


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise InvalidRequest(f"{name}: not an integer: {raw!r}") from e


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as e:
        raise InvalidRequest(f"{name}: not an RFC 3339 time: {raw!r}") from e
    if moment.tzinfo is None:
        raise InvalidRequest(f"{name}: needs a UTC offset: {raw!r}")
    return moment


# -- runs -----------------------------------------------------------------------------


async def get_run(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    run = await services.store.get_run(request.match_info["run_id"])
    doc = run.to_api()
    if run.status is RunStatus.PENDING:
        doc["queue"] = await _queue_doc(services, run)
    return _json(doc)


async def _queue_doc(services: Services, run: Run) -> dict[str, Any]:
    """Where a queued run stands: how many runs are ahead of it, and why it waits."""
    ahead = await services.store.queue_position(run)
    reason = services.waiting().get(run.id)
    if run.not_before is not None and run.not_before > now():
        reason = f"waiting out its retry backoff until {rfc3339(run.not_before)}"
    elif reason is None:
        reason = f"queued behind {ahead} runs" if ahead else "next to be placed"
    return {"position": ahead + 1, "ahead": ahead, "reason": reason}


async def get_run_events(request: web.Request) -> web.Response:
    store = request.app[SERVICES].store
    run = await store.get_run(request.match_info["run_id"])
    events = [
        {
            "at": rfc3339(from_epoch(e["at"])),
            "from": e["from_status"],
            "to": e["to_status"],
            "detail": e["detail"],
        }
        for e in await store.run_events(run.id)
    ]
    return _json({"events": events})


async def cancel_run(request: web.Request) -> web.Response:
    run = await request.app[SERVICES].jobs.cancel(request.match_info["run_id"])
    return _json(run.to_api(), status=202)


async def stop_run(request: web.Request) -> web.Response:
    run = await request.app[SERVICES].jobs.stop(request.match_info["run_id"])
    return _json(run.to_api(), status=202)


# -- exec -----------------------------------------------------------------------------


async def exec_in_run(request: web.Request) -> web.StreamResponse:
    """A command in the run's running container, attached over a WebSocket. Binary messages
    carry stdin in, and output out after a byte naming its stream (1 stdout, 2 stderr); text
    messages carry control: {"resize": [rows, columns]} and {"eof": true} in, and last
    {"exit": code} out. Like the health check's podman info, this asks the runtime directly:
    it changes no run, so it does not go through the supervisor."""
    services = request.app[SERVICES]
    run = await services.store.get_run(request.match_info["run_id"])
    command = request.query.getall("cmd", [])
    if not command or not command[0]:
        raise InvalidRequest("cmd: the command to run, one cmd parameter per argument")
    if run.status is not RunStatus.RUNNING or run.container_id is None:
        raise Conflict(f"run {run.id} is {run.status.value}; exec needs a running run")
    socket = web.WebSocketResponse(max_msg_size=MAX_BODY)
    if not socket.can_prepare(request).ok:
        raise InvalidRequest("exec: upgrade to a WebSocket (jobctl exec does)")
    tty = request.query.get("tty", "false").lower() in {"1", "true", "yes"}
    stream = await services.runtime.exec_start(run.container_id, command, tty=tty)
    await socket.prepare(request)
    output = asyncio.create_task(_copy_output(socket, stream))
    feeding = asyncio.create_task(_feed_exec(socket, stream, services.runtime))
    try:
        await asyncio.wait({output, feeding}, return_when=asyncio.FIRST_COMPLETED)
        if output.done() and output.exception() is None:  # the process exited
            code = await services.runtime.exec_exit_code(stream.exec_id)
            await socket.send_json({"exit": code})
    finally:  # or the client went away: the process loses its stdin and output
        for task in (output, feeding):
            task.cancel()
        await asyncio.gather(output, feeding, return_exceptions=True)
        stream.close()
        await socket.close()
    return socket


async def _copy_output(socket: web.WebSocketResponse, stream: ExecStream) -> None:
    while piece := await stream.read():
        await socket.send_bytes(bytes([piece[0]]) + piece[1])


async def _feed_exec(
    socket: web.WebSocketResponse, stream: ExecStream, runtime: PodmanRuntime
) -> None:
    """The client's stdin and terminal size, until it closes. A control message jobd can't
    read or apply is dropped: the session goes on."""
    async for message in socket:
        if message.type is WSMsgType.BINARY:
            await stream.write(message.data)
        elif message.type is WSMsgType.TEXT:
            try:
                await _exec_control(orjson.loads(message.data), stream, runtime)
            except (ValueError, TypeError, KeyError, RuntimeFailure) as e:
                log.info("exec %s: control message dropped: %s", stream.exec_id, e)


async def _exec_control(control: Any, stream: ExecStream, runtime: PodmanRuntime) -> None:
    if control.get("eof"):
        stream.close_stdin()
    if control.get("resize") and stream.tty:
        rows, columns = control["resize"]
        await runtime.exec_resize(stream.exec_id, int(rows), int(columns))


# -- logs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRequest:
    query: LogQuery
    limit: int
    limited: bool  # limit given explicitly: it applies to streams too
    tail: int | None
    follow: bool
    format: str


def _log_request(request: web.Request) -> LogRequest:
    limit = _int_param(request, "limit", DEFAULT_LOG_LIMIT)
    tail = _int_param(request, "tail", 0) or None
    if not 1 <= limit <= MAX_LOG_LIMIT or (tail is not None and not 1 <= tail <= MAX_LOG_LIMIT):
        raise InvalidRequest(f"limit and tail must be between 1 and {MAX_LOG_LIMIT}")
    fmt = request.query.get("format", "json")
    if fmt not in {"json", "ndjson", "text"}:
        raise InvalidRequest("format: one of json, ndjson, text")
    follow = request.query.get("follow", "false").lower() in {"1", "true", "yes"}
    return LogRequest(
        query=LogQuery(
            since=_time_param(request, "since"),
            until=_time_param(request, "until"),
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
    run = await services.store.get_run(request.match_info["run_id"])
    wanted = _log_request(request)
    run_log = services.pump.open(run.id)
    if wanted.follow or wanted.format != "json":
        return await _stream_logs(request, run.id, run_log, wanted)
    lines, truncated = await asyncio.to_thread(_collect, run_log, wanted)
    return _json(
        {
            "runId": run.id,
            "lines": [line.to_api(run.id) for line in lines],
            "omittedBytes": run_log.omitted_bytes,
            "truncated": truncated,
        }
    )


def _collect(run_log: RunLog, wanted: LogRequest) -> tuple[list[LogLine], bool]:
    return _first_or_last(run_log.lines(wanted.query), wanted)


def _first_or_last(lines: Iterable[T], wanted: LogRequest) -> tuple[list[T], bool]:
    """The last `tail` lines, or the first `limit` and whether more were left out."""
    if wanted.tail is not None:
        return list(collections.deque(lines, maxlen=wanted.tail)), False
    first: list[T] = []
    for line in lines:
        if len(first) == wanted.limit:
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
    job = await services.store.get_job(request.match_info["job_id"])
    runs = await services.store.runs_in_window(
        job.id, since=wanted.query.since, until=wanted.query.until
    )
    logs = [(run.id, services.pump.open(run.id)) for run in runs]
    tagged, truncated = await asyncio.to_thread(_collect_runs, logs, wanted)
    if wanted.format == "json":
        lines = [line.to_api(run_id) for run_id, line in tagged]
        return _json({"jobId": job.id, "lines": lines, "truncated": truncated})
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
    return _first_or_last(merged, wanted)


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
        lambda: services.pump.open(run_id), wanted.query, skip_existing=wanted.tail is not None
    )
    # plain text of a whole log: k8s lines to text a block at a time, not line by line
    as_text = wanted.format == "text" and wanted.query == LogQuery() and not wanted.limited
    remaining = wanted.limit if wanted.limited else None
    while remaining is None or remaining > 0:
        changed = services.pump.changed(run_id)
        # every path that ends a run finishes its log first: once the run is terminal, one
        # more read gets everything
        over = (await services.store.get_run(run_id)).status.is_terminal
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
            batch = follower.lines(items)
            if remaining is not None:
                batch, remaining = batch[:remaining], remaining - min(remaining, len(batch))
            if batch:
                await response.write(
                    b"".join(_render(line, run_id, wanted.format) for line in batch)
                )
        if not wanted.follow or over:
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await changed.wait()
    await response.write_eof()
    return response


# -- recipes --------------------------------------------------------------------------


async def list_recipes(request: web.Request) -> web.Response:
    recipes = await request.app[SERVICES].store.list_recipes()
    return _json({"recipes": [r.to_api() for r in recipes]})


async def create_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    recipe = await recipes.create(await _json_body(request), caller(request))
    return _json(recipe.to_api(), status=201)


async def get_recipe(request: web.Request) -> web.Response:
    recipe = await request.app[SERVICES].store.get_recipe(request.match_info["name"])
    return _json(recipe.to_api())


async def put_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    body = await _json_body(request)
    recipe, created = await recipes.put(request.match_info["name"], body, caller(request))
    return _json(recipe.to_api(), status=201 if created else 200)


async def update_recipe(request: web.Request) -> web.Response:
    recipes = request.app[SERVICES].recipes
    recipe = await recipes.update(request.match_info["name"], await _json_body(request))
    return _json(recipe.to_api())


async def delete_recipe(request: web.Request) -> web.Response:
    await request.app[SERVICES].recipes.delete(request.match_info["name"])
    return web.Response(status=204)


# -- about ----------------------------------------------------------------------------


async def list_plans(request: web.Request) -> web.Response:
    config = request.app[SERVICES].config
    plans = [p.to_api() for p in config.plans.values()]
    return _json({"plans": plans, "defaultPlan": config.default_plan})


async def get_node(request: web.Request) -> web.Response:
    """What the node has, what each run holds, what is free, and the GPUs as they are now
    (with memory used by processes jobd did not start)."""
    services = request.app[SERVICES]
    node = await services.inventory.read()
    active = await services.store.runs_with_status(ACTIVE_STATUSES)
    doc = node_doc(free_on(node, active), node, active)
    doc["queue"] = {"pending": await services.store.count_pending()}
    return _json(doc)


async def doctor(request: web.Request) -> web.Response:
    """jobd's own checks of what it needs: podman, limits, and the GPU path."""
    services = request.app[SERVICES]
    found = await checks(services.config, services.info, await services.inventory.read())
    return _json(
        {"ok": all(c.level != "fail" for c in found), "checks": [c.to_api() for c in found]}
    )


async def health(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    podman: dict[str, Any]
    try:
        async with asyncio.timeout(5):
            info = await services.runtime.info(max_age=HEALTH_INFO_SECONDS)
        podman = {"reachable": True, **_podman_doc(info)}
    except (RuntimeFailure, TimeoutError) as e:
        info = services.info
        podman = {"reachable": False, "error": str(e), **_podman_doc(info)}
    uid = os.getuid()
    return _json(
        {
            "status": "ok" if podman["reachable"] else "degraded",
            "version": __version__,
            "podman": podman,
            "limits": {
                "enforced": info.limits_enforced,
                "missingControllers": list(info.missing_controllers),
                "note": info.limits_note,
            },
            "node": _node_summary(services.inventory),
            "daemon": {
                "uid": uid,
                "user": _user_name(uid),
                "pid": os.getpid(),
                "dataDir": str(services.config.data_dir),
            },
            "scheduler": _scheduler_doc(services.passes, services.pass_waits),
            "uptimeSeconds": round(time.time() - services.started, 3),
        }
    )


def _node_summary(inventory: Inventory) -> dict[str, Any]:
    node = inventory.last
    if node is None:
        return {}
    return {
        "cpus": node.cpus,
        "memoryBytes": node.memory_bytes,
        "gpus": node.gpus.to_api(),  # says why there are none when NVML is absent
    }


def _scheduler_doc(passes: PassTimes, waits: PassTimes) -> dict[str, Any]:
    def ms(seconds: float) -> float:
        return round(seconds * 1000, 3)

    return {
        "passes": passes.count,
        "lastPassMs": ms(passes.last),
        "slowestPassMs": ms(passes.slowest),
        "recentP50Ms": ms(passes.percentile(50)),
        "recentP99Ms": ms(passes.percentile(99)),
        "waited": {
            "slowestMs": ms(waits.slowest),
            "recentP50Ms": ms(waits.percentile(50)),
            "recentP99Ms": ms(waits.percentile(99)),
        },
    }


def _podman_doc(info: RuntimeInfo) -> dict[str, Any]:
    return {
        "version": info.version,
        "apiVersion": info.api_version,
        "rootless": info.rootless,
        "cgroupVersion": info.cgroup_version,
        "cgroupManager": info.cgroup_manager,
        "ociRuntime": info.oci_runtime,
    }


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())
