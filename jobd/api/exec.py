"""/v1/runs/{id}/exec: a command in the run's running container, attached over a WebSocket."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from jobd.api.context import MAX_BODY, SERVICES, STREAMS
from jobd.api.middleware import caller, own_reach
from jobd.domain.engine import ExecSession
from jobd.errors import InvalidRequest, RuntimeFailure

log = logging.getLogger(__name__)


async def exec_in_run(request: web.Request) -> web.StreamResponse:
    """Binary messages carry stdin in, and output out after a byte naming its stream (1
    stdout, 2 stderr); text messages carry control: {"resize": [rows, columns]} and
    {"eof": true} in, and last {"exit": code} out."""
    services = request.app[SERVICES]
    # a shell in a run has its owner's powers: the owner's (or an admin's), never a teammate's
    run = await services.runs.get(request.match_info["run_id"], own_reach(request))
    command = request.query.getall("cmd", [])
    if not command or not command[0]:
        raise InvalidRequest("cmd: the command to run, one cmd parameter per argument")
    if any("\x00" in part for part in command):
        raise InvalidRequest("cmd: NUL characters are not allowed")
    target = services.exec_sessions.target(run)
    socket = web.WebSocketResponse(max_msg_size=MAX_BODY)
    if not socket.can_prepare(request).ok:
        raise InvalidRequest("exec: upgrade to a WebSocket (jobctl exec does)")
    tty = request.query.get("tty", "false").lower() in {"1", "true", "yes"}
    with request.app[STREAMS].held(caller(request)):
        return await _attached(request, socket, target, command, tty)


async def _attached(
    request: web.Request,
    socket: web.WebSocketResponse,
    target: str,
    command: list[str],
    tty: bool,
) -> web.StreamResponse:
    services = request.app[SERVICES]
    session = await services.exec_sessions.open(target, command, tty=tty)
    await socket.prepare(request)
    output = asyncio.create_task(_copy_output(socket, session))
    feeding = asyncio.create_task(_feed_exec(socket, session))
    try:
        await asyncio.wait({output, feeding}, return_when=asyncio.FIRST_COMPLETED)
        if output.done() and output.exception() is None:  # the process exited
            await socket.send_json({"exit": await session.exit_code()})
    finally:  # or the client went away: the process loses its stdin and output
        for task in (output, feeding):
            task.cancel()
        await asyncio.gather(output, feeding, return_exceptions=True)
        session.close()
        await socket.close()
    return socket


async def _copy_output(socket: web.WebSocketResponse, session: ExecSession) -> None:
    while piece := await session.read():
        await socket.send_bytes(bytes([piece[0]]) + piece[1])


async def _feed_exec(socket: web.WebSocketResponse, session: ExecSession) -> None:
    """The client's stdin and terminal size, until it closes. A control message jobd can't
    read or apply is dropped: the session goes on."""
    async for message in socket:
        if message.type is WSMsgType.BINARY:
            await session.write(message.data)
        elif message.type is WSMsgType.TEXT:
            try:
                await _exec_control(orjson.loads(message.data), session)
            except (ValueError, TypeError, KeyError, RuntimeFailure) as e:
                log.info("exec %s: control message dropped: %s", session.exec_id, e)


async def _exec_control(control: Any, session: ExecSession) -> None:
    if control.get("eof"):
        session.close_stdin()
    if control.get("resize") and session.tty:
        rows, columns = control["resize"]
        await session.resize(int(rows), int(columns))
