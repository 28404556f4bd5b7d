"""/v1/runs/{id}/outputs: a run's kept outputs, listed, one downloaded (Range requests served,
streamed), or all of them as a tar stream."""

from __future__ import annotations

import mimetypes
import os

from aiohttp import web

from jobd.api.context import SERVICES
from jobd.api.middleware import reach
from jobd.api.requests import json_response
from jobd.api.sendfile import SentFile
from jobd.errors import InvalidRequest


async def list_outputs(request: web.Request) -> web.StreamResponse:
    outputs = request.app[SERVICES].outputs
    run_id = request.match_info["run_id"]
    archive = request.query.get("archive")
    if archive is None:
        return json_response(await outputs.listing(run_id, reach(request)))
    if archive != "tar":
        raise InvalidRequest("archive: only tar")
    pieces = outputs.archive(run_id, reach(request))
    first = await anext(pieces, b"")  # a missing run is a 404 before the stream starts
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-tar",
            "Content-Disposition": f'attachment; filename="{run_id}-outputs.tar"',
        }
    )
    await response.prepare(request)
    await response.write(first)
    async for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return response


async def get_output(request: web.Request) -> web.StreamResponse:
    """One output, from the file opened without following any symlink: served (ranges,
    sendfile) by its /proc/self/fd path, so what a running job may swap in the meantime is
    never what is read."""
    path = request.match_info["path"]
    outputs = request.app[SERVICES].outputs
    fd = await outputs.open(request.match_info["run_id"], path, reach(request))
    try:
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        response = SentFile(f"/proc/self/fd/{fd}", headers={"Content-Type": content_type})
        await response.prepare(request)
        return response
    finally:
        os.close(fd)
