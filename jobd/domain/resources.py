"""What a run is given: plans (named sizes, or a job's own requirements), the GPUs and cores
it was allocated, and the limits its container got. Sizes are bytes; the API's *Gb fields are
decimal GB, as GPU makers count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobd.domain.identity import Identity

SECONDS_PER_MONTH = 30 * 24 * 3600  # plan prices are prorated over a 30-day month
DEFAULT_PLAN = "standard"
MIB = 1024 * 1024
GIB = 1024 * MIB
GB = 1000**3  # the API's *Gb fields are decimal, as GPU makers count ("80 GB" H100s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a run is given: a named size from the plan table, or a job's own requirements
    (id "custom"). GPUs are whole and exclusive unless `gpu_share`: then each of them is
    shared with other runs, `min_vram_bytes` of its memory promised to this one."""

    id: str
    memory_bytes: int
    cpus: float
    pids_limit: int = 4096
    price_per_month: float | None = None
    gpus: int = 0
    min_vram_bytes: int = 0  # each of its GPUs has at least this much memory free for it
    gpu_share: bool = False
    storage_bytes: int = 0  # free disk it needs where containers are stored

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memoryBytes": self.memory_bytes,
            "memoryMb": self.memory_bytes // MIB,
            "cpus": self.cpus,
            "pidsLimit": self.pids_limit,
            "pricePerMonth": self.price_per_month,
            "gpus": self.gpus,
            "minVramBytes": self.min_vram_bytes,
            "gpuShare": self.gpu_share,
            "storageBytes": self.storage_bytes,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            id=data["id"],
            memory_bytes=int(data["memoryBytes"]),
            cpus=float(data["cpus"]),
            pids_limit=int(data["pidsLimit"]),
            price_per_month=data.get("pricePerMonth"),
            gpus=int(data.get("gpus", 0)),
            min_vram_bytes=int(data.get("minVramBytes", 0)),
            gpu_share=bool(data.get("gpuShare", False)),
            storage_bytes=int(data.get("storageBytes", 0)),
        )

    @classmethod
    def from_requirements(cls, wanted: Mapping[str, Any]) -> Plan:
        """A job's explicit requirements (the GPU clouds' convention), schema-validated."""
        return cls(
            id="custom",
            cpus=float(wanted.get("cpuCount", 1)),
            memory_bytes=round(float(wanted.get("minRamGb", 2)) * GB),
            gpus=int(wanted.get("gpuCount", 0)),
            min_vram_bytes=round(float(wanted.get("minVramGb", 0)) * GB),
            gpu_share=bool(wanted.get("gpuShare", False)),
            storage_bytes=round(float(wanted.get("minStorageGb", 0)) * GB),
        )


def _plan(pid: str, memory_mb: int, cpus: float, price: float | None, gpus: int = 0) -> Plan:
    return Plan(id=pid, memory_bytes=memory_mb * MIB, cpus=cpus, price_per_month=price, gpus=gpus)


# Render's instance types for one-off jobs.
DEFAULT_PLANS: Mapping[str, Plan] = {
    p.id: p
    for p in (
        _plan("starter", 512, 0.5, 7.0),
        _plan("starter-plus", 1024, 1, 15.0),
        _plan("standard", 2048, 1, 25.0),
        _plan("standard-plus", 3072, 1.5, 50.0),
        _plan("pro", 4096, 2, 85.0),
        _plan("pro-plus", 8192, 4, 175.0),
        _plan("pro-max", 16384, 8, None),
        _plan("pro-ultra", 32768, 16, None),
        # GPU plans: one or two whole GPUs, exclusive ($1 per GPU-hour)
        _plan("gpu-1", 32768, 8, 720.0, gpus=1),
        _plan("gpu-2", 65536, 16, 1440.0, gpus=2),
    )
}

