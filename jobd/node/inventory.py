"""Reading the node: CPUs and memory (psutil, the daemon's CPU affinity), free disk where
containers are stored, and the GPUs (NVML, or a supplied inventory; see gpus.py). Reads
block, so they run in a thread, and a read younger than `max_age` is served again."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import psutil

from jobd.domain.node import GpuInventory, NodeInventory
from jobd.node.gpus import GpuSource, container_of

log = logging.getLogger(__name__)
READ_SECONDS = 1.0  # placement passes within this share one read of the node
MISSING_GPUS_SECONDS = 60.0  # without NVML, how often to look again (a driver installed)


class Inventory:
    def __init__(self, gpus: GpuSource | None, *, disk_path: Path) -> None:
        self._gpus = gpus
        self._disk_path = disk_path
        self._last: tuple[float, NodeInventory] | None = None
        self._last_gpus: tuple[float, GpuInventory] | None = None
        self._lock = asyncio.Lock()
        self._reported: str | None = None

    @classmethod
    def fixed(cls, node: NodeInventory) -> Inventory:
        """A node that never changes (unit tests of the supervisor)."""
        inventory = cls(None, disk_path=Path("/"))
        inventory._last = (float("inf"), node)
        return inventory

    @property
    def last(self) -> NodeInventory | None:
        """The node as last read (at startup, then by each placement pass)."""
        return self._last[1] if self._last else None

    async def read(self, max_age: float = READ_SECONDS) -> NodeInventory:
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] <= max_age:
                return self._last[1]
            node = await asyncio.to_thread(self._read)
            self._last = (time.monotonic(), node)
            return node

    def _read(self) -> NodeInventory:
        cores = tuple(sorted(os.sched_getaffinity(0)))
        disk = psutil.disk_usage(str(_existing_parent(self._disk_path)))
        gpus = self._read_gpus()
        pids = {p.pid for g in gpus.gpus for p in g.processes}
        containers = {pid: cid for pid in pids if (cid := container_of(pid)) is not None}
        return NodeInventory(
            cpus=len(cores),
            cores=cores,
            memory_bytes=psutil.virtual_memory().total,
            disk_total_bytes=disk.total,
            disk_free_bytes=disk.free,
            gpus=gpus,
            process_containers=containers,
        )

    def _read_gpus(self) -> GpuInventory:
        if self._gpus is None:
            return GpuInventory(source="none", error="no GPU source")
        last = self._last_gpus
        if last and last[1].error and time.monotonic() - last[0] < MISSING_GPUS_SECONDS:
            return last[1]
        gpus = self._gpus.read()
        if gpus.error != self._reported:  # say it once, not every second
            self._reported = gpus.error
            if gpus.error:
                log.warning("GPUs: %s", gpus.error)
            else:
                log.info("GPUs (%s): %d found", gpus.source, len(gpus.gpus))
        self._last_gpus = (time.monotonic(), gpus)
        return gpus


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
