"""What /metrics shows, gathered at scrape time: runs by status, the queue, who runs what,
the node's capacity and what is allocated, each GPU, placement passes, log bytes taken in,
the store's size, and each running run's last CPU and memory samples. A snapshot is read in
a few small queries (counts from the status index; the active runs, which are few), so a
scrape stays cheap with many thousands queued."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jobd.config import Config
from jobd.domain.capacity import Free, free_on
from jobd.domain.node import NodeInventory
from jobd.domain.progress import MarkerCounts
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES
from jobd.logs.stream import StreamTotals
from jobd.node.inventory import Inventory
from jobd.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class PassCount:
    count: int
    seconds: float  # all passes together


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    moment: float  # unix seconds
    started: float  # when jobd started
    statuses: Mapping[str, int]
    oldest_pending: float | None  # when the longest-waiting queued run was created
    active: list[Run]
    node: NodeInventory
    free: Free
    passes: PassCount
    log_bytes: int
    store_bytes: int
    latest: Mapping[str, Mapping[str, float]]  # running run -> metric -> its last sample
    log_stream: StreamTotals | None  # None: no [log_stream]
    markers: MarkerCounts


class Telemetry:
    def __init__(
        self,
        *,
        store: Store,
        config: Config,
        inventory: Inventory,
        passes: Callable[[], PassCount],
        log_bytes: Callable[[], int],
        latest: Callable[[], Mapping[str, Mapping[str, float]]],
        log_stream: Callable[[], StreamTotals | None] = lambda: None,
        markers: Callable[[], MarkerCounts] = MarkerCounts,
    ) -> None:
        self.store = store
        self.config = config
        self.inventory = inventory
        self._passes = passes
        self._log_bytes = log_bytes
        self._latest = latest
        self._log_stream = log_stream
        self._markers = markers
        self.started = time.time()

    async def snapshot(self) -> Snapshot:
        node = await self.inventory.read()
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        return Snapshot(
            moment=time.time(),
            started=self.started,
            statuses=await self.store.count_by_status(),
            oldest_pending=await self.store.oldest_pending(),
            active=active,
            node=node,
            free=free_on(node, active),
            passes=self._passes(),
            log_bytes=self._log_bytes(),
            store_bytes=self._store_bytes(),
            latest=self._latest(),
            log_stream=self._log_stream(),
            markers=self._markers(),
        )

    def _store_bytes(self) -> int:
        database = self.config.database
        total = 0
        for path in (database, database.with_name(database.name + "-wal")):
            with contextlib.suppress(OSError):  # no WAL file just now
                total += path.stat().st_size
        return total
