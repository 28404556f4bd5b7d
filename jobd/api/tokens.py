"""/v1/tokens: users' API tokens for the TCP port (bearer tokens and signing keys)."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import caller, listing_reach, reach
from jobd.api.requests import json_body, json_response


async def create_token(request: web.Request) -> web.Response:
    tokens = request.app[SERVICES].tokens
    return json_response(await tokens.create(await json_body(request), caller(request)), status=201)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = request.app[SERVICES].tokens
    return json_response({"tokens": await tokens.list_tokens(listing_reach(request))})


async def get_token(request: web.Request) -> web.Response:
    tokens = request.app[SERVICES].tokens
    return json_response(await tokens.get(request.match_info["token_id"], reach(request)))


async def revoke_token(request: web.Request) -> web.Response:
    tokens = request.app[SERVICES].tokens
    return json_response(await tokens.revoke(request.match_info["token_id"], reach(request)))
