"""/v1/jobs: create, list, read, change, delete jobs; their status, runs, and reruns."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import caller, listing_reach, own_reach, reach
from jobd.api.requests import bool_param, json_body, json_response, labels_param, page, time_param
from jobd.api.runs import stop_grace
from jobd.domain.jobs import Job, JobFilter
from jobd.domain.states import RunStatus
from jobd.errors import InvalidRequest
from jobd.services.jobs import Jobs


async def create_job(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    job, run = await services.jobs.create(await json_body(request), caller(request))
    arrays = await services.jobs.array_runs([job])
    return json_response(job.to_api(latest_run=run, array_runs=arrays.get(job.id)), status=201)


async def list_jobs(request: web.Request) -> web.Response:
    jobs = request.app[SERVICES].jobs
    limit, cursor = page(request)
    found = await jobs.list_jobs(_job_filter(request), limit=limit, cursor=cursor)
    latest = await jobs.latest_runs(found.items)
    arrays = await jobs.array_runs(found.items)
    docs = [
        j.to_api(latest_run=latest.get(j.latest_run_id or ""), array_runs=arrays.get(j.id))
        for j in found.items
    ]
    return json_response({"jobs": docs, "nextCursor": found.next_cursor})


async def get_job(request: web.Request) -> web.Response:
    jobs = request.app[SERVICES].jobs
    job = await jobs.get(request.match_info["job_id"], reach(request))
    return json_response(await _job_doc(jobs, job))


async def update_job(request: web.Request) -> web.Response:
    jobs = request.app[SERVICES].jobs
    body = await json_body(request)
    job = await jobs.update(request.match_info["job_id"], body, caller(request))
    return json_response(await _job_doc(jobs, job))


async def delete_job(request: web.Request) -> web.Response:
    await request.app[SERVICES].jobs.delete(request.match_info["job_id"], own_reach(request))
    return web.Response(status=202)


async def job_status(request: web.Request) -> web.Response:
    jobs = request.app[SERVICES].jobs
    return json_response(await jobs.status(request.match_info["job_id"], reach(request)))


async def list_runs(request: web.Request) -> web.Response:
    limit, cursor = page(request)
    found = await request.app[SERVICES].jobs.list_runs(
        request.match_info["job_id"], reach(request), limit=limit, cursor=cursor
    )
    return json_response(
        {"runs": [r.to_api() for r in found.items], "nextCursor": found.next_cursor}
    )


async def cancel_job(request: web.Request) -> web.Response:
    """Render's cancel of a job: its runs that have not ended are cancelled (as POST
    /v1/runs/{id}/cancel does each); the job, with those runs as they are now."""
    grace = await stop_grace(request)
    jobs = request.app[SERVICES].jobs
    job, runs = await jobs.cancel(request.match_info["job_id"], reach(request), grace=grace)
    doc = await _job_doc(jobs, job)
    return json_response({**doc, "runs": [r.to_api() for r in runs]}, status=202)


async def rerun_job(request: web.Request) -> web.Response:
    run = await request.app[SERVICES].jobs.rerun(request.match_info["job_id"], reach(request))
    return json_response(run.to_api(), status=201)


async def _job_doc(jobs: Jobs, job: Job) -> dict[str, Any]:
    latest = await jobs.latest_runs([job])
    arrays = await jobs.array_runs([job])
    return job.to_api(latest_run=latest.get(job.latest_run_id or ""), array_runs=arrays.get(job.id))


def _job_filter(request: web.Request) -> JobFilter:
    status = request.query.get("status")
    if status is not None and status not in RunStatus.__members__.values():
        raise InvalidRequest(f"status: unknown status {status!r}")
    labels = labels_param(request)
    return JobFilter(
        status=RunStatus(status) if status else None,
        scheduled=bool_param(request, "scheduled"),
        labels=labels,
        created_after=time_param(request, "createdAfter"),
        created_before=time_param(request, "createdBefore"),
        reach=listing_reach(request),
        project=_project(request),
        name=request.query.get("name") or None,
    )


def _project(request: web.Request) -> str | None:
    project = request.query.get("project")
    if project is not None and not project:
        raise InvalidRequest("project: give a project's name")
    return project
