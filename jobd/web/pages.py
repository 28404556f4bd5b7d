"""The dashboard's pages: the login form, the jobs (their progress too, with schedules and
recipes), a run (state, progress and phases, live log, charts, actions, outputs) and the node
(capacity, GPUs and who holds them, what runs, the queue with why each run waits). Handlers
read through the services with the caller's reach, as the API's do; actions are forms that
carry the session's CSRF token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import (
    SESSION_COOKIE,
    caller,
    reach,
    session,
    slowed_down,
)
from jobd.domain.jobs import JobFilter
from jobd.domain.metrics import MetricsQuery
from jobd.domain.owners import Reach
from jobd.domain.states import RunStatus
from jobd.errors import InvalidRequest, JobdError, Unauthorized
from jobd.logs.lines import LogQuery
from jobd.services.sessions import SESSION_HOURS
from jobd.users import name_or, uid_of
from jobd.web.render import page

STATIC = Path(__file__).parent / "static"
PAGE_JOBS = 50
LOG_LINES = 500  # a run page opens with its log's last lines; the rest is a download away
QUEUE_SHOWN = 100
FILTERS = ("status", "label", "name", "owner", "q")


def _common(request: web.Request) -> dict[str, Any]:
    who = caller(request)
    found = session(request)
    return {"user": who.owner.user, "admin": who.admin, "csrf": found.csrf if found else ""}


# -- logging in --------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    return page("login.html", user=None, admin=False, csrf="", error=None)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token = form.get("token")
    try:
        if not isinstance(token, str) or not token.strip():
            raise Unauthorized("a token, please")
        found, _ = await request.app[SERVICES].sessions.login(token)
    except Unauthorized as e:
        await slowed_down(request)  # guessing tokens at the login form is slowed as anywhere
        response = page("login.html", user=None, admin=False, csrf="", error=e.message)
        response.set_status(401)
        return response
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE,
        found.id,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=SESSION_HOURS * 3600,
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    found = session(request)
    if found is not None:
        request.app[SERVICES].sessions.logout(found.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


# -- jobs ---------------------------------------------------------------------------------


def job_filter(request: web.Request) -> JobFilter:
    """The jobs page's filters as a listing's; InvalidRequest says which one is wrong."""
    query = request.query
    who = caller(request)
    status = query.get("status") or None
    label = query.get("label") or ""
    key, sep, value = label.partition("=")
    if label and not (sep and key):
        raise InvalidRequest(f"label: KEY=VALUE, not {label!r}")
    owner = query.get("owner") or None
    owner_uid = uid_of(owner) if owner and who.admin else None
    if owner and who.admin and owner_uid is None:
        raise InvalidRequest(f"owner: no user {owner!r} on this machine")
    try:
        run_status = RunStatus(status) if status else None
    except ValueError:
        raise InvalidRequest(f"status: not a run status: {status!r}") from None
    return JobFilter(
        status=run_status,
        labels={key: value} if label else {},
        reach=listing_reach_of(request),
        name=query.get("name") or None,
        search=query.get("q") or None,
        owner_uid=owner_uid,
    )


def listing_reach_of(request: web.Request) -> Reach:
    """An admin's dashboard shows everyone's jobs; anyone else's their own and their
    projects'."""
    who = caller(request)
    return who.listing(who.admin)


async def job_rows(request: web.Request, where: JobFilter) -> tuple[list[dict[str, Any]], bool]:
    jobs = request.app[SERVICES].jobs
    found = await jobs.list_jobs(where, limit=PAGE_JOBS, cursor=None)
    latest = await jobs.latest_runs(found.items)
    arrays = await jobs.array_runs(found.items)
    docs = [
        j.to_api(latest_run=latest.get(j.latest_run_id or ""), array_runs=arrays.get(j.id))
        for j in found.items
    ]
    return docs, found.next_cursor is not None


async def jobs_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    filters = {name: request.query.get(name, "") for name in FILTERS}
    problem = None
    try:
        where = job_filter(request)
    except InvalidRequest as e:
        where, problem = JobFilter(reach=listing_reach_of(request)), e.message
    docs, more = await job_rows(request, where)
    scheduled = await services.jobs.list_jobs(
        JobFilter(scheduled=True, reach=listing_reach_of(request)), limit=PAGE_JOBS, cursor=None
    )
    recipes = await services.recipes.list_recipes(reach(request))
    given = {k: v for k, v in filters.items() if v}
    return page(
        "jobs.html",
        **_common(request),
        jobs=docs,
        more=more,
        filters=filters,
        problem=problem,
        statuses=[s.value for s in RunStatus],
        query=f"?{urlencode(given)}" if given else "",
        scheduled=[j.to_api() for j in scheduled.items],
        recipes=[r.to_api() for r in recipes],
    )


