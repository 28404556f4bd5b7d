"""jobd's checks of what it depends on, served at /v1/doctor for `jobctl doctor`: podman, its
limits, and the GPU path — NVML, the CDI specs the installed podman actually reads, a CDI
device for every GPU, and device nodes the daemon's user can open."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from jobd.config import Config
from jobd.domain.engine import RuntimeInfo
from jobd.domain.identity import mode_summary
from jobd.domain.node import NodeInventory
from jobd.domain.resources import Allocation, GpuGrant
from jobd.node.cdi import CdiRegistry, load_registry, max_cdi_version
from jobd.node.firewall import HostGuard
from jobd.node.passthrough import passthrough

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    name: str
    level: str  # ok, warn (works, with a caveat), fail (something users rely on is broken)
    message: str

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "message": self.message}


async def checks(
    config: Config, info: RuntimeInfo, node: NodeInventory, host: HostGuard
) -> list[Check]:
    registry = await asyncio.to_thread(
        load_registry, config.gpus.cdi_spec_dirs, max_cdi_version(info.version)
    )
    found = [_podman(info), _init(info), _limits(info), _isolation(info), _host(host), _nvml(node)]
    if node.gpus.gpus or registry.names(config.gpus.cdi_kind):
        found += [
            _cdi_specs(config, info, registry, node),
            _cdi_devices(config, registry, node),
            await asyncio.to_thread(_device_nodes, config, registry),
        ]
    return found


def _podman(info: RuntimeInfo) -> Check:
    return Check(
        name="podman",
        level=OK,
        message=f"podman {info.version} (API {info.api_version}), OCI runtime {info.oci_runtime},"
        f" cgroups {info.cgroup_version}, {'rootless' if info.rootless else 'rootful'}",
    )


def _isolation(info: RuntimeInfo) -> Check:
    return Check(
        name="isolation",
        level=OK,
        message=mode_summary(daemon_uid=os.getuid(), rootless=info.rootless),
    )


def _host(host: HostGuard) -> Check:
    return Check(name="host access", level=OK if host.guarded else WARN, message=host.note)


def _init(info: RuntimeInfo) -> Check:
    if info.init_path:
        return Check(name="init", level=OK, message=f"containers run {info.init_path} as PID 1")
    return Check(
        name="init",
        level=FAIL,
        message="podman's init (catatonit) is missing, so no container can be created: "
        "apt-get install catatonit",
    )


def _limits(info: RuntimeInfo) -> Check:
    if info.limits_enforced:
        return Check(name="limits", level=OK, message="memory, CPU and pids limits are enforced")
    return Check(name="limits", level=WARN, message=info.limits_note or "limits not enforced")


def _nvml(node: NodeInventory) -> Check:
    gpus = node.gpus
    if gpus.error:
        level = FAIL if gpus.source.startswith("file:") else WARN
        return Check(name="gpus", level=level, message=gpus.error)
    names = ", ".join(f"{g.index}: {g.name} ({g.uuid})" for g in gpus.gpus) or "none"
    driver = f", driver {gpus.driver_version}" if gpus.driver_version else ""
    return Check(
        name="gpus", level=OK, message=f"{len(gpus.gpus)} GPUs via {gpus.source}{driver}: {names}"
    )


def _cdi_specs(
    config: Config, info: RuntimeInfo, registry: CdiRegistry, node: NodeInventory
) -> Check:
    kind = config.gpus.cdi_kind
    where = ", ".join(str(d) for d in config.gpus.cdi_spec_dirs)
    if registry.problems:
        return Check(name="cdi-specs", level=FAIL, message="; ".join(registry.problems))
    if not registry.names(kind):
        return Check(
            name="cdi-specs",
            level=FAIL,
            message=f"no CDI spec for {kind} in {where}: GPUs can't reach containers;"
            " generate one: nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml",
        )
    top = max_cdi_version(info.version)
    return Check(
        name="cdi-specs",
        level=OK,
        message=f"{len(registry.names(kind))} {kind} devices in specs podman {info.version}"
        f" reads (cdiVersion up to {top})",
    )


def _cdi_devices(config: Config, registry: CdiRegistry, node: NodeInventory) -> Check:
    missing = []
    for gpu in node.gpus.gpus:
        grant = GpuGrant(uuid=gpu.uuid, index=gpu.index, name=gpu.name)
        found = passthrough(Allocation(gpus=(grant,)), registry, config.gpus)
        if isinstance(found, str):
            missing.append(found)
    if missing:
        return Check(name="cdi-devices", level=FAIL, message="; ".join(missing))
    return Check(name="cdi-devices", level=OK, message="every GPU has a CDI device")


def _device_nodes(config: Config, registry: CdiRegistry) -> Check:
    kind = config.gpus.cdi_kind
    paths = sorted(
        {
            node.host_path
            for name in registry.names(kind)
            if (device := registry.device(name)) is not None
            for node in device.nodes
        }
    )
    missing = [p for p in paths if not os.path.exists(p)]
    denied = [p for p in paths if p not in missing and not os.access(p, os.R_OK | os.W_OK)]
    problems = []
    if missing:
        problems.append(f"device nodes missing on the host: {', '.join(missing)}")
    if denied:
        problems.append(f"device nodes uid {os.getuid()} can't open: {', '.join(denied)}")
    if problems:
        return Check(name="device-nodes", level=FAIL, message="; ".join(problems))
    return Check(
        name="device-nodes", level=OK, message=f"{len(paths)} device nodes present and accessible"
    )
