"""Query parameters an endpoint does not take are refused with a 400 naming them, never
ignored: a typo (`?recipe=` for a label, `?from=` for `since`) must not quietly answer as if
nothing had been asked. What each endpoint takes is what the OpenAPI document says of it."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from jobd.errors import InvalidRequest
from jobd.services.validation import openapi_document

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METHODS = frozenset({"get", "post", "put", "patch", "delete"})


def documented_path(route_path: str) -> str:
    """aiohttp's /v1/runs/{run_id}/outputs/{path:.+} as OpenAPI's /v1/runs/{runId}/..."""

    def camel(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        head, *rest = name.split("_")
        return "{" + head + "".join(part.title() for part in rest) + "}"

    return re.sub(r"\{([^}]+)\}", camel, route_path)


@functools.cache
def accepted(route_path: str, method: str) -> frozenset[str] | None:
    """The query parameters the operation routed at `route_path` takes (once per route);
    None for a route the document does not hold (the dashboard's pages check their own)."""
    operations = openapi_document()["paths"].get(documented_path(route_path))
    if operations is None:
        return None
    parameters = [
        *operations.get("parameters", []),
        *operations.get(method, {}).get("parameters", []),
    ]
    return frozenset(p["name"] for p in parameters if p.get("in") == "query")


@web.middleware
async def query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.query:
        resource = request.match_info.route.resource
        method = "get" if request.method == "HEAD" else request.method.lower()
        if resource is not None and method in METHODS:
            known = accepted(resource.canonical, method)
            unknown = sorted(set(request.query) - known) if known is not None else []
            if known is not None and unknown:
                takes = ", ".join(sorted(known)) or "none"
                raise InvalidRequest(
                    f"unknown query parameters: {', '.join(unknown)} (this endpoint takes: {takes})"
                )
    return await handler(request)
