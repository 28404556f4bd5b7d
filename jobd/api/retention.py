"""POST /v1/prune: prune finished runs now, as [retention] says (or only say what would go)."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import caller
from jobd.api.requests import json_body, json_response
from jobd.services.validation import validate


async def prune(request: web.Request) -> web.Response:
    body = await json_body(request) if request.can_read_body else {}
    validate(body, "PruneRequest")
    doc = await request.app[SERVICES].pruning.prune(
        caller(request), dry_run=bool(body.get("dryRun", False))
    )
    return json_response(doc)
