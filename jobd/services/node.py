"""What the node has and how jobd is, for GET /v1/node, /v1/doctor and /v1/health: capacity,
holders and what is free (from the same reckoning placement uses), jobd's checks of what it
depends on, and the runtime's and scheduler's state."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from jobd import __version__
from jobd.config import Config
from jobd.domain.capacity import Free, GpuState, free_on
from jobd.domain.engine import RuntimeInfo
from jobd.domain.identity import Identity, mode_summary, run_as
from jobd.domain.node import NodeInventory
from jobd.domain.records import rfc3339
from jobd.domain.runs import Run
from jobd.domain.states import ACTIVE_STATUSES
from jobd.errors import NoSpace, RuntimeFailure
from jobd.node.disk import Footprint
from jobd.node.doctor import checks
from jobd.node.firewall import HostGuard
from jobd.node.inventory import Inventory
from jobd.services.footprint import ASKED_SECONDS, POLLED_SECONDS, FootprintCache
from jobd.store import Store
from jobd.users import user_name

HEALTH_INFO_SECONDS = 5.0  # how stale the runtime facts /v1/health serves may be
LOW_SPACE_BYTES = 1024 * 1024  # a write failed for lack of space and less is free: degraded


class InfoSource(Protocol):
    """What the runtime says of itself, asked again once the last answer is `max_age` old."""

    def __call__(self, *, max_age: float = 0.0) -> Awaitable[RuntimeInfo]: ...


class Node:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        inventory: Inventory,
        info: RuntimeInfo,
        runtime_info: InfoSource,
        scheduler_report: Callable[[], dict[str, Any]],
        host_guard: HostGuard,
        latest: Callable[[], Mapping[str, Mapping[str, float]]],
    ) -> None:
        self.config = config
        self.host_guard = host_guard  # whether runs may connect to the host, as set at start
        self.store = store
        self.inventory = inventory
        self.info = info  # as the runtime said at startup
        self.runtime_info = runtime_info
        self.scheduler_report = scheduler_report
        self.latest = latest  # each running run's last CPU and memory samples
        self.started = time.time()
        self.footprints = FootprintCache(config, store)

    async def node_doc(self) -> dict[str, Any]:
        """What the node has, what each run holds, what is free, and the GPUs as they are now
        (with memory used by processes jobd did not start)."""
        node = await self.inventory.read()
        active = await self.store.runs_with_status(ACTIVE_STATUSES)
        doc = node_doc(free_on(node, active), node, active, self.latest())
        doc["queue"] = {"pending": await self.store.count_pending()}
        doc["dataDir"] = (await self.footprint()).to_api(self.config.data_dir)
        return doc

    async def footprint(self) -> Footprint:
        """What the data directory holds (database, logs, outputs, uploads, volumes, the
        metric points' share) and the room left, at most ASKED_SECONDS old."""
        found = await self.footprints.get(max_age=ASKED_SECONDS, wait=True)
        assert found is not None  # a walk that waited has found one
        return found

    async def doctor_doc(self) -> dict[str, Any]:
        """jobd's own checks of what it needs: podman, limits, the GPU path, how it runs as a
        service; and what its data directory holds."""
        found = await checks(self.config, self.info, await self.inventory.read(), self.host_guard)
        return {
            "ok": all(c.level != "fail" for c in found),
            "checks": [c.to_api() for c in found],
            "footprint": (await self.footprint()).to_api(self.config.data_dir),
        }

    async def health_doc(self) -> dict[str, Any]:
        podman: dict[str, Any]
        try:
            async with asyncio.timeout(5):
                info = await self.runtime_info(max_age=HEALTH_INFO_SECONDS)
            podman = {"reachable": True, **_podman_doc(info)}
        except (RuntimeFailure, TimeoutError) as e:
            info = self.info
            podman = {"reachable": False, "error": str(e), **_podman_doc(info)}
        uid = os.getuid()
        reasons = [] if podman["reachable"] else [f"podman is unreachable: {podman['error']}"]
        reasons += await asyncio.to_thread(_disk_full, self.config)
        last = await self.footprints.get(max_age=POLLED_SECONDS, wait=False)
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "version": __version__,
            "podman": podman,
            "limits": {
                "enforced": info.limits_enforced,
                "missingControllers": list(info.missing_controllers),
                "note": info.limits_note,
            },
            "node": _node_summary(self.inventory),
            "isolation": {**_isolation(uid, info), "host": self.host_guard.to_api()},
            "daemon": {
                "uid": uid,
                "user": user_name(uid),
                "pid": os.getpid(),
                "dataDir": str(self.config.data_dir),
            },
            "scheduler": self.scheduler_report(),
            "footprint": _footprint_doc(last, self.config),
            "uptimeSeconds": round(time.time() - self.started, 3),
        }


def _footprint_doc(found: Footprint | None, config: Config) -> dict[str, Any] | None:
    """The data directory's footprint as last walked (None until the first walk is done)."""
    return found.to_api(config.data_dir) if found else None


