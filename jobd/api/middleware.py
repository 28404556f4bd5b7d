"""Errors as JSON, in one place; authentication; and who is asking, and what they reach."""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jobd.api.context import MAX_BODY, SERVICES
from jobd.api.requests import bool_param, json_response
from jobd.domain.owners import Caller, Owner, Reach
from jobd.errors import JobdError, Unauthorized
from jobd.users import user_name

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JobdError as e:
        return json_response(error_body(e.code, e.message), status=e.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            e.status, "http_error"
        )
        message = e.text if e.status != 413 else f"request body over {MAX_BODY} bytes"
        return json_response(error_body(code, message or e.reason), status=e.status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if caller(request).owner.via != "unix":
        token = request.app[SERVICES].token
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # the scheme is case-insensitive (RFC 7235), the token is not
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise Unauthorized()
    return await handler(request)


# per connection: a client's requests on one connection come from the same peer
_callers: weakref.WeakKeyDictionary[asyncio.BaseTransport, Caller] = weakref.WeakKeyDictionary()


def caller(request: web.Request) -> Caller:
    """Who is asking: the peer's uid on the Unix socket, the daemon's user over TCP; and
    whether they administer jobd."""
    transport = request.transport
    found = _callers.get(transport) if transport is not None else None
    if found is None:
        owner = _peer(transport.get_extra_info("socket") if transport is not None else None)
        admin = request.app[SERVICES].config.is_admin(owner.user, owner.uid)
        found = Caller(owner=owner, admin=admin)
        if transport is not None:  # None: the connection is gone, no peer to remember
            _callers[transport] = found
    return found


def reach(request: web.Request) -> Reach:
    """What a request naming a record may reach: the caller's own, or an admin's everyone's."""
    return caller(request).reach


def listing_reach(request: web.Request) -> Reach:
    """Whose records a listing shows: the caller's, or with ?allUsers=true (admins only)
    everyone's."""
    return caller(request).listing(bool_param(request, "allUsers"))


def _peer(sock: Any) -> Owner:
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return Owner(uid=uid, user=user_name(uid), via="unix")
    uid = os.getuid()
    return Owner(uid=uid, user=user_name(uid), via="tcp")
