"""Jobs and runs named in a path ({job_id}, {run_id}) by a prefix of their id or, a job, by
its name: resolved to the id once, before any handler (or the audit log) reads it, so every
endpoint that takes an id takes these too."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import CALLER, Handler

JOB_PARAM = "job_id"
RUN_PARAM = "run_id"


@web.middleware
async def reference_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    who = request.get(CALLER)
    if who is not None and (JOB_PARAM in info or RUN_PARAM in info):
        services = request.app[SERVICES]
        if JOB_PARAM in info:
            info[JOB_PARAM] = await services.jobs.resolve(info[JOB_PARAM], who)
        if RUN_PARAM in info:
            info[RUN_PARAM] = await services.runs.resolve(info[RUN_PARAM], who.reach)
    return await handler(request)
