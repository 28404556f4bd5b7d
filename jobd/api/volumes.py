"""/v1/volumes: the named volumes jobd manages."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import caller, listing_reach, reach
from jobd.api.requests import json_body, json_response


async def list_volumes(request: web.Request) -> web.Response:
    volumes = request.app[SERVICES].volumes
    return json_response({"volumes": await volumes.list_volumes(listing_reach(request))})


async def create_volume(request: web.Request) -> web.Response:
    volumes = request.app[SERVICES].volumes
    return json_response(
        await volumes.create(await json_body(request), caller(request).owner), status=201
    )


async def get_volume(request: web.Request) -> web.Response:
    volumes = request.app[SERVICES].volumes
    return json_response(await volumes.get(request.match_info["name"], reach(request)))


async def delete_volume(request: web.Request) -> web.Response:
    await request.app[SERVICES].volumes.delete(request.match_info["name"], reach(request))
    return web.Response(status=204)
