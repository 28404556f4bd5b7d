"""/v1/runs/{id}: a run (with where it stands in the queue), its state changes, cancel and stop
(with their grace)."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import reach
from jobd.api.requests import json_body, json_response
from jobd.domain.records import from_epoch, rfc3339
from jobd.domain.states import RunStatus
from jobd.services.validation import validate


async def get_run(request: web.Request) -> web.Response:
    runs = request.app[SERVICES].runs
    run = await runs.get(request.match_info["run_id"], reach(request))
    doc = run.to_api()
    if run.status is RunStatus.PENDING:
        doc["queue"] = await runs.queue_doc(run)
    return json_response(doc)


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
    grace = await _grace(request)
    runs = request.app[SERVICES].runs
    run = await runs.cancel(request.match_info["run_id"], reach(request), grace=grace)
    return json_response(run.to_api(), status=202)


async def stop_run(request: web.Request) -> web.Response:
    grace = await _grace(request)
    runs = request.app[SERVICES].runs
    run = await runs.stop(request.match_info["run_id"], reach(request), grace=grace)
    return json_response(run.to_api(), status=202)


async def _grace(request: web.Request) -> int | None:
    """The grace a cancel or stop asks for (a StopRequest body, which may be absent)."""
    body = await json_body(request) if request.can_read_body else {}
    validate(body, "StopRequest")
    return 0 if body.get("force") else body.get("graceSeconds")