# Render's instance type ids (its API's `planId`), for scripts ported from it: each names the
# plan of the same tier. Render's one-off jobs page lists plan-srv-006, 008, 010, 011, 013 and
# 014 (web services, private services, workers) and plan-crn-003, 005, 007 and 008 (cron jobs);
# the ids between follow its tiers' order (starter, starter plus, standard, standard plus, ...),
# and plan-crn-002 is the id its docs show for a job made of a cron job (the smallest tier).
# plan-srv-012 names no tier Render documents; it sits between pro-plus (011) and pro-max
# (013), so it names pro-max: a ported script never gets less than either neighbour gives.
RENDER_PLAN_IDS: Mapping[str, str] = {
    "plan-srv-006": "starter",
    "plan-srv-007": "starter-plus",
    "plan-srv-008": "standard",
    "plan-srv-009": "standard-plus",
    "plan-srv-010": "pro",
    "plan-srv-011": "pro-plus",
    "plan-srv-012": "pro-max",
    "plan-srv-013": "pro-max",
    "plan-srv-014": "pro-ultra",
    "plan-crn-002": "starter",
    "plan-crn-003": "starter",
    "plan-crn-004": "starter-plus",
    "plan-crn-005": "standard",
    "plan-crn-006": "standard-plus",
    "plan-crn-007": "pro",
    "plan-crn-008": "pro-plus",
}


def plan_name(plan_id: str) -> str:
    """The plan a request's plan id names: a Render instance type id as its tier's plan."""
    return RENDER_PLAN_IDS.get(plan_id, plan_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuGrant:
    """A GPU given to a run: whole, or shared with `vram_bytes` of its memory promised."""

    uuid: str
    index: str
    name: str
    shared: bool = False
    vram_bytes: int = 0
    factor: float = 1.0  # its model's performance factor, for normalizedSeconds

    def to_api(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "name": self.name,
            "shared": self.shared,
            "vramBytes": self.vram_bytes,
            "performanceFactor": self.factor,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> GpuGrant:
        return cls(
            uuid=data["uuid"],
            index=data["index"],
            name=data["name"],
            shared=data["shared"],
            vram_bytes=data["vramBytes"],
            factor=data.get("performanceFactor", 1.0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocation:
    """Exactly what a run was given beside its plan's sums: its GPUs and, when its CPUs are
    whole, the cores it is pinned to (others float over the cores, under their CPU quota)."""

    gpus: tuple[GpuGrant, ...] = ()
    cores: tuple[int, ...] = ()

    @property
    def cpu_set(self) -> str | None:
        return ",".join(str(c) for c in self.cores) if self.cores else None

    def to_api(self) -> dict[str, Any]:
        return {"gpus": [g.to_api() for g in self.gpus], "cpuSet": self.cpu_set}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Allocation:
        cpu_set = data.get("cpuSet")
        return cls(
            gpus=tuple(GpuGrant.from_api(g) for g in data.get("gpus", ())),
            cores=tuple(int(c) for c in cpu_set.split(",")) if cpu_set else (),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The limits a run's container was given, and whether the kernel enforces them."""

    memory_bytes: int
    cpus: float
    pids_limit: int
    nofile: int
    nproc: int
    enforced: bool
    note: str | None = None  # why they are not enforced, when they are not
    identity: Identity | None = None  # who its process was on the host (None: older runs)

    def to_api(self) -> dict[str, Any]:
        return {
            "memoryBytes": self.memory_bytes,
            "cpus": self.cpus,
            "pidsLimit": self.pids_limit,
            "nofile": self.nofile,
            "nproc": self.nproc,
            "enforced": self.enforced,
            "note": self.note,
            "runAs": self.identity.to_api() if self.identity else None,
        }

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Limits:
        return cls(
            memory_bytes=data["memoryBytes"],
            cpus=data["cpus"],
            pids_limit=data["pidsLimit"],
            nofile=data["nofile"],
            nproc=data["nproc"],
            enforced=data["enforced"],
            note=data.get("note"),
            identity=Identity.from_api(data["runAs"]) if data.get("runAs") else None,
        )
