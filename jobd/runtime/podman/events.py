"""Container deaths from podman's event stream, followed in a thread of its own (podman-py
blocks) and replayed with `since=` when the stream breaks: a death may be reported twice,
never missed."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import podman

from jobd.runtime.contract import ContainerExit
from jobd.runtime.podman.translate import exit_of

log = logging.getLogger(__name__)


async def exits(socket: Path, label: str, since: float) -> AsyncIterator[ContainerExit]:
    """Every death of a container labelled `label` from `since` on, forever."""
    queue: asyncio.Queue[ContainerExit] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def emit(exit_: ContainerExit) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, exit_)

    thread = threading.Thread(
        target=_follow, args=(socket, label, since, emit, stop), name="podman-events", daemon=True
    )
    thread.start()
    try:
        while True:
            yield await queue.get()
    finally:
        stop.set()


def _follow(
    socket: Path,
    label: str,
    since: float,
    emit: Callable[[ContainerExit], Any],
    stop: threading.Event,
) -> None:
    client = podman.PodmanClient(base_url=f"http+unix://{socket}", timeout=None)
    last = since
    while not stop.is_set():
        try:
            for event in client.events(
                since=int(last) - 1,
                filters=["type=container", "event=died", f"label={label}"],
                decode=True,
            ):
                if stop.is_set():
                    return
                last = max(last, float(event.get("time", last)))
                exit_ = exit_of(event)
                if exit_ is not None:
                    emit(exit_)
        except Exception as e:  # the stream broke (podman restarted?): replay with since=
            log.warning("podman event stream broke (%s); reconnecting", e)
            stop.wait(1.0)
    client.close()
