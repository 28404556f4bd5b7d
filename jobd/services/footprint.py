"""The data directory's footprint for /v1/node, doctor and /v1/health: a walk of its parts and
the metric points' share of the database, made in a thread. One walk serves everyone who asks
while it runs. A person asking (node, doctor) gets one at most ASKED_SECONDS old, so what a job
just wrote shows; health, which is polled, never waits for a walk: it shows the last one (none
until the first is done) and starts the next when that one is older than POLLED_SECONDS."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from jobd.config import Config
from jobd.node.disk import Footprint, footprint
from jobd.store import Store

log = logging.getLogger(__name__)
ASKED_SECONDS = 2.0  # how stale the footprint a person asks for may be
POLLED_SECONDS = 60.0  # how stale the footprint health shows may be (it is a walk)


class FootprintCache:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._last: tuple[float, Footprint] | None = None  # (monotonic, what it found)
        self._walking: asyncio.Task[Footprint] | None = None

    async def get(self, *, max_age: float, wait: bool) -> Footprint | None:
        """The footprint, walked again first if it is older than `max_age` and `wait`; without
        `wait`, the last one found (a walk starts in the background when it is stale)."""
        stale = self._last is None or time.monotonic() - self._last[0] > max_age
        if stale and self._walking is None:
            self._walking = asyncio.create_task(self._walk(), name="footprint")
        if stale and wait and self._walking is not None:
            return await asyncio.shield(self._walking)
        return self._last[1] if self._last else None

    async def _walk(self) -> Footprint:
        try:
            found = await asyncio.to_thread(footprint, self.config)
            metrics, how = await self.store.metric_bytes()
            found = dataclasses.replace(found, metrics=metrics, metrics_estimate=how)
            self._last = (time.monotonic(), found)
            return found
        finally:
            self._walking = None