# -- a run -------------------------------------------------------------------------------


async def run_values(request: web.Request, run_id: str) -> dict[str, Any]:
    """What the run's status fragment shows."""
    services = request.app[SERVICES]
    run = await services.runs.get(run_id, reach(request))
    doc = run.to_api()
    queue = await services.runs.queue_doc(run) if run.status is RunStatus.PENDING else None
    events = await services.runs.events(run.id, reach(request))
    return {
        **_common(request),
        "run": doc,
        "queue": queue,
        "events": [_event(e) for e in events],
        "gpus": bool(run.allocation and run.allocation.gpus),
    }


def _event(event: Mapping[str, Any]) -> dict[str, Any]:
    at = datetime.fromtimestamp(event["at"], UTC).isoformat()
    return {
        "at": at,
        "from": event["from_status"],
        "to": event["to_status"],
        "detail": event["detail"],
    }


async def run_page(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    values = await run_values(request, request.match_info["run_id"])
    run_id = values["run"]["id"]
    run_log = services.logs.open(run_id)
    lines = await asyncio.to_thread(lambda: list(run_log.lines(LogQuery()))[-LOG_LINES:])
    try:
        outputs = shown_outputs(await services.outputs.listing(run_id, reach(request)))
    except JobdError:
        outputs = None
    began = values["run"]["startedAt"] or values["run"]["createdAt"]
    query = run_metrics_query(request, since=datetime.fromisoformat(began).timestamp())
    metrics = await services.metrics.of_run(run_id, query, reach(request))
    return page(
        "run.html",
        **values,
        lines=lines,
        omitted=len(lines) >= LOG_LINES or run_log.omitted_bytes > 0,
        outputs=outputs,
        metrics=metrics,
    )


def shown_outputs(listing: Mapping[str, Any]) -> dict[str, Any]:
    """A run's outputs as its page lists them: the files (a sealed manifest comes as JSON to
    pass through, decoded here) and the preview image's URL."""
    files = listing["files"]
    if isinstance(files, orjson.Fragment):
        files = orjson.loads(orjson.dumps(files))
    return {"files": files, "previewUrl": (listing.get("output") or {}).get("previewUrl")}


def run_metrics_query(request: web.Request, since: float) -> MetricsQuery:
    """A run's metrics from `since` (its start, on the page; the last push, live) until now,
    at most as far back as samples are kept as taken."""
    settings = request.app[SERVICES].config.metrics
    moment = time.time()
    start = max(since, moment - settings.full_hours * 3600)
    return MetricsQuery.parse(
        names=None,
        since=max(1, int(moment - start)),
        start=None,
        end=None,
        step=None,
        moment=moment,
        sample_seconds=settings.sample_seconds,
    )


async def run_action(request: web.Request) -> web.Response:
    """Cancel, stop or re-run, from the run page's buttons; back to the page (the new run's,
    after a re-run)."""
    services = request.app[SERVICES]
    run_id, action = request.match_info["run_id"], request.match_info["action"]
    if action == "cancel":
        await services.runs.cancel(run_id, reach(request))
    elif action == "stop":
        await services.runs.stop(run_id, reach(request))
    elif action == "rerun":
        run = await services.runs.get(run_id, reach(request))
        run_id = (await services.jobs.rerun(run.job_id, reach(request))).id
    else:
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther(f"/runs/{run_id}")


# -- the node -----------------------------------------------------------------------------


async def node_values(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    doc = await services.node.node_doc()
    holders = {r["runId"]: r.get("user") or "?" for r in doc["runs"]}
    queue = await services.runs.queue(reach(request), QUEUE_SHOWN)
    return {
        **_common(request),
        "node": doc,
        "holders": holders,
        "queue": queue,
        "user_of": lambda uid: name_or(uid, "-"),
    }


async def node_page(request: web.Request) -> web.Response:
    return page("node.html", **await node_values(request))