def _disk_full(config: Config) -> list[str]:
    """Why jobd is degraded by its disk: a write failed for lack of space (NoSpace) and the
    data directory's disk still has almost nothing free. Once it has, that failure is
    forgotten."""
    if NoSpace.noted_at is None:
        return []
    free = shutil.disk_usage(config.data_dir).free
    if free >= LOW_SPACE_BYTES:
        NoSpace.cleared()
        return []
    return [
        f"the disk of {config.data_dir} is full ({free} bytes free): writes fail until"
        " space is freed there"
    ]


def _isolation(daemon_uid: int, info: RuntimeInfo) -> dict[str, Any]:
    """How runs run here: as their owners (the system daemon), or in the daemon user's
    rootless podman; with which capabilities."""
    rootless = info.rootless

    def capabilities(owner_uid: int | None) -> list[str]:  # what such an owner's runs keep
        mode = run_as(owner_uid=owner_uid, daemon_uid=daemon_uid, rootless=rootless)
        return list(Identity.of(mode).capabilities)

    return {
        "mode": "rootless" if rootless else "owner",
        "summary": mode_summary(daemon_uid=daemon_uid, rootless=rootless),
        "ownerCapabilities": capabilities(None),  # another user's
        "daemonUserCapabilities": capabilities(daemon_uid),
        "noNewPrivileges": True,
    }


def _node_summary(inventory: Inventory) -> dict[str, Any]:
    node = inventory.last
    if node is None:
        return {}
    return {
        "cpus": node.cpus,
        "memoryBytes": node.memory_bytes,
        "gpus": node.gpus.to_api(),  # says why there are none when NVML is absent
    }


def _podman_doc(info: RuntimeInfo) -> dict[str, Any]:
    return {
        "version": info.version,
        "apiVersion": info.api_version,
        "rootless": info.rootless,
        "cgroupVersion": info.cgroup_version,
        "cgroupManager": info.cgroup_manager,
        "ociRuntime": info.oci_runtime,
    }


def node_doc(
    free: Free,
    node: NodeInventory,
    runs: list[Run],
    latest: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """GET /v1/node: what the node has, what each run holds, what is free, from the same
    reckoning placement uses — so it shows the truth placement acts on."""
    holding = [r for r in runs if r.status.holds_resources]
    return {
        "capacity": {
            "cpus": node.cpus,
            "memoryBytes": node.memory_bytes,
            "diskTotalBytes": node.disk_total_bytes,
            "diskFreeBytes": node.disk_free_bytes,
            "gpus": len(node.gpus.gpus),
        },
        "allocated": {
            "cpus": sum(r.plan.cpus for r in holding),
            "memoryBytes": sum(r.plan.memory_bytes for r in holding),
            "storageBytes": sum(r.plan.storage_bytes for r in holding),
            "gpus": sum(len(r.allocation.gpus) for r in holding if r.allocation),
        },
        "free": {
            "cpus": max(0.0, free.cpus),
            "memoryBytes": max(0, free.memory_bytes),
            "storageBytes": max(0, free.storage_bytes),
            "cores": sorted(free.cores),
            "gpus": sum(1 for s in free.gpus if s.idle),
        },
        "gpuSource": node.gpus.to_api(),
        "gpus": [_gpu_doc(s) for s in free.gpus],
        "runs": [_run_doc(r, latest.get(r.id, {})) for r in holding],
    }


def _gpu_doc(state: GpuState) -> dict[str, Any]:
    holders = (
        [{"runId": state.exclusive, "shared": False, "usedBytes": state.used.get(state.exclusive)}]
        if state.exclusive
        else []
    )
    holders += [
        {"runId": run_id, "shared": True, "vramBytes": want, "usedBytes": state.used.get(run_id)}
        for run_id, want in state.shared.items()
    ]
    if state.exclusive:
        use = "exclusive"
    elif state.shared:
        use = "shared"
    else:
        use = "busy" if state.busy_outside else "free"
    return {
        **state.gpu.to_api(),
        "state": use,
        "allocatedTo": holders,
        "foreignMemoryBytes": state.foreign_bytes,
        "foreignPids": list(state.foreign_pids),
        "availableBytes": max(0, state.available),
    }


def _run_doc(run: Run, latest: Mapping[str, float]) -> dict[str, Any]:
    memory = latest.get("memory_usage")
    return {
        "runId": run.id,
        "jobId": run.job_id,
        "status": run.status.value,
        "plan": run.plan.id,
        "user": user_name(run.owner_uid) if run.owner_uid is not None else None,
        "startedAt": rfc3339(run.started_at),
        "cpuUsage": latest.get("cpu_usage"),
        "memoryUsageBytes": int(memory) if memory is not None else None,
        "cpus": run.plan.cpus,
        "memoryBytes": run.plan.memory_bytes,
        "storageBytes": run.plan.storage_bytes,
        **(run.allocation.to_api() if run.allocation else {"gpus": [], "cpuSet": None}),
    }
