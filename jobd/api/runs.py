"""/v1/runs: the runs of every job within reach, filtered, a page at a time; /v1/runs/{id}: a
run (with where it stands in the queue, and with its newest log lines if asked), its state
changes, cancel and stop (with their grace)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import listing_reach, reach
from jobd.api.requests import (
    int_param,
    json_body,
    json_response,
    labels_param,
    page,
    project_param,
    time_param,
)
from jobd.domain.jobs import Kind
from jobd.domain.records import from_epoch, rfc3339
from jobd.domain.run_filter import RunFilter
from jobd.domain.states import RunStatus, Trigger
from jobd.errors import InvalidRequest
from jobd.services.validation import validate

DEFAULT_LOG_BYTES = 64 * 1024  # of a run's newest log lines, with include=logs
MAX_LOG_BYTES = 1024 * 1024
E = TypeVar("E", bound=StrEnum)


async def list_runs(request: web.Request) -> web.Response:
    limit, cursor = page(request)
    found = await request.app[SERVICES].runs.list_runs(
        _run_filter(request), limit=limit, cursor=cursor
    )
    return json_response(
        {"runs": [r.to_api() for r in found.items], "nextCursor": found.next_cursor}
    )


async def get_run(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    log_bytes = _log_bytes(request)
    run = await services.runs.get(request.match_info["run_id"], reach(request))
    doc = run.to_api()
    if run.status is RunStatus.PENDING:
        doc["queue"] = await services.runs.queue_doc(run)
    if log_bytes is not None:
        lines, left_out = await services.logs.newest(run.id, log_bytes)
        doc["logs"] = [line.to_api(run.id) for line in lines]
        doc["logsTruncated"] = left_out
    return json_response(doc)


def _log_bytes(request: web.Request) -> int | None:
    """With include=logs: how many bytes of the newest log lines to add (logBytes)."""
    include = [part for part in request.query.get("include", "").split(",") if part]
    unknown = sorted(set(include) - {"logs"})
    if unknown:
        raise InvalidRequest(f"include: only logs may be included, not {', '.join(unknown)}")
    if "logs" not in include:
        if "logBytes" in request.query:
            raise InvalidRequest("logBytes: only with include=logs")
        return None
    log_bytes = int_param(request, "logBytes", DEFAULT_LOG_BYTES)
    if not 1 <= log_bytes <= MAX_LOG_BYTES:
        raise InvalidRequest(f"logBytes: between 1 and {MAX_LOG_BYTES}")
    return log_bytes


def _run_filter(request: web.Request) -> RunFilter:
    statuses = {
        part.strip()
        for given in request.query.getall("status", [])
        for part in given.split(",")
        if part.strip()
    }
    return RunFilter(
        statuses=frozenset(_member(RunStatus, "status", s) for s in statuses),
        labels=labels_param(request),
        kind=_optional(Kind, "kind", request.query.get("kind")),
        trigger=_optional(Trigger, "trigger", request.query.get("trigger")),
        created_after=time_param(request, "since"),
        created_before=time_param(request, "before"),
        reach=listing_reach(request),
        project=project_param(request),
    )


def _member(kind: type[E], name: str, value: str) -> E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise InvalidRequest(f"{name}: one of {known}, not {value!r}") from None


def _optional(kind: type[E], name: str, value: str | None) -> E | None:
    return None if value is None else _member(kind, name, value)


async def get_run_events(request: web.Request) -> web.Response:
    runs = request.app[SERVICES].runs
    events = await runs.events(request.match_info["run_id"], reach(request))
    docs = [
        {
            "at": rfc3339(from_epoch(e["at"])),
            "from": e["from_status"],
            "to": e["to_status"],
            "detail": e["detail"],
        }
        for e in events
    ]
    return json_response({"events": docs})


async def cancel_run(request: web.Request) -> web.Response:
    grace = await stop_grace(request)
    runs = request.app[SERVICES].runs
    run = await runs.cancel(request.match_info["run_id"], reach(request), grace=grace)
    return json_response(run.to_api(), status=202)


async def stop_run(request: web.Request) -> web.Response:
    grace = await stop_grace(request)
    runs = request.app[SERVICES].runs
    run = await runs.stop(request.match_info["run_id"], reach(request), grace=grace)
    return json_response(run.to_api(), status=202)


async def stop_grace(request: web.Request) -> int | None:
    """The grace a cancel or stop asks for (a StopRequest body, which may be absent)."""
    body = await json_body(request) if request.can_read_body else {}
    validate(body, "StopRequest")
    return 0 if body.get("force") else body.get("graceSeconds")
