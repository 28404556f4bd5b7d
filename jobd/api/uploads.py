"""/v1/uploads: files handed to jobd for jobs to read, streamed in as the request's body."""

from __future__ import annotations

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import body_check, caller, listing_reach, reach
from jobd.api.requests import json_response
from jobd.domain.resources import MIB


async def create_upload(request: web.Request) -> web.Response:
    """The body is the file, as it is (no form encoding); `?name=` names it for the jobs that
    mount it (/inputs/<name>). A signed request's signature is checked against the file's
    sha256 once it has arrived, before it is kept."""
    upload = await request.app[SERVICES].uploads.receive(
        request.content.iter_chunked(MIB),
        name=request.query.get("name", ""),
        length=request.content_length,
        owner=caller(request).owner,
        check=body_check(request),
    )
    return json_response(upload, status=201)


async def list_uploads(request: web.Request) -> web.Response:
    uploads = request.app[SERVICES].uploads
    found = await uploads.list_uploads(listing_reach(request), sha256=request.query.get("sha256"))
    return json_response({"uploads": found})


async def get_upload(request: web.Request) -> web.Response:
    uploads = request.app[SERVICES].uploads
    return json_response(await uploads.get(request.match_info["slug"], reach(request)))


async def delete_upload(request: web.Request) -> web.Response:
    await request.app[SERVICES].uploads.delete(request.match_info["slug"], reach(request))
    return web.Response(status=204)
