"""The app: every route, and the middleware around them."""

from __future__ import annotations

from aiohttp import web

from jobd.api import exec as exec_
from jobd.api import (
    jobs,
    logs,
    metrics,
    node,
    outputs,
    recipes,
    retention,
    runs,
    tokens,
    uploads,
    volumes,
)
from jobd.api.audit import audit_middleware, list_audit
from jobd.api.context import MAX_BODY, SERVICES, STREAMS, THROTTLE, Services
from jobd.api.middleware import auth_middleware, error_middleware
from jobd.api.prometheus import PROMETHEUS, Prometheus, request_metrics_middleware, scrape
from jobd.api.query import query_middleware
from jobd.api.references import reference_middleware
from jobd.api.streams import StreamSlots
from jobd.api.throttle import FailureThrottle


def create_app(services: Services) -> web.Application:
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[
            request_metrics_middleware,
            error_middleware,
            audit_middleware,
            auth_middleware,
            query_middleware,
            reference_middleware,
        ],
    )
    app[SERVICES] = services
    app[PROMETHEUS] = Prometheus()
    app[THROTTLE] = FailureThrottle(services.config.auth_free_failures)
    app[STREAMS] = StreamSlots(services.config.max_streams_per_user)
    _add_routes(app)
    return app


def _add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/jobs", jobs.create_job)
    app.router.add_get("/v1/jobs", jobs.list_jobs)
    app.router.add_get("/v1/jobs/{job_id}", jobs.get_job)
    app.router.add_patch("/v1/jobs/{job_id}", jobs.update_job)
    app.router.add_delete("/v1/jobs/{job_id}", jobs.delete_job)
    app.router.add_get("/v1/jobs/{job_id}/status", jobs.job_status)
    app.router.add_get("/v1/jobs/{job_id}/runs", jobs.list_runs)
    app.router.add_get("/v1/jobs/{job_id}/logs", logs.get_job_logs)
    app.router.add_get("/v1/jobs/{job_id}/metrics", metrics.job_metrics)
    app.router.add_post("/v1/jobs/{job_id}/runs", jobs.rerun_job)
    app.router.add_post("/v1/jobs/{job_id}/cancel", jobs.cancel_job)
    app.router.add_get("/v1/runs", runs.list_runs)
    app.router.add_get("/v1/runs/{run_id}", runs.get_run)
    app.router.add_get("/v1/runs/{run_id}/events", runs.get_run_events)
    app.router.add_post("/v1/runs/{run_id}/cancel", runs.cancel_run)
    app.router.add_post("/v1/runs/{run_id}/stop", runs.stop_run)
    app.router.add_get("/v1/runs/{run_id}/exec", exec_.exec_in_run)
    app.router.add_get("/v1/runs/{run_id}/logs", logs.get_run_logs)
    app.router.add_get("/v1/runs/{run_id}/metrics", metrics.run_metrics)
    app.router.add_get("/v1/runs/{run_id}/outputs", outputs.list_outputs)
    app.router.add_get("/v1/runs/{run_id}/outputs/{path:.+}", outputs.get_output)
    app.router.add_get("/v1/recipes", recipes.list_recipes)
    app.router.add_post("/v1/recipes", recipes.create_recipe)
    app.router.add_get("/v1/recipes/{name}", recipes.get_recipe)
    app.router.add_put("/v1/recipes/{name}", recipes.put_recipe)
    app.router.add_patch("/v1/recipes/{name}", recipes.update_recipe)
    app.router.add_delete("/v1/recipes/{name}", recipes.delete_recipe)
    app.router.add_get("/v1/volumes", volumes.list_volumes)
    app.router.add_post("/v1/volumes", volumes.create_volume)
    app.router.add_get("/v1/volumes/{name}", volumes.get_volume)
    app.router.add_delete("/v1/volumes/{name}", volumes.delete_volume)
    app.router.add_post("/v1/uploads", uploads.create_upload)
    app.router.add_get("/v1/uploads", uploads.list_uploads)
    app.router.add_get("/v1/uploads/{slug}", uploads.get_upload)
    app.router.add_delete("/v1/uploads/{slug}", uploads.delete_upload)
    app.router.add_post("/v1/tokens", tokens.create_token)
    app.router.add_get("/v1/tokens", tokens.list_tokens)
    app.router.add_get("/v1/tokens/{token_id}", tokens.get_token)
    app.router.add_delete("/v1/tokens/{token_id}", tokens.revoke_token)
    app.router.add_get("/v1/audit", list_audit)
    app.router.add_get("/v1/plans", node.list_plans)
    app.router.add_get("/v1/node", node.get_node)
    app.router.add_get("/v1/doctor", node.doctor)
    app.router.add_get("/v1/health", node.health)
    app.router.add_post("/v1/prune", retention.prune)
    app.router.add_get("/v1/openapi.json", node.openapi)
    app.router.add_get("/metrics", scrape)
