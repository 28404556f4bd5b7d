"""The dashboard: server-rendered pages (Jinja2, autoescaped) with htmx and its SSE extension,
and uPlot for charts, all vendored under static/ (no build step). Served on the daemon's own
ports beside the API, behind a login (a session cookie), calling the same services with the
caller's reach: the owner's view, an admin's everyone's."""

from __future__ import annotations

import asyncio

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.web import live, pages


def add_dashboard(app: web.Application) -> None:
    app[live.CLOSING] = asyncio.Event()
    app[live.CHANGES] = live.Changes(app[SERVICES].runs.latest_change)

    async def closing(app: web.Application) -> None:
        app[live.CLOSING].set()  # the streams end, so shutdown need not wait for them

    app.on_shutdown.append(closing)
    router = app.router
    router.add_get("/login", pages.login_form)
    router.add_post("/login", pages.login)
    router.add_post("/logout", pages.logout)
    router.add_get("/static/{name}", pages.static_file)
    router.add_get("/", pages.jobs_page)
    router.add_get("/runs/{run_id}", pages.run_page)
    router.add_post("/runs/{run_id}/{action}", pages.run_action)
    router.add_get("/node", pages.node_page)
    router.add_get("/live/jobs", live.jobs_stream)
    router.add_get("/live/runs/{run_id}", live.run_stream)
    router.add_get("/live/node", live.node_stream)
