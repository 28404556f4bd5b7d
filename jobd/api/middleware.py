"""Errors as JSON, in one place; who is asking (the peer on the Unix socket, a token or a
signed request on TCP), what their token's scope lets them do, and what they reach."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
import struct
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from jobd.api.context import MAX_BODY, SERVICES, THROTTLE
from jobd.api.requests import bool_param, json_response
from jobd.domain.owners import Caller, Owner, Reach
from jobd.domain.tokens import (
    KEY_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from jobd.errors import (
    Forbidden,
    JobdError,
    TooManyRequests,
    Unauthorized,
    lacks_space,
    no_space,
)
from jobd.services.sessions import Session
from jobd.services.tokens import BodyCheck, SignedRequest
from jobd.users import user_name

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CALLER = web.RequestKey("caller", Caller)
BODY_CHECK: web.RequestKey[BodyCheck] = web.RequestKey("body_check")
SESSION: web.RequestKey[Session] = web.RequestKey("session")
SESSION_COOKIE = "jobd_session"
LOGIN_PATH = "/login"
STATIC_PREFIX = "/static/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITING_READS = frozenset({"/v1/runs/{run_id}/exec"})  # GETs that change something
# requests whose body the handler reads as it arrives (and checks the signature of)
STREAMED_BODIES = frozenset({("POST", "/v1/uploads")})
SIGNED_HEADERS = (KEY_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JobdError as e:
        response = json_response(error_body(e.code, e.message), status=e.status)
        if isinstance(e, TooManyRequests):
            response.headers["Retry-After"] = str(e.retry_after)
        return response
    except (OSError, sqlite3.Error) as e:  # a write no boundary translated: still a 507
        if not lacks_space(e):
            raise
        full = no_space(e, "what the request asked for")
        return json_response(error_body(full.code, full.message), status=full.status)
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
    """Who is asking, once per request: the peer on the Unix socket; on TCP the token or
    the signed request, or the dashboard's session cookie, checked again on every request
    (a revocation bites at once). A token's scope decides whether the request may change
    anything. The login page and static files are everyone's; a dashboard page asked for
    without a login goes to the login page."""
    if request.path == LOGIN_PATH or request.path.startswith(STATIC_PREFIX):
        return await handler(request)
    who = _peer_caller(request) or await _session_caller(request)
    if who is None:
        try:
            who = await _authenticated(request)
        except Unauthorized:
            if not request.path.startswith("/v1/") and request.path != "/metrics":
                raise web.HTTPSeeOther(LOGIN_PATH) from None
            raise
    request[CALLER] = who
    if not who.may(writes=writes(request)):
        raise Forbidden(
            f"this token's scope is {who.scope}: it may not {request.method} {request.path}"
        )
    return await handler(request)


async def _authenticated(request: web.Request) -> Caller:
    """The TCP caller; failures from one peer are answered slower and slower."""
    tokens = request.app[SERVICES].tokens
    try:
        if KEY_HEADER in request.headers:
            return await _signed(request)
        return await tokens.bearer(request.headers.get("Authorization", ""))
    except Unauthorized:
        await slowed_down(request)
        raise


async def slowed_down(request: web.Request) -> None:
    """A failed authentication from this peer: answered later the more it fails (throttle.py);
    TooManyRequests past the limit."""
    wait = request.app[THROTTLE].failed(request.remote or "?")
    if wait:
        await asyncio.sleep(wait)


async def _signed(request: web.Request) -> Caller:
    headers = request.headers
    missing = [h for h in SIGNED_HEADERS if not headers.get(h)]
    if missing:
        raise Unauthorized(f"a signed request needs {', '.join(missing)} too")
    who, check = await request.app[SERVICES].tokens.signed(
        SignedRequest(
            key_id=headers[KEY_HEADER],
            timestamp=headers[TIMESTAMP_HEADER],
            nonce=headers[NONCE_HEADER],
            signature=headers[SIGNATURE_HEADER],
            method=request.method,
            target=request.raw_path,
        )
    )
    if (request.method, _route(request)) in STREAMED_BODIES:
        request[BODY_CHECK] = check  # the handler checks the body as it has read it
    else:
        check(hashlib.sha256(await request.read()).hexdigest())
    return who


async def _session_caller(request: web.Request) -> Caller | None:
    """The caller a dashboard session cookie names (never beside a token or a signature,
    which say who the request is themselves). Its state-changing requests must carry the
    session's CSRF token (the X-CSRF-Token header, or a form's csrf field)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or "Authorization" in request.headers or KEY_HEADER in request.headers:
        return None
    found = await request.app[SERVICES].sessions.caller(session_id)
    if found is None:
        return None
    session, who = found
    if writes(request) and not session.csrf_ok(await _csrf_given(request)):
        raise Forbidden("an action without this page's CSRF token: reload the page")
    request[SESSION] = session
    return who


async def _csrf_given(request: web.Request) -> str | None:
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type == "application/x-www-form-urlencoded":
        field = (await request.post()).get("csrf")
        given = field if isinstance(field, str) else None
    return given


def session(request: web.Request) -> Session | None:
    """The dashboard session the request came with, if it came with one."""
    return request.get(SESSION)


def writes(request: web.Request) -> bool:
    """Whether the request changes something (a read-only token may not make it; the audit
    log records it)."""
    return request.method not in READ_METHODS or _route(request) in WRITING_READS


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


# per connection: a client's requests on one connection come from the same peer (None: TCP)
_peers: weakref.WeakKeyDictionary[asyncio.BaseTransport, Caller | None] = (
    weakref.WeakKeyDictionary()
)


def _peer_caller(request: web.Request) -> Caller | None:
    """The caller on the Unix socket, who the kernel says the peer is; None on TCP."""
    transport = request.transport
    if transport is None:  # the connection is gone: nobody to answer
        return None
    try:
        return _peers[transport]
    except KeyError:
        pass
    sock = transport.get_extra_info("socket")
    found = None
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        owner = Owner(uid=uid, user=user_name(uid), via="unix")
        config = request.app[SERVICES].config
        found = Caller(
            owner=owner,
            admin=config.is_admin(owner.user, uid),
            projects=config.sharing.projects_of(owner.user),
        )
    _peers[transport] = found
    return found


def caller(request: web.Request) -> Caller:
    """Who is asking (auth_middleware found out)."""
    return request[CALLER]


def body_check(request: web.Request) -> BodyCheck | None:
    """For a signed request whose body streams (an upload): the check of its signature, to
    call with the body's sha256 once it is read. None for any other request."""
    return request.get(BODY_CHECK)


def reach(request: web.Request) -> Reach:
    """What a request naming a record may reach: the caller's own, or an admin's everyone's."""
    return caller(request).reach


def own_reach(request: web.Request) -> Reach:
    """What a request that changes what a run executes (or opens a shell in one) may reach:
    the caller's own records only, an admin's everyone's (Caller.own_reach)."""
    return caller(request).own_reach


def listing_reach(request: web.Request) -> Reach:
    """Whose records a listing shows: the caller's, or with ?allUsers=true (admins only)
    everyone's."""
    return caller(request).listing(bool_param(request, "allUsers"))
