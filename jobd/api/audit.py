"""The audit log: every state-changing request is recorded (who, through which peer or
token, what, when, how it ended, the ids it named or made), whatever its outcome, refusals
of authentication included; /v1/audit reads it (admins only)."""

from __future__ import annotations

import contextlib

import orjson
from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import CALLER, Handler, caller, writes
from jobd.api.requests import int_param, json_response
from jobd.domain.audit import AuditEntry, created_ids
from jobd.domain.records import now
from jobd.errors import InvalidRequest, JobdError

MAX_AUDIT_PAGE = 1000


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not writes(request):
        return await handler(request)
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except JobdError as e:
        status = e.status
        raise
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        request.app[SERVICES].audit.record(_entry(request, status, response))


def _entry(request: web.Request, status: int, response: web.StreamResponse | None) -> AuditEntry:
    who = request.get(CALLER)
    ids = [v for k, v in request.match_info.items() if k != "path"]
    if status == 201 and isinstance(response, web.Response) and response.body:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            ids += created_ids(orjson.loads(response.body))  # type: ignore[arg-type]
    return AuditEntry(
        at=now(),
        user=who.owner.user if who else None,
        uid=who.owner.uid if who else None,
        via=who.owner.via if who else None,
        token_id=who.token_id if who else None,
        peer="unix" if who and who.owner.via == "unix" else request.remote or "?",
        method=request.method,
        path=request.path,
        status=status,
        ids=tuple(dict.fromkeys(ids)),
    )


async def list_audit(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", 100)
    if not 1 <= limit <= MAX_AUDIT_PAGE:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_AUDIT_PAGE}")
    raw_cursor = request.query.get("cursor")
    if raw_cursor is not None and not (raw_cursor.isdigit() and int(raw_cursor) < 2**63):
        raise InvalidRequest("cursor: not one this endpoint gave")
    doc = await request.app[SERVICES].audit.entries(
        caller(request),
        user=request.query.get("user"),
        cursor=int(raw_cursor) if raw_cursor else None,
        limit=limit,
    )
    return json_response(doc)
