"""/v1/runs/{id}/metrics and /v1/jobs/{id}/metrics: sampled CPU, memory and GPU series,
each metric with its own status."""

from __future__ import annotations

import time

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import reach
from jobd.api.requests import int_param, json_response, time_param, time_synonym
from jobd.domain.metrics import MetricsQuery
from jobd.errors import InvalidRequest


async def run_metrics(request: web.Request) -> web.Response:
    metrics = request.app[SERVICES].metrics
    doc = await metrics.of_run(request.match_info["run_id"], _query(request), reach(request))
    return json_response(doc)


async def job_metrics(request: web.Request) -> web.Response:
    metrics = request.app[SERVICES].metrics
    doc = await metrics.of_job(request.match_info["job_id"], _query(request), reach(request))
    return json_response(doc)


def _query(request: web.Request) -> MetricsQuery:
    """since: seconds back from the end, or (as logs take it) a time, the same as start;
    until: the same as end."""
    since = request.query.get("since")
    if since is not None and since.lstrip("-").isdigit():  # seconds back
        seconds, start = int_param(request, "since", 0), time_param(request, "start")
    else:
        seconds, start = None, time_synonym(request, "start", "since")
    step = request.query.get("step")
    try:
        return MetricsQuery.parse(
            names=request.query.get("names"),
            since=seconds,
            start=start,
            end=time_synonym(request, "end", "until"),
            step=int_param(request, "step", 0) if step is not None else None,
            moment=time.time(),
            sample_seconds=request.app[SERVICES].config.metrics.sample_seconds,
        )
    except ValueError as e:
        raise InvalidRequest(str(e)) from None
