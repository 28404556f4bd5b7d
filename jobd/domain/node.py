"""What the machine has: its CPUs, memory, disk and GPUs, as last read. The readers (psutil,
NVML, a supplied inventory) live in jobd/node/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuProcess:
    """A process using a GPU, as NVML lists it (compute and graphics processes)."""

    pid: int
    used_bytes: int | None  # None: NVML could not tell (e.g. without the right to see it)

    def to_api(self) -> dict[str, Any]:
        return {"pid": self.pid, "usedMemoryBytes": self.used_bytes}


@dataclass(frozen=True, slots=True, kw_only=True)
class Gpu:
    """One allocatable GPU: a whole GPU, or a MIG device of one (then `parent_uuid` names the
    GPU it is carved from, and the whole GPU is not itself allocatable)."""

    index: str  # NVML's index: "0"; a MIG device's "<gpu>:<mig>", as CDI names it: "0:1"
    uuid: str  # "GPU-..." or "MIG-..."
    name: str  # the model: "NVIDIA H200"
    memory_total: int  # bytes
    memory_free: int  # bytes, as NVML reports them now
    utilization: int | None = None  # percent of the last sample period; None: unknown
    processes: tuple[GpuProcess, ...] = ()
    parent_uuid: str | None = None
    minor: int | None = None  # /dev/nvidia<minor> of a whole GPU

    @property
    def memory_used(self) -> int:
        return max(0, self.memory_total - self.memory_free)

    def to_api(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "memoryTotalBytes": self.memory_total,
            "memoryFreeBytes": self.memory_free,
            "memoryUsedBytes": self.memory_used,
            "utilizationPercent": self.utilization,
            "processes": [p.to_api() for p in self.processes],
            "migParentUuid": self.parent_uuid,
            "minor": self.minor,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuInventory:
    """The GPUs one read found. `error` says why there are none when GPUs could not be read
    (no NVML library, no driver): jobd then runs without GPUs and its health says so."""

    gpus: tuple[Gpu, ...] = ()
    source: str = "nvml"  # "nvml", or "file:<path>" for a supplied inventory
    driver_version: str | None = None
    error: str | None = None
    no_driver: bool = False  # the error is that there is no NVIDIA driver: surely no GPUs

    @property
    def certain(self) -> bool:
        """Whether the list can be trusted to be all the GPUs there are (it was read, or
        there is no driver at all) — not a read that failed for a moment."""
        return self.error is None or self.no_driver

    def to_api(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "driverVersion": self.driver_version,
            "available": self.error is None,
            "error": self.error,
            "count": len(self.gpus),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInventory:
    """The machine as last read: what it has in all, and its GPUs as they are now."""

    cpus: int
    memory_bytes: int
    disk_total_bytes: int  # of the filesystem holding container storage
    disk_free_bytes: int
    cores: tuple[int, ...] = ()  # the CPUs jobd may use (its affinity); () means 0..cpus-1
    gpus: GpuInventory = field(default_factory=GpuInventory)
    # the GPU processes found inside containers: pid -> container id
    process_containers: Mapping[int, str] = field(default_factory=dict)

    @property
    def core_ids(self) -> tuple[int, ...]:
        return self.cores or tuple(range(self.cpus))
